pub unsafe fn read((a, b): (u32, u32), Wrapper(c): Wrapper, _: u8) -> u32 {
    #![allow(clippy::many_single_char_names)]
    static __OCLAYER: ::my_gateway::oclayer::__private::Site = ::my_gateway::oclayer::__private::Site::pipe(
        "read",
    );
    __OCLAYER
        .start(::my_gateway::oclayer::__private::http!())
        .call(
            move || -> u32 { a + b + c },
            |__oclayer_ret| ::my_gateway::oclayer::__private::outcome!(__oclayer_ret),
        )
}
