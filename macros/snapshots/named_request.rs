async fn handle(State(state): State<App>, parts: Parts, body: Bytes) -> StatusCode {
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::router(
        "handle",
    );
    __OCLAYER
        .start_at(
            &mut ::oclayer::__private::Call::slot(),
            ::oclayer::__private::request(&parts),
        )
        .output::<StatusCode>()
        .run(
            async move { state.handle(parts, body).await },
            |__oclayer_ret| ::oclayer::__private::outcome!(__oclayer_ret),
        )
        .await
}
