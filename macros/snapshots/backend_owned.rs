async fn fetch(
    client: &Client,
    mut req: Request<Body>,
) -> Result<Response<Body>, Error> {
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::backend(
            "fetch",
        )
        .route("/users/{id}")
        .err();
    __OCLAYER
        .start_at(
            &mut ::oclayer::__private::Call::slot(),
            ::oclayer::__private::http!(& mut req),
        )
        .output::<Result<Response<Body>, Error>>()
        .run(
            async move { client.send(req).await },
            |__oclayer_ret| {
                ::oclayer::__private::outcome!(
                    __oclayer_ret, ::oclayer::__private::error_of(__oclayer_ret)
                )
            },
        )
        .await
}
