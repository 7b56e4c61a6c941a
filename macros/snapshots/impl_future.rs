fn call(&self, id: u64) -> impl Future<Output = Result<u64, Error>> + Send + '_ {
    static __OCLAYER: ::oclayer::__private::Site = ::oclayer::__private::Site::backend(
        "call",
    );
    __OCLAYER
        .start_in::<Self, _>(::oclayer::__private::http!())
        .output::<Result<u64, Error>>()
        .run_future(
            move || {
                let client = self.client.clone();
                async move { client.get(id).await }
            },
            |__oclayer_ret| ::oclayer::__private::outcome!(__oclayer_ret),
        )
}
