pub async fn run(&mut self, input: &str) -> usize {
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::pipe(
        "run",
    );
    __OCLAYER
        .start_in_at::<
            Self,
        >(&mut ::oclayer::__private::Call::slot(), ::oclayer::__private::http!())
        .output::<usize>()
        .run(
            async move {
                self.count += 1;
                input.len()
            },
            |__oclayer_ret| ::oclayer::__private::outcome!(__oclayer_ret),
        )
        .await
}
