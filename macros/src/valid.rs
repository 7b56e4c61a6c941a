//! Validation: the parsed arguments and fn into a [`Plan`] that expansion turns into code without checking
//! anything again. Every mistake becomes an error at the token that caused it, and all of them are
//! returned together.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Expr, FnArg, Ident, ItemFn, LitStr, Pat, ReturnType, Stmt, Type};

use crate::parse::{Arg, ArgValue, Args, Field};

/// What the three layers are called in the attribute, in request order.
const LAYERS: [(&str, Layer); 3] =
    [("router", Layer::Router), ("pipe", Layer::Pipe), ("backend", Layer::Backend)];

/// Every argument after the layer, for the "unknown argument" message.
const ARGUMENTS: &str = "`name = \"...\"`, `route = \"/...\"`, `err`, `skip_measures`, `skip_span`, \
                         `fields(key = expr, ...)`, `request = arg` and `crate = path`";

/// The layer the annotated fn belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layer {
    Router,
    Pipe,
    Backend,
}

/// Everything expansion needs, checked.
pub struct Plan {
    pub layer: Layer,
    /// `name = "..."`: the span name, as given.
    pub name: Option<LitStr>,
    /// `route = "..."`: the route or URL pattern.
    pub route: Option<LitStr>,
    /// `err`, with its span so that a type error about the return type points at it.
    pub err: Option<Span>,
    pub skip_span: bool,
    pub skip_measures: bool,
    pub fields: Vec<Field>,
    /// The path generated code reaches the library by: `::oclayer` unless `crate = ...`.
    pub krate: TokenStream,
    /// The arguments that may carry the HTTP request, best first.
    pub requests: Vec<RequestArg>,
    /// When `request = ...` named the argument: then it must be an HTTP type (checked by the compiler).
    pub request_named: bool,
    /// Whether the fn has a `self` receiver, so that `Self` names its impl type.
    pub has_receiver: bool,
    pub shape: Shape,
}

/// An argument that may be the HTTP request, and how to borrow it.
pub struct RequestArg {
    pub ident: Ident,
    pub access: Access,
}

/// How generated code borrows a request argument: mutably only in the backend, which injects headers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// `&T`: the reference itself (`req`).
    Copy,
    /// `&mut T` outside the backend: `&*req`.
    Reborrow,
    /// `&mut T` in the backend: `&mut *req`.
    ReborrowMut,
    /// An owned value outside the backend: `&req`.
    Borrow,
    /// An owned value in the backend: `&mut req`, which needs a `mut` binding (expansion adds it).
    BorrowMut,
}

/// How the fn produces its value, which decides where the span starts and ends.
pub enum Shape {
    /// A plain fn: the span covers the call.
    Sync { ret: Option<Type> },
    /// An `async fn`: the span covers every poll of its body. `output` is the declared output type, with
    /// `impl Trait` replaced by `_`.
    Async { output: Type },
    /// A fn returning `impl Future`: the span covers the call and the returned future.
    ImplFuture { output: Type },
    /// A fn whose last expression is `Box::pin(async move { ... })` (what `#[async_trait]` writes): the
    /// pinned future is instrumented. `stmt` is the index of that expression in the body.
    BoxPin { stmt: usize, output: Type },
}

/// Collects errors so that all of them are reported at once.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, span: Span, message: impl std::fmt::Display) {
        self.add(syn::Error::new(span, message));
    }

    fn add(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(err),
            None => self.0 = Some(err),
        }
    }
}

/// Checks the arguments against each other and against the fn. `item` is `Err` when the annotated item
/// is not a fn; the arguments are checked anyway, so that the user sees every mistake.
pub fn validate(args: Args, item: Result<&ItemFn, &syn::Error>) -> Result<Plan, syn::Error> {
    let mut errors = Errors::default();
    for err in args.errors {
        errors.add(err);
    }
    let attr = check_args(args.list, &mut errors);
    let item = match item {
        Ok(item) => Some(item),
        Err(err) => {
            errors.add(err.clone());
            None
        }
    };
    // The fn is checked even when the arguments are wrong, so that its mistakes show at the same time.
    let plan = item.and_then(|item| check_fn(attr, item, &mut errors));
    match (errors.0, plan) {
        (None, Some(plan)) => Ok(plan),
        (Some(err), _) => Err(err),
        // Both checks report what stopped them, so this is unreachable; say so rather than emit nothing.
        (None, None) => Err(syn::Error::new(Span::call_site(), "`#[trace_layer]` could not read its input")),
    }
}

