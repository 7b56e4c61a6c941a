async fn fetch(client: &Client, req: Request<Body>) -> Result<Response<Body>, Error> {
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::backend(
            "fetch",
        )
        .route("/users/{id}")
        .err();
    let mut __oclayer_call = ::oclayer::__private::Call::slot();
    let __oclayer_run = {
        #[allow(clippy::redundant_locals)]
        let mut req = req;
        __OCLAYER
            .start_at(&mut __oclayer_call, ::oclayer::__private::http!(& mut req))
            .output::<Result<Response<Body>, Error>>()
            .run(
                async move { client.send(req).await },
                |__oclayer_ret| {
                    ::oclayer::__private::outcome!(
                        __oclayer_ret, ::oclayer::__private::error_of(__oclayer_ret)
                    )
                },
            )
    };
    __oclayer_run.await
}
