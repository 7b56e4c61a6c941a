fn prepare(
    req: &mut http::Request<Vec<u8>>,
    headers: &http::HeaderMap,
) -> http::StatusCode {
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::backend(
        "prepare",
    );
    __OCLAYER
        .start(::oclayer::__private::http!(& mut * req, headers))
        .call(
            move || -> http::StatusCode {
                req.headers_mut().extend(headers.clone());
                http::StatusCode::OK
            },
            |__oclayer_ret| ::oclayer::__private::outcome!(__oclayer_ret),
        )
}
