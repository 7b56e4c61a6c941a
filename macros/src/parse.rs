//! Parsing: the attribute's tokens into a list of [`Arg`]s, and the annotated item into a fn.
//!
//! Parsing only reads the grammar; whether the arguments make sense together, and for this fn, is
//! `valid.rs`'s job. A malformed argument is recorded and skipped, so that every mistake in one attribute
//! is reported at once.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, ItemFn, LitStr, Path, Token};

/// One argument of `#[trace_layer(...)]`, as written.
pub struct Arg {
    /// The argument's name: `router`, `name`, `crate`, or whatever the user wrote.
    pub key: Ident,
    /// What follows the name.
    pub value: ArgValue,
}

/// What follows an argument's name.
pub enum ArgValue {
    /// Nothing: `router`, `err`.
    Flag,
    /// `= "..."` (`name`, `route`).
    Str(LitStr),
    /// `= ident` (`request`).
    Ident(Ident),
    /// `= path` (`crate`).
    Path(Path),
    /// `(key = expr, ...)` (`fields`).
    Fields(Vec<Field>),
    /// `= ...` or `(...)` after a name that takes another form or none.
    Other,
}

/// One `key = expr` of `fields(...)`.
pub struct Field {
    /// The attribute key, dotted idents joined (`http.route`) or a string literal's value.
    pub key: String,
    /// Where the key was written.
    pub key_span: Span,
    /// Evaluated only when the span is sampled.
    pub value: Expr,
}

/// The attribute's arguments in order, and the syntax errors met on the way.
pub struct Args {
    /// Every argument that parsed, in the order written.
    pub list: Vec<Arg>,
    /// Syntax errors; parsing went on past each one.
    pub errors: Vec<syn::Error>,
}

/// How an argument that takes a value is written, for error messages.
pub fn form_of(key: &str) -> &'static str {
    match key {
        "name" => "`name = \"span name\"`",
        "route" => "`route = \"/users/{id}\"`",
        "request" => "`request = arg`, naming the fn's argument that is the HTTP request",
        "crate" => "`crate = path::to::oclayer`",
        _ => "`fields(key = expr, ...)`",
    }
}

/// Names whose value is a string, an ident, a path or a field list; any other name is parsed by the
/// shape of what follows it, so that `valid.rs` can name the mistake.
fn value_kind(key: &str) -> Option<fn(ParseStream) -> syn::Result<ArgValue>> {
    match key {
        "name" | "route" => Some(|input| {
            input.parse::<Token![=]>()?;
            Ok(ArgValue::Str(input.parse()?))
        }),
        "request" => Some(|input| {
            input.parse::<Token![=]>()?;
            Ok(ArgValue::Ident(input.parse()?))
        }),
        "crate" => Some(|input| {
            input.parse::<Token![=]>()?;
            Ok(ArgValue::Path(input.call(Path::parse_mod_style)?))
        }),
        "fields" => Some(|input| {
            let content;
            syn::parenthesized!(content in input);
            // Taken whole first: a half-read inner buffer would fail the entire attribute.
            let tokens: TokenStream = content.parse()?;
            let parse_list = Punctuated::<Field, Token![,]>::parse_terminated_with;
            let list = (|input: ParseStream| parse_list(input, parse_field)).parse2(tokens)?;
            Ok(ArgValue::Fields(list.into_iter().collect()))
        }),
        _ => None,
    }
}

fn parse_field(input: ParseStream) -> syn::Result<Field> {
    let (key, key_span) = if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        (lit.value(), lit.span())
    } else {
        // `http.route = ...`: dotted keys read as OpenCensus attribute names do.
        let first = input.call(Ident::parse_any)?;
        let mut key = first.to_string();
        while input.peek(Token![.]) {
            input.parse::<Token![.]>()?;
            key.push('.');
            key.push_str(&input.call(Ident::parse_any)?.to_string());
        }
        (key, first.span())
    };
    if !input.peek(Token![=]) {
        return Err(syn::Error::new(key_span, format!("field `{key}` needs a value: `{key} = expr`")));
    }
    input.parse::<Token![=]>()?;
    let value = input.parse()?;
    Ok(Field { key, key_span, value })
}

/// What follows a name that takes no known form: kept whole so the validator can point at it.
fn parse_unknown_value(input: ParseStream) -> syn::Result<ArgValue> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        skip_to_comma(input)?;
        Ok(ArgValue::Other)
    } else if input.peek(syn::token::Paren) {
        input.parse::<TokenTree>()?;
        Ok(ArgValue::Other)
    } else {
        Ok(ArgValue::Flag)
    }
}

/// Consumes tokens up to the next top-level comma.
fn skip_to_comma(input: ParseStream) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

