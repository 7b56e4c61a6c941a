fn pick<'a, T, E: Display>(items: &'a [T], at: impl Into<usize>) -> Result<&'a T, E>
where
    T: Clone + 'a,
    E: From<&'static str>,
{
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::pipe(
            "pick",
        )
        .err();
    __OCLAYER
        .start(::oclayer::__private::http!())
        .call(
            move || -> Result<&'a T, E> {
                items.get(at.into()).ok_or_else(|| E::from("out of range"))
            },
            |__oclayer_ret| {
                ::oclayer::__private::outcome!(
                    __oclayer_ret, ::oclayer::__private::error_of(__oclayer_ret)
                )
            },
        )
}
