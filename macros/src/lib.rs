//! The `#[trace_layer]` attribute of oclayer. Users reach it through the `oclayer` facade, whose docs
//! describe the arguments; this crate only turns the attribute into calls to `oclayer::__private`.
//!
//! The work is done in three steps, one per module: [`parse`] reads the attribute and the fn, [`valid`]
//! checks them and works out the fn's shape, [`expand`] writes the instrumented fn.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;

mod expand;
mod parse;
mod valid;

#[cfg(test)]
mod tests;

/// Records a span and the layer's measures for every call of the annotated fn.
///
/// See the `oclayer` crate for the arguments and examples.
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