fn parse_args_stream(input: ParseStream) -> syn::Result<Args> {
    let mut args = Args { list: Vec::new(), errors: Vec::new() };
    while !input.is_empty() {
        // `Ident::parse_any` so that `crate` (a keyword) is read as a name.
        let key = match input.call(Ident::parse_any) {
            Ok(key) => key,
            Err(_) => {
                let span = input.span();
                skip_to_comma(input)?;
                args.errors.push(syn::Error::new(
                    span,
                    "expected an argument name, like `router` or `name = \"...\"`",
                ));
                eat_comma(input, &mut args)?;
                continue;
            }
        };
        let name = key.to_string();
        let parsed = match value_kind(&name) {
            // A known name written as a flag (`name`) parses as a flag: the validator says what it takes.
            Some(_) if input.is_empty() || input.peek(Token![,]) => Ok(ArgValue::Flag),
            Some(parse) => parse(input),
            None => parse_unknown_value(input),
        };
        match parsed {
            Ok(value) => args.list.push(Arg { key, value }),
            Err(err) => {
                // Keep going after the broken argument, so that later mistakes are reported too. A bad
                // field keeps its own message; any other value is reported with the form it should have.
                skip_to_comma(input)?;
                if name == "fields" {
                    args.errors.push(err);
                } else {
                    args.errors
                        .push(syn::Error::new(err.span(), format!("`{name}` is written {}", form_of(&name))));
                }
            }
        }
        eat_comma(input, &mut args)?;
    }
    Ok(args)
}

fn eat_comma(input: ParseStream, args: &mut Args) -> syn::Result<()> {
    if input.is_empty() {
        return Ok(());
    }
    if input.peek(Token![,]) {
        input.parse::<Token![,]>()?;
    } else {
        let tt: TokenTree = input.parse()?;
        args.errors.push(syn::Error::new(tt.span(), "expected `,` between arguments"));
        skip_to_comma(input)?;
        if input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
        }
    }
    Ok(())
}

/// Parses the attribute's tokens. Never fails as a whole: errors are in [`Args::errors`].
pub fn parse_args(tokens: TokenStream) -> Args {
    match parse_args_stream.parse2(tokens) {
        Ok(args) => args,
        Err(err) => Args { list: Vec::new(), errors: vec![err] },
    }
}

/// Parses the annotated item. Anything but a fn with a body is an error naming what it is.
pub fn parse_item(tokens: TokenStream) -> syn::Result<ItemFn> {
    match syn::parse2::<syn::Item>(tokens.clone()) {
        Ok(syn::Item::Fn(item)) => Ok(item),
        // A fn without a body: a trait's required method, or a fn in an `extern` block.
        Ok(syn::Item::Verbatim(tokens))
            if tokens.clone().into_iter().any(|tt| matches!(&tt, TokenTree::Ident(i) if i == "fn")) =>
        {
            Err(syn::Error::new(
                tokens.into_iter().next().map_or_else(Span::call_site, |tt| tt.span()),
                "`#[trace_layer]` goes on a fn with a body: put it on the method of each impl instead",
            ))
        }
        Ok(item) => Err(syn::Error::new(
            item_span(&item),
            format!("`#[trace_layer]` goes on a fn, not on {}", item_kind(&item)),
        )),
        // A fn without a body (in a trait, or `extern` block) or anything syn cannot read as an item.
        Err(_) => Err(syn::Error::new(
            tokens.into_iter().next().map_or_else(Span::call_site, |tt| tt.span()),
            "`#[trace_layer]` goes on a fn with a body",
        )),
    }
}

fn item_kind(item: &syn::Item) -> &'static str {
    match item {
        syn::Item::Const(_) => "a const",
        syn::Item::Enum(_) => "an enum",
        syn::Item::ExternCrate(_) => "an `extern crate`",
        syn::Item::ForeignMod(_) => "an `extern` block",
        syn::Item::Impl(_) => "an impl block (put it on the methods inside)",
        syn::Item::Macro(_) => "a macro",
        syn::Item::Mod(_) => "a module",
        syn::Item::Static(_) => "a static",
        syn::Item::Struct(_) => "a struct",
        syn::Item::Trait(_) => "a trait (put it on the methods of the impl blocks)",
        syn::Item::TraitAlias(_) => "a trait alias",
        syn::Item::Type(_) => "a type alias",
        syn::Item::Union(_) => "a union",
        syn::Item::Use(_) => "a `use`",
        _ => "this item",
    }
}

/// The token that names the item's kind (`struct`, `enum`, ...), where the error reads best.
fn item_span(item: &syn::Item) -> Span {
    match item {
        syn::Item::Const(i) => i.const_token.span,
        syn::Item::Enum(i) => i.enum_token.span,
        syn::Item::ExternCrate(i) => i.extern_token.span,
        syn::Item::ForeignMod(i) => i.abi.extern_token.span,
        syn::Item::Impl(i) => i.impl_token.span,
        syn::Item::Mod(i) => i.mod_token.span,
        syn::Item::Static(i) => i.static_token.span,
        syn::Item::Struct(i) => i.struct_token.span,
        syn::Item::Trait(i) => i.trait_token.span,
        syn::Item::TraitAlias(i) => i.trait_token.span,
        syn::Item::Type(i) => i.type_token.span,
        syn::Item::Union(i) => i.union_token.span,
        syn::Item::Use(i) => i.use_token.span,
        other => other.span(),
    }
}
