fn get<'life0, 'async_trait>(
    &'life0 self,
    req: Request<()>,
) -> ::core::pin::Pin<
    Box<
        dyn ::core::future::Future<
            Output = Result<u32, Error>,
        > + ::core::marker::Send + 'async_trait,
    >,
>
where
    'life0: 'async_trait,
    Self: 'async_trait,
{
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::router(
            "get",
        )
        .err();
    Box::pin(
        __OCLAYER
            .start_in::<Self, _>(::oclayer::__private::http!(& req))
            .output::<Result<u32, Error>>()
            .run(
                async move {
                    if let ::core::option::Option::Some(__ret) = ::core::option::Option::None::<
                        Result<u32, Error>,
                    > {
                        #[allow(unreachable_code)] return __ret;
                    }
                    let __self = self;
                    let req = req;
                    let __ret: Result<u32, Error> = { __self.lookup(req).await };
                    #[allow(unreachable_code)] __ret
                },
                |__oclayer_ret| {
                    ::oclayer::__private::outcome!(
                        __oclayer_ret, ::oclayer::__private::error_of(__oclayer_ret)
                    )
                },
            ),
    )
}
