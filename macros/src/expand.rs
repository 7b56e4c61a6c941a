//! Expansion: a checked [`Plan`] and the fn into the instrumented fn. Code generation only: every check
//! happened in `valid.rs`.
//!
//! The generated code is kept short, since users read it in `cargo expand`: a `static` describing the
//! call site, then one chain of calls into `__private` around the original body, which is left as written:
//!
//! ```text
//! static __OCLAYER: __private::Site = __private::Site::router("handle").err();
//! __OCLAYER
//!     .start_at(&mut __private::Call::slot(), __private::http!(&req))
//!     .output::<Output>()
//!     .run(async move { BODY }, |r| __private::outcome!(r, __private::error_of(r)))
//!     .await
//! ```
//!
//! Every path is absolute (`::oclayer::__private::...`, or the `crate = ...` path), so that nothing in the
//! user's scope can change what it refers to. The generated locals are `mixed_site`, so the body can
//! neither see nor shadow them.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{AttrStyle, Expr, FnArg, Ident, ItemFn, Pat, Stmt, Type};

use crate::valid::{Access, Layer, Plan, Shape};

/// The instrumented fn.
pub fn expand(plan: &Plan, mut item: ItemFn) -> TokenStream {
    let private = {
        let krate = &plan.krate;
        quote!(#krate::__private)
    };
    let is_async = matches!(plan.shape, Shape::Async { .. });
    let rebound = if is_async {
        rebind_owned_requests(plan, &mut item)
    } else {
        bind_requests_mut(plan, &mut item);
        Vec::new()
    };

    let site = site(plan, &item, &private);
    let call = Ident::new("__oclayer_call", Span::mixed_site());
    // An async fn starts its call in a slot of its own future (`start_at`), so that the call state is
    // written where it stays rather than copied in whole, which a disabled layer would pay for too.
    let slot = match (is_async, rebound.is_empty()) {
        (false, _) => None,
        (true, true) => Some(quote!(&mut #private::Call::slot())),
        (true, false) => Some(quote!(&mut #call)),
    };
    let start = start(plan, &private, slot);
    let ret = Ident::new("__oclayer_ret", Span::mixed_site());
    let outcome = match plan.err {
        // Spanned at `err`, so that a return type without an error to display is reported there.
        Some(err) => {
            let at_err = respan(&private, err);
            let ret_at_err = Ident::new("__oclayer_ret", Span::mixed_site().located_at(err));
            let error = quote_spanned!(err=> #at_err::error_of(#ret_at_err));
            quote!(|#ret| #private::outcome!(#ret, #error))
        }
        None => quote!(|#ret| #private::outcome!(#ret)),
    };

    let block = &item.block;
    let body = match &plan.shape {
        Shape::Sync { ret: Some(ty) } => quote!(#start.call(move || -> #ty #block, #outcome)),
        Shape::Sync { ret: None } => quote!(#start.call(move || #block, #outcome)),
        Shape::Async { output } if rebound.is_empty() => {
            let typed = output_hint(output);
            quote!(#start #typed.run(async move #block, #outcome).await)
        }
        // An owned request is borrowed by `http!`, and a borrowed local stays in the fn's future until it
        // goes out of scope, even once moved into the body's future: moved into a local of a block that
        // ends before the `.await`, it is stored once in the body's future instead of twice.
        Shape::Async { output } => {
            let typed = output_hint(output);
            let run = Ident::new("__oclayer_run", Span::mixed_site());
            let lets = rebound.iter().map(|(mutability, ident)| {
                quote!(#[allow(clippy::redundant_locals)] let #mutability #ident = #ident;)
            });
            quote! {
                let mut #call = #private::Call::slot();
                let #run = {
                    #(#lets)*
                    #start #typed.run(async move #block, #outcome)
                };
                #run.await
            }
        }
        Shape::ImplFuture { output } => {
            let typed = output_hint(output);
            quote!(#start #typed.run_future(move || #block, #outcome))
        }
        Shape::BoxPin { stmt, output } => {
            let (before, last) = item.block.stmts.split_at(*stmt);
            match last.first() {
                Some(Stmt::Expr(Expr::Call(call), None)) => {
                    let func = &call.func;
                    let fut = &call.args;
                    let typed = output_hint(output);
                    quote!(#(#before)* #func(#start #typed.run(#fut, #outcome)))
                }
                // `valid.rs` found the call there; keep the body as written rather than fail.
                _ => quote!(#block),
            }
        }
    };

    let ItemFn { attrs, vis, sig, .. } = &item;
    let outer = attrs.iter().filter(|a| matches!(a.style, AttrStyle::Outer));
    let inner = attrs.iter().filter(|a| matches!(a.style, AttrStyle::Inner(_)));
    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #site
            #body
        }
    }
}

/// `static __OCLAYER: Site = Site::router("fn_name").name("...")...;`: what never changes between calls,
/// built at compile time.
fn site(plan: &Plan, item: &ItemFn, private: &TokenStream) -> TokenStream {
    let layer = match plan.layer {
        Layer::Router => quote!(router),
        Layer::Pipe => quote!(pipe),
        Layer::Backend => quote!(backend),
    };
    let function = item.sig.ident.unraw().to_string();
    let mut options = TokenStream::new();
    if let Some(name) = &plan.name {
        options.extend(quote!(.name(#name)));
    }
    if let Some(route) = &plan.route {
        options.extend(quote!(.route(#route)));
    }
    if plan.err.is_some() {
        options.extend(quote!(.err()));
    }
    if plan.skip_span {
        options.extend(quote!(.skip_span()));
    }
    if plan.skip_measures {
        options.extend(quote!(.skip_measures()));
    }
    quote! {
        static __OCLAYER: #private::Site = #private::Site::#layer(#function) #options;
    }
}

/// `__OCLAYER.start(http).fields(|f| ...)`: the call's start, with the request and the fields; with a
/// `slot`, `__OCLAYER.start_at(slot, http)...`.
fn start(plan: &Plan, private: &TokenStream, slot: Option<TokenStream>) -> TokenStream {
    let requests = plan.requests.iter().map(|r| {
        let ident = &r.ident;
        let span = ident.span();
        match r.access {
            Access::Copy => quote!(#ident),
            Access::Reborrow => quote_spanned!(span=> &*#ident),
            Access::ReborrowMut => quote_spanned!(span=> &mut *#ident),
            Access::Borrow => quote_spanned!(span=> &#ident),
            Access::BorrowMut => quote_spanned!(span=> &mut #ident),
        }
    });
    // A named request must be one: the compiler checks it, and says so at the name. One found by its type
    // may not be one.
    let http = match plan.requests.first().filter(|_| plan.request_named) {
        Some(named) => {
            let span = named.ident.span();
            let at_name = respan(private, span);
            quote_spanned!(span=> #at_name::request(#(#requests)*))
        }
        None => quote!(#private::http!(#(#requests),*)),
    };
    let mut start = match (plan.has_receiver, slot) {
        (true, None) => quote!(__OCLAYER.start_in::<Self, _>(#http)),
        (false, None) => quote!(__OCLAYER.start(#http)),
        (true, Some(slot)) => quote!(__OCLAYER.start_in_at::<Self>(#slot, #http)),
        (false, Some(slot)) => quote!(__OCLAYER.start_at(#slot, #http)),
    };
    if !plan.fields.is_empty() {
        let fields = Ident::new("__oclayer_fields", Span::mixed_site());
        let sets = plan.fields.iter().map(|f| {
            let key = &f.key;
            let value = &f.value;
            // Spanned at the value, so that a value that cannot be an attribute is reported there.
            let span = value.span();
            let fields = Ident::new("__oclayer_fields", Span::mixed_site().located_at(span));
            let value = if needs_parens(value) {
                quote_spanned!(span=> &(#value))
            } else {
                quote_spanned!(span=> &#value)
            };
            quote_spanned!(span=> #fields.set(#key, #value);)
        });
        start.extend(quote!(.fields(|#fields| { #(#sets)* })));
    }
    start
}

/// The same tokens, shown at `span` in errors (their names still resolve as before).
fn respan(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(group) = &tt {
                let mut respanned = Group::new(group.delimiter(), respan(&group.stream(), span));
                respanned.set_span(group.span().located_at(span));
                tt = TokenTree::Group(respanned);
            } else {
                tt.set_span(tt.span().located_at(span));
            }
            tt
        })
        .collect()
}

/// Whether `&expr` would bind differently from `&(expr)`.
fn needs_parens(expr: &Expr) -> bool {
    !matches!(
        expr,
        Expr::Array(_)
            | Expr::Block(_)
            | Expr::Call(_)
            | Expr::Field(_)
            | Expr::Index(_)
            | Expr::Lit(_)
            | Expr::Macro(_)
            | Expr::MethodCall(_)
            | Expr::Paren(_)
            | Expr::Path(_)
            | Expr::Reference(_)
            | Expr::Struct(_)
            | Expr::Tuple(_)
            | Expr::Unary(_)
    )
}

/// The owned request arguments of an `async fn`, to be moved into locals of a block (see `expand`): each
/// with the `mut` its local needs, taken off the argument, whose binding is then only moved from. A `mut`
/// left on the argument would warn as unused.
fn rebind_owned_requests(plan: &Plan, item: &mut ItemFn) -> Vec<(Option<syn::Token![mut]>, Ident)> {
    let mut rebound = Vec::new();
    for request in plan.requests.iter().filter(|r| matches!(r.access, Access::Borrow | Access::BorrowMut)) {
        for arg in &mut item.sig.inputs {
            if let FnArg::Typed(typed) = arg
                && let Pat::Ident(pat) = &mut *typed.pat
                && pat.ident == request.ident
            {
                let mutability = pat.mutability.take().or_else(|| {
                    (request.access == Access::BorrowMut).then(|| syn::Token![mut](pat.ident.span()))
                });
                rebound.push((mutability, pat.ident.clone()));
            }
        }
    }
    rebound
}

/// The backend injects headers into an owned request, so its binding must be `mut`. Patterns are not part
/// of a fn's signature, so callers and trait impls are unaffected.
fn bind_requests_mut(plan: &Plan, item: &mut ItemFn) {
    for request in plan.requests.iter().filter(|r| r.access == Access::BorrowMut) {
        for arg in &mut item.sig.inputs {
            if let FnArg::Typed(typed) = arg
                && let Pat::Ident(pat) = &mut *typed.pat
                && pat.ident == request.ident
                && pat.mutability.is_none()
            {
                pat.mutability = Some(syn::Token![mut](pat.ident.span()));
            }
        }
    }
}

/// `.output::<T>()`: gives the body's future its declared output type before the body is type-checked, so
/// that `?` and `.into()` in it infer as they did without the attribute. Nothing when the type is unknown.
/// `!` may not be a type argument on stable Rust, only a return type: it goes through `fn() -> !`.
fn output_hint(output: &Type) -> TokenStream {
    match output {
        Type::Infer(_) => TokenStream::new(),
        Type::Never(_) => quote!(.output_of::<fn() -> #output>()),
        _ => quote!(.output::<#output>()),
    }
}
