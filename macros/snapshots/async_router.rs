/// Docs stay on the fn.
#[inline]
pub async fn handle(
    req: http::Request<()>,
    id: u64,
    tenant: String,
) -> Result<http::Response<()>, Error> {
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::router(
            "handle",
        )
        .name("users")
        .route("/users/{id}")
        .err();
    let mut __oclayer_call = ::oclayer::__private::Call::slot();
    let __oclayer_run = {
        #[allow(clippy::redundant_locals)]
        let req = req;
        __OCLAYER
            .start_at(&mut __oclayer_call, ::oclayer::__private::http!(& req))
            .fields(|__oclayer_fields| {
                __oclayer_fields.set("user.id", &id);
                __oclayer_fields.set("tenant", &tenant.as_str());
            })
            .output::<Result<http::Response<()>, Error>>()
            .run(
                async move {
                    if id == 0 {
                        return Err(Error::NotFound);
                    }
                    let user = lookup(id)?;
                    Ok(respond(user))
                },
                |__oclayer_ret| {
                    ::oclayer::__private::outcome!(
                        __oclayer_ret, ::oclayer::__private::error_of(__oclayer_ret)
                    )
                },
            )
    };
    __oclayer_run.await
}
