//! The `#[trace_layer]` attribute of oclayer. Users reach it through the `oclayer` facade, whose docs
//! describe the arguments; this crate only turns the attribute into calls to `oclayer::__private`.
//!
//! The work is done in three steps, one per module: `parse` reads the attribute and the fn, `valid`
//! checks them and works out the fn's shape, `expand` writes the instrumented fn.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;

mod expand;
mod parse;
mod valid;

#[cfg(test)]
mod tests;

/// Records a span and the layer's measures for every call of the annotated fn.
///
/// ```text
/// #[trace_layer(LAYER, name = "...", route = "/...", err, skip_measures, skip_span,
///               fields(key = expr, ...), request = arg, crate = path)]
/// ```
///
/// - `LAYER`, required and first: `router` (a server span continuing the incoming trace), `pipe` (a child
///   span of the router's) or `backend` (a client span whose context is injected into the outgoing
///   request).
/// - `name = "..."`: the span name. By default: the route (router), `pipe-` + the route or request path,
///   `backend-` + the route or request path; without either, the fn's name (`Type::method` for methods).
/// - `route = "/users/{id}"`: the route, endpoint or upstream URL pattern; it also tags the measures (a raw
///   path never does).
/// - `err`: an `Err` gives the span an error status with the error's `Display`, and counts as an error in
///   the measures. The fn must return a `Result` whose error implements `Display`.
/// - `skip_measures` / `skip_span`: record only the span / only the measures.
/// - `fields(key = expr, ...)`: span attributes; the expressions run only when the span is sampled. Keys
///   may be dotted (`user.id = id`) or strings.
/// - `request = arg`: the argument that is the HTTP request (`http::Request<B>`, `http::request::Parts` or
///   `http::HeaderMap`, by value or reference). Without it, an argument whose type is written like one of
///   those is used when it really is one.
/// - `crate = path`: where `oclayer` is, for crates that re-export it.
///
/// A return value of `http::Response<B>`, `http::StatusCode`, `(StatusCode, T)` or a `Result` with one of
/// those on either side records the HTTP status. Works on sync and async fns, methods, trait impls, fns
/// returning `impl Future`, and with `#[async_trait]`.
#[proc_macro_attribute]
pub fn trace_layer(args: TokenStream, item: TokenStream) -> TokenStream {
    trace_layer_impl(args.into(), item.into()).into()
}

/// The attribute on `proc_macro2` tokens, so that tests can call it.
fn trace_layer_impl(args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let args = parse::parse_args(args);
    let func = parse::parse_item(item.clone());
    match valid::validate(args, func.as_ref()) {
        Ok(plan) => match func {
            Ok(func) => expand::expand(&plan, func),
            // `validate` returns a plan only for a fn.
            Err(err) => with_item(item, &err),
        },
        Err(err) => with_item(item, &err),
    }
}

/// The errors next to the item as written, so that the user sees these errors and nothing that follows
/// from a missing or half-expanded item.
fn with_item(mut item: TokenStream2, err: &syn::Error) -> TokenStream2 {
    item.extend(err.to_compile_error());
    item
}
