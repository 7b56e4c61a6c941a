async fn handle(State(state): State<App>, parts: Parts, body: Bytes) -> StatusCode {
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::router(
        "handle",
    );
    let mut __oclayer_call = ::oclayer::__private::Call::slot();
    let __oclayer_run = {
        #[allow(clippy::redundant_locals)]
        let parts = parts;
        __OCLAYER
            .start_at(&mut __oclayer_call, ::oclayer::__private::request(&parts))
            .output::<StatusCode>()
            .run(
                async move { state.handle(parts, body).await },
                |__oclayer_ret| ::oclayer::__private::outcome!(__oclayer_ret),
            )
    };
    __oclayer_run.await
}