/// The arguments, checked on their own.
struct Attr {
    /// `None` when missing or unknown (already reported).
    layer: Option<Layer>,
    name: Option<LitStr>,
    route: Option<LitStr>,
    err: Option<Ident>,
    skip_span: Option<Ident>,
    skip_measures: Option<Ident>,
    fields: Vec<Field>,
    request: Option<Ident>,
    krate: Option<syn::Path>,
}

fn check_args(list: Vec<Arg>, errors: &mut Errors) -> Attr {
    let mut layer: Option<(Layer, Ident)> = None;
    let mut attr = Attr {
        layer: None,
        name: None,
        route: None,
        err: None,
        skip_span: None,
        skip_measures: None,
        fields: Vec::new(),
        request: None,
        krate: None,
    };
    let mut seen: Vec<String> = Vec::new();
    let mut missing_layer_reported = false;

    for (position, Arg { key, value }) in list.into_iter().enumerate() {
        let name = key.to_string();
        let layer_named = LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l);

        if let Some(this) = layer_named {
            match (&layer, position) {
                (Some((_, first)), _) => errors.push(
                    key.span(),
                    format!("the layer is given twice: `{first}` already names it; keep one"),
                ),
                (None, 0) => layer = Some((this, key.clone())),
                (None, _) => {
                    errors.push(key.span(), format!("the layer goes first: `#[trace_layer({name}, ...)]`"))
                }
            }
            if !matches!(value, ArgValue::Flag) {
                errors.push(key.span(), format!("the layer takes no value: write `{name}`"));
            }
            continue;
        }

        let known = matches!(
            name.as_str(),
            "name" | "route" | "err" | "skip_measures" | "skip_span" | "fields" | "request" | "crate"
        );
        if position == 0 {
            missing_layer_reported = true;
            if known {
                errors.push(
                    key.span(),
                    format!(
                        "missing layer: the first argument must be `router`, `pipe` or `backend`, \
                         as in `#[trace_layer(router, {name} ...)]`"
                    ),
                );
            } else {
                errors.push(
                    key.span(),
                    format!("unknown layer `{name}`: expected `router`, `pipe` or `backend`"),
                );
                continue;
            }
        }
        if !known {
            errors.push(key.span(), format!("unknown argument `{name}`; the arguments are: {ARGUMENTS}"));
            continue;
        }
        if seen.contains(&name) {
            errors.push(key.span(), format!("`{name}` is given twice; keep one"));
            continue;
        }
        seen.push(name.clone());
        check_value(&mut attr, key, value, errors);
    }

    if layer.is_none() && !missing_layer_reported {
        errors.push(
            Span::call_site(),
            "missing layer: write `#[trace_layer(router)]`, `#[trace_layer(pipe)]` or \
             `#[trace_layer(backend)]`",
        );
    }
    if let (Some(a), Some(b)) = (&attr.skip_span, &attr.skip_measures) {
        let mut err = syn::Error::new(
            b.span(),
            "`skip_span` and `skip_measures` together leave nothing to record: remove the attribute instead",
        );
        err.combine(syn::Error::new(a.span(), "`skip_span` is given here"));
        errors.add(err);
    }
    Attr { layer: layer.map(|(layer, _)| layer), ..attr }
}

/// Checks that the value has the form the argument takes, and stores it.
fn check_value(attr: &mut Attr, key: Ident, value: ArgValue, errors: &mut Errors) {
    let name = key.to_string();
    match (name.as_str(), value) {
        ("name", ArgValue::Str(s)) => {
            if s.value().trim().is_empty() {
                errors.push(
                    s.span(),
                    "`name` is empty: give the span a name, or remove `name` for the default",
                );
            } else {
                attr.name = Some(s);
            }
        }
        ("route", ArgValue::Str(s)) => {
            if s.value().starts_with('/') {
                attr.route = Some(s);
            } else {
                errors.push(
                    s.span(),
                    format!(
                        "`route` is a path pattern starting with `/`, like \"/users/{{id}}\"; got {:?}",
                        s.value()
                    ),
                );
            }
        }
        ("request", ArgValue::Ident(i)) => attr.request = Some(i),
        ("crate", ArgValue::Path(p)) => attr.krate = Some(p),
        ("fields", ArgValue::Fields(fields)) => {
            if fields.is_empty() {
                errors.push(key.span(), "`fields()` is empty: add `key = expr` pairs or remove it");
            }
            for (i, field) in fields.iter().enumerate() {
                if fields[..i].iter().any(|f| f.key == field.key) {
                    errors.push(field.key_span, format!("field `{}` is given twice; keep one", field.key));
                }
            }
            attr.fields = fields;
        }
        ("err", ArgValue::Flag) => attr.err = Some(key),
        ("skip_span", ArgValue::Flag) => attr.skip_span = Some(key),
        ("skip_measures", ArgValue::Flag) => attr.skip_measures = Some(key),
        (flag @ ("err" | "skip_span" | "skip_measures"), _) => {
            errors.push(key.span(), format!("`{flag}` takes no value: write `{flag}`"));
        }
        (_, _) => {
            errors.push(key.span(), format!("`{name}` is written {}", crate::parse::form_of(&name)));
        }
    }
}

