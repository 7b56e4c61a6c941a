fn evens(limit: u32) -> impl Iterator<Item = u32> {
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::pipe(
        "evens",
    );
    __OCLAYER
        .start(::oclayer::__private::http!())
        .call(
            move || { (0..limit).filter(|n| n % 2 == 0) },
            |__oclayer_ret| ::oclayer::__private::outcome!(__oclayer_ret),
        )
}
