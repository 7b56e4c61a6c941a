//! Snapshots of the expansion, one per fn shape: a change to the generated code shows up as a diff to
//! review. `UPDATE_EXPECT=1 cargo test -p oclayer-macros` rewrites them.

use expect_test::{ExpectFile, expect_file};
use proc_macro2::TokenStream;
use quote::quote;

/// Expands and pretty-prints, as `cargo expand` shows it.
fn expand(args: TokenStream, item: TokenStream) -> String {
    let out = crate::trace_layer_impl(args, item);
    match syn::parse2::<syn::File>(out.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(err) => panic!("the expansion does not parse ({err}):\n{out}"),
    }
}

fn check(args: TokenStream, item: TokenStream, snapshot: ExpectFile) {
    snapshot.assert_eq(&expand(args, item));
}

#[test]
fn sync_fn() {
    check(
        quote!(pipe),
        quote! {
            fn pipeline(input: u32) -> u32 {
                input + 1
            }
        },
        expect_file!["../snapshots/sync_fn.rs"],
    );
}

#[test]
fn sync_fn_returning_unit() {
    check(
        quote!(pipe, skip_span),
        quote! {
            pub(crate) fn log(line: &str) {
                println!("{line}");
            }
        },
        expect_file!["../snapshots/sync_unit.rs"],
    );
}

#[test]
fn async_router_with_every_argument() {
    check(
        quote!(
            router,
            name = "users",
            route = "/users/{id}",
            err,
            fields(user.id = id, "tenant" = tenant.as_str())
        ),
        quote! {
            /// Docs stay on the fn.
            #[inline]
            pub async fn handle(req: http::Request<()>, id: u64, tenant: String) -> Result<http::Response<()>, Error> {
                if id == 0 {
                    return Err(Error::NotFound);
                }
                let user = lookup(id)?;
                Ok(respond(user))
            }
        },
        expect_file!["../snapshots/async_router.rs"],
    );
}

#[test]
fn async_fn_without_return_type() {
    check(
        quote!(pipe),
        quote! {
            async fn tick() {
                step().await;
            }
        },
        expect_file!["../snapshots/async_unit.rs"],
    );
}

#[test]
fn backend_owned_request_gets_a_mut_binding() {
    check(
        quote!(backend, route = "/users/{id}", err),
        quote! {
            async fn fetch(client: &Client, req: Request<Body>) -> Result<Response<Body>, Error> {
                client.send(req).await
            }
        },
        expect_file!["../snapshots/backend_owned.rs"],
    );
}

#[test]
fn backend_mut_reference_is_reborrowed() {
    check(
        quote!(backend),
        quote! {
            fn prepare(req: &mut http::Request<Vec<u8>>, headers: &http::HeaderMap) -> http::StatusCode {
                req.headers_mut().extend(headers.clone());
                http::StatusCode::OK
            }
        },
        expect_file!["../snapshots/backend_mut_ref.rs"],
    );
}

#[test]
fn named_request_argument() {
    check(
        quote!(router, request = parts),
        quote! {
            async fn handle(State(state): State<App>, parts: Parts, body: Bytes) -> StatusCode {
                state.handle(parts, body).await
            }
        },
        expect_file!["../snapshots/named_request.rs"],
    );
}

#[test]
fn methods_name_their_impl_type() {
    check(
        quote!(pipe),
        quote! {
            pub async fn run(&mut self, input: &str) -> usize {
                self.count += 1;
                input.len()
            }
        },
        expect_file!["../snapshots/method.rs"],
    );
}

#[test]
fn generics_lifetimes_and_where_clauses() {
    check(
        quote!(pipe, err),
        quote! {
            fn pick<'a, T, E: Display>(items: &'a [T], at: impl Into<usize>) -> Result<&'a T, E>
            where
                T: Clone + 'a,
                E: From<&'static str>,
            {
                items.get(at.into()).ok_or_else(|| E::from("out of range"))
            }
        },
        expect_file!["../snapshots/generics.rs"],
    );
}

#[test]
fn fn_returning_impl_future() {
    check(
        quote!(backend),
        quote! {
            fn call(&self, id: u64) -> impl Future<Output = Result<u64, Error>> + Send + '_ {
                let client = self.client.clone();
                async move { client.get(id).await }
            }
        },
        expect_file!["../snapshots/impl_future.rs"],
    );
}

#[test]
fn sync_fn_returning_impl_trait_leaves_inference_alone() {
    check(
        quote!(pipe),
        quote! {
            fn evens(limit: u32) -> impl Iterator<Item = u32> {
                (0..limit).filter(|n| n % 2 == 0)
            }
        },
        expect_file!["../snapshots/impl_iterator.rs"],
    );
}

/// What `#[async_trait]` (0.1.9x) turns `async fn get(&self, req: Request<()>) -> Result<u32, Error>` into.
#[test]
fn async_trait_expansion_is_instrumented_inside_the_box() {
    check(
        quote!(router, err),
        quote! {
            fn get<'life0, 'async_trait>(
                &'life0 self,
                req: Request<()>,
            ) -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = Result<u32, Error>> + ::core::marker::Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move {
                    if let ::core::option::Option::Some(__ret) = ::core::option::Option::None::<Result<u32, Error>> {
                        #[allow(unreachable_code)]
                        return __ret;
                    }
                    let __self = self;
                    let req = req;
                    let __ret: Result<u32, Error> = { __self.lookup(req).await };
                    #[allow(unreachable_code)]
                    __ret
                })
            }
        },
        expect_file!["../snapshots/async_trait.rs"],
    );
}

#[test]
fn unsafe_fn_with_patterns_and_inner_attributes() {
    check(
        quote!(pipe, crate = ::my_gateway::oclayer),
        quote! {
            pub unsafe fn read((a, b): (u32, u32), Wrapper(c): Wrapper, _: u8) -> u32 {
                #![allow(clippy::many_single_char_names)]
                a + b + c
            }
        },
        expect_file!["../snapshots/unsafe_patterns_crate.rs"],
    );
}

/// `!` may not be a type argument on stable Rust, so the output hint names it through `fn() -> !`.
#[test]
fn async_fn_that_never_returns() {
    check(
        quote!(backend),
        quote! {
            async fn serve_forever(listener: Listener) -> ! {
                loop {
                    listener.accept().await;
                }
            }
        },
        expect_file!["../snapshots/async_never.rs"],
    );
}