/// Checks the fn against the arguments and works out its shape.
fn check_fn(attr: Attr, item: &ItemFn, errors: &mut Errors) -> Option<Plan> {
    let sig = &item.sig;
    let mut ok = true;
    if let Some(constness) = &sig.constness {
        errors.push(constness.span, "`#[trace_layer]` cannot go on a `const fn`: it records at run time");
        ok = false;
    }
    if let Some(abi) = &sig.abi {
        let name = abi.name.as_ref().map_or_else(|| "C".to_owned(), LitStr::value);
        errors.push(
            abi.span(),
            format!(
                "`#[trace_layer]` cannot go on an `extern \"{name}\"` fn: instrument the Rust fn it calls \
                 instead"
            ),
        );
        ok = false;
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(variadic.span(), "`#[trace_layer]` cannot go on a variadic fn");
        ok = false;
    }

    let has_receiver = sig.receiver().is_some();
    let typed_args = || {
        sig.inputs.iter().filter_map(|arg| match arg {
            FnArg::Typed(t) => match &*t.pat {
                Pat::Ident(p) => Some((&p.ident, &*t.ty, p.by_ref.is_none())),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
    };
    let backend = attr.layer == Some(Layer::Backend);
    let access = |ty: &Type| match strip_group(ty) {
        Type::Reference(r) if r.mutability.is_none() => Access::Copy,
        Type::Reference(_) if backend => Access::ReborrowMut,
        Type::Reference(_) => Access::Reborrow,
        _ if backend => Access::BorrowMut,
        _ => Access::Borrow,
    };

    let mut requests = Vec::new();
    if let Some(named) = &attr.request {
        match typed_args().find(|(ident, _, _)| *ident == named) {
            // The name as written in the attribute, so that a compile error about its type points there.
            Some((_, ty, true)) => requests.push(RequestArg { ident: named.clone(), access: access(ty) }),
            Some((ident, _, false)) => {
                errors
                    .push(named.span(), format!("`{ident}` is bound with `ref`; bind the request by value"));
                ok = false;
            }
            None => {
                let names: Vec<String> = typed_args().map(|(i, _, _)| format!("`{i}`")).collect();
                let listed = if names.is_empty() {
                    format!("`fn {}` has no argument bound to a name", sig.ident)
                } else {
                    format!("the arguments are {}", names.join(", "))
                };
                errors.push(
                    named.span(),
                    format!("`request = {named}` names no argument of `fn {}`; {listed}", sig.ident),
                );
                ok = false;
            }
        }
    } else {
        for (ident, ty, by_value) in typed_args() {
            if by_value && looks_like_http(ty) {
                requests.push(RequestArg { ident: ident.clone(), access: access(ty) });
            }
        }
    }

    let declared = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some((**ty).clone()),
    };
    if let Some(err) = &attr.err {
        let unit = match &declared {
            None => true,
            Some(Type::Tuple(t)) => t.elems.is_empty(),
            Some(_) => false,
        };
        if unit {
            errors.push(
                err.span(),
                format!("`err` needs a fn returning `Result`, and `fn {}` returns `()`", sig.ident),
            );
            ok = false;
        }
    }

    let shape = shape_of(item, declared);
    let layer = attr.layer?;
    if !ok {
        return None;
    }
    let krate = attr.krate.map_or_else(|| quote!(::oclayer), |p| p.into_token_stream());
    Some(Plan {
        layer,
        name: attr.name,
        route: attr.route,
        err: attr.err.map(|e| e.span()),
        skip_span: attr.skip_span.is_some(),
        skip_measures: attr.skip_measures.is_some(),
        fields: attr.fields,
        krate,
        requests,
        request_named: attr.request.is_some(),
        has_receiver,
        shape,
    })
}

fn strip_group(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => strip_group(&g.elem),
        Type::Paren(p) => strip_group(&p.elem),
        other => other,
    }
}

/// Whether an argument's type is written like one that carries an HTTP request: `Request<B>`,
/// `request::Parts` or `HeaderMap`, by value or reference, under any path. The runtime then decides by the
/// real type, so a `Request` that is not `http`'s simply gives no HTTP data.
fn looks_like_http(ty: &Type) -> bool {
    let ty = match strip_group(ty) {
        Type::Reference(r) => strip_group(&r.elem),
        other => other,
    };
    match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Request" || s.ident == "Parts" || s.ident == "HeaderMap"),
        _ => false,
    }
}

