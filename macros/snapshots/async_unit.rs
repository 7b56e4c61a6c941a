async fn tick() {
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::pipe(
        "tick",
    );
    __OCLAYER
        .start_at(&mut ::oclayer::__private::Call::slot(), ::oclayer::__private::http!())
        .output::<()>()
        .run(
            async move {
                step().await;
            },
            |__oclayer_ret| ::oclayer::__private::outcome!(__oclayer_ret),
        )
        .await
}
