fn pipeline(input: u32) -> u32 {
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::pipe(
        "pipeline",
    );
    __OCLAYER
        .start(::oclayer::__private::http!())
        .call(
            move || -> u32 { input + 1 },
            |__oclayer_ret| ::oclayer::__private::outcome!(__oclayer_ret),
        )
}