fn shape_of(item: &ItemFn, declared: Option<Type>) -> Shape {
    if item.sig.asyncness.is_some() {
        let output = declared.map_or_else(|| syn::parse_quote!(()), erase_impl_trait);
        return Shape::Async { output };
    }
    if let Some(stmt) = box_pinned_async(item) {
        let output = declared.as_ref().and_then(future_output).unwrap_or_else(|| syn::parse_quote!(_));
        return Shape::BoxPin { stmt, output };
    }
    if let Some(output) = declared.as_ref().filter(|ty| is_impl_future(ty)).and_then(future_output) {
        return Shape::ImplFuture { output };
    }
    if declared.as_ref().is_some_and(is_impl_future) {
        return Shape::ImplFuture { output: syn::parse_quote!(_) };
    }
    // A closure cannot name `impl Trait` in its return type: leave it to inference then.
    Shape::Sync { ret: declared.filter(|ty| !contains_impl_trait(ty)) }
}

/// The index of a last expression `...Box::pin(async move { ... })`, as `#[async_trait]` and hand-written
/// boxed futures end.
fn box_pinned_async(item: &ItemFn) -> Option<usize> {
    let (index, last) = item.block.stmts.iter().enumerate().next_back()?;
    let Stmt::Expr(Expr::Call(call), None) = last else { return None };
    let Expr::Path(func) = &*call.func else { return None };
    let segments: Vec<String> = func.path.segments.iter().map(|s| s.ident.to_string()).collect();
    let is_box_pin = segments.ends_with(&["Box".to_owned(), "pin".to_owned()]);
    let async_arg = call.args.len() == 1 && matches!(call.args.first(), Some(Expr::Async(_)));
    (is_box_pin && async_arg).then_some(index)
}

fn is_impl_future(ty: &Type) -> bool {
    match strip_group(ty) {
        Type::ImplTrait(t) => t.bounds.iter().any(|b| match b {
            syn::TypeParamBound::Trait(t) => t.path.segments.last().is_some_and(|s| s.ident == "Future"),
            _ => false,
        }),
        _ => false,
    }
}

/// The `T` of a `Future<Output = T>` found in `ty` (`impl Future<Output = T>`, `Pin<Box<dyn Future<Output =
/// T> + Send>>`, `BoxFuture<'_, T>` is not recognised), with `impl Trait` replaced by `_`.
fn future_output(ty: &Type) -> Option<Type> {
    struct Find(Option<Type>);
    impl<'ast> syn::visit::Visit<'ast> for Find {
        fn visit_path_segment(&mut self, seg: &'ast syn::PathSegment) {
            if self.0.is_none()
                && seg.ident == "Future"
                && let syn::PathArguments::AngleBracketed(args) = &seg.arguments
            {
                for arg in &args.args {
                    if let syn::GenericArgument::AssocType(assoc) = arg
                        && assoc.ident == "Output"
                    {
                        self.0 = Some(assoc.ty.clone());
                        return;
                    }
                }
            }
            syn::visit::visit_path_segment(self, seg);
        }
    }
    let mut find = Find(None);
    syn::visit::Visit::visit_type(&mut find, ty);
    find.0.map(erase_impl_trait)
}

fn contains_impl_trait(ty: &Type) -> bool {
    struct Find(bool);
    impl<'ast> syn::visit::Visit<'ast> for Find {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut find = Find(false);
    syn::visit::Visit::visit_type(&mut find, ty);
    find.0
}

/// Replaces every `impl Trait` in a type by `_`, which a type hint may contain where `impl Trait` may not.
fn erase_impl_trait(mut ty: Type) -> Type {
    struct Erase;
    impl VisitMut for Erase {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(t) = ty {
                *ty = Type::Infer(syn::TypeInfer { underscore_token: syn::Token![_](t.impl_token.span) });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    Erase.visit_type_mut(&mut ty);
    ty
}
