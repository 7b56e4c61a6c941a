async fn serve_forever(listener: Listener) -> ! {
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::backend(
        "serve_forever",
    );
    __OCLAYER
        .start_at(&mut ::oclayer::__private::Call::slot(), ::oclayer::__private::http!())
        .output_of::<fn() -> !>()
        .run(
            async move {
                loop {
                    listener.accept().await;
                }
            },
            |__oclayer_ret| ::oclayer::__private::outcome!(__oclayer_ret),
        )
        .await
}
