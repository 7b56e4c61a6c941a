//! Every fn shape `#[trace_layer]` supports, compiled under the strictest lints a user may have: the
//! expansion must add no warning, no clippy finding and no `unsafe`. With no pipeline running the layers
//! are off, so this also checks that an annotated fn returns exactly what its body returns.
#![deny(warnings, clippy::all, clippy::pedantic)]
#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;

use http::{HeaderMap, Request, Response, StatusCode};
use oclayer::trace_layer;

#[derive(Debug, PartialEq)]
struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<std::num::ParseIntError> for Error {
    fn from(e: std::num::ParseIntError) -> Self {
        Error(e.to_string())
    }
}

#[trace_layer(pipe)]
fn sync_value(n: u32) -> u32 {
    n + 1
}

#[trace_layer(pipe, skip_span)]
fn sync_unit(out: &mut Vec<u32>) {
    out.push(1);
}

/// `?` converts through `From`, and an early `return` keeps the declared type.
#[trace_layer(pipe, err, fields(input = text, length = text.len()))]
fn sync_result(text: &str) -> Result<u32, Error> {
    if text.is_empty() {
        return Err(Error("empty".into()));
    }
    Ok(text.parse::<u32>()?)
}

#[trace_layer(router, route = "/users/{id}", err)]
async fn async_router(req: Request<()>) -> Result<Response<String>, Error> {
    let id: u32 = req.uri().path().trim_start_matches("/users/").parse()?;
    if id == 0 {
        return Err(Error("no user 0".into()));
    }
    Ok(Response::new(format!("user {id}")))
}

#[trace_layer(backend, name = "users-api")]
async fn async_backend(req: &mut Request<()>) -> StatusCode {
    req.headers_mut().insert("x-seen", http::HeaderValue::from_static("1"));
    StatusCode::OK
}

#[trace_layer(backend)]
async fn async_backend_owned(req: Request<Vec<u8>>) -> usize {
    req.into_body().len()
}

// `mut` on an owned request the body changes: the expansion moves it into a `mut` local of its own.
#[trace_layer(router)]
async fn async_router_mut(mut req: Request<()>) -> StatusCode {
    req.headers_mut().insert("x-seen", http::HeaderValue::from_static("1"));
    tokio::task::yield_now().await;
    if req.headers().contains_key("x-seen") { StatusCode::OK } else { StatusCode::NOT_FOUND }
}

#[trace_layer(router, request = parts)]
async fn named_request(parts: http::request::Parts, body: Vec<u8>) -> (StatusCode, usize) {
    (if parts.method == http::Method::POST { StatusCode::CREATED } else { StatusCode::OK }, body.len())
}

#[trace_layer(pipe)]
fn headers_only(headers: &HeaderMap) -> bool {
    headers.contains_key("x-user")
}

#[trace_layer(pipe)]
async fn async_unit() {}

/// `.into()` in the tail infers from the declared type.
#[trace_layer(pipe)]
async fn async_into(n: u8) -> u64 {
    n.into()
}

#[trace_layer(backend, err)]
fn returns_future(n: u32) -> impl Future<Output = Result<u32, Error>> + Send {
    let doubled = n * 2;
    async move { if doubled > 100 { Err(Error("too big".into())) } else { Ok(doubled) } }
}

#[trace_layer(pipe)]
fn generic<'a, T, U: AsRef<str> + ?Sized>(items: &'a [T], key: &U) -> Option<&'a T>
where
    T: PartialEq<str>,
{
    items.iter().find(|item| *item == key.as_ref())
}

#[trace_layer(pipe)]
fn impl_trait_arg(values: impl IntoIterator<Item = u32>) -> u32 {
    values.into_iter().sum()
}

#[trace_layer(pipe)]
fn impl_trait_return(limit: u32) -> impl Iterator<Item = u32> {
    (0..limit).filter(|n| n % 2 == 0)
}

struct Pair(u32, u32);

#[trace_layer(pipe)]
fn patterns(Pair(a, b): Pair, (c, _): (u32, u32), _: u8) -> u32 {
    a + b + c
}

struct Counter {
    count: u32,
}

impl Counter {
    #[trace_layer(pipe)]
    fn get(&self) -> u32 {
        self.count
    }

    #[trace_layer(pipe)]
    fn bump(&mut self) -> &mut Self {
        self.count += 1;
        self
    }

    #[trace_layer(pipe)]
    fn into_count(self) -> u32 {
        self.count
    }

    #[trace_layer(pipe)]
    async fn bump_async(&mut self, by: u32) -> u32 {
        self.count += by;
        self.count
    }

    #[trace_layer(pipe)]
    fn name(&self) -> &str {
        if self.count == 0 { "zero" } else { "some" }
    }
}

trait Store {
    fn load(&self, key: &str) -> Option<u32>;
    fn load_async(&self, key: &str) -> impl Future<Output = Option<u32>> + Send;
}

impl Store for Counter {
    #[trace_layer(backend)]
    fn load(&self, key: &str) -> Option<u32> {
        (key == "count").then_some(self.count)
    }

    #[trace_layer(backend)]
    async fn load_async(&self, key: &str) -> Option<u32> {
        self.load(key)
    }
}

#[async_trait::async_trait]
trait Service {
    async fn call(&self, req: Request<()>) -> Result<u32, Error>;
}

#[async_trait::async_trait]
impl Service for Counter {
    #[trace_layer(router, err)]
    async fn call(&self, req: Request<()>) -> Result<u32, Error> {
        let add: u32 = req.uri().query().unwrap_or("0").parse()?;
        Ok(self.count + add)
    }
}

mod reexport {
    pub use oclayer as telemetry;
}

#[trace_layer(pipe)]
fn never_returns(message: &str) -> ! {
    panic!("{message}")
}

#[trace_layer(backend)]
async fn async_never_returns(message: String) -> ! {
    panic!("{message}")
}

#[trace_layer(pipe, crate = crate::reexport::telemetry)]
fn through_reexport() -> &'static str {
    "ok"
}

#[test]
fn sync_shapes_return_what_their_body_returns() {
    assert_eq!(sync_value(1), 2);
    let mut out = Vec::new();
    sync_unit(&mut out);
    assert_eq!(out, [1]);
    assert_eq!(sync_result("7"), Ok(7));
    assert_eq!(sync_result(""), Err(Error("empty".into())));
    assert_eq!(sync_result("x"), Err(Error("invalid digit found in string".into())));
    let mut headers = HeaderMap::new();
    assert!(!headers_only(&headers));
    headers.insert("x-user", http::HeaderValue::from_static("ann"));
    assert!(headers_only(&headers));
    assert_eq!(generic(&["a", "b"].map(String::from), "b").map(String::as_str), Some("b"));
    assert_eq!(impl_trait_arg([1, 2, 3]), 6);
    assert_eq!(impl_trait_return(5).collect::<Vec<_>>(), [0, 2, 4]);
    assert_eq!(patterns(Pair(1, 2), (3, 4), 5), 6);
    let mut counter = Counter { count: 0 };
    assert_eq!(counter.name(), "zero");
    assert_eq!(counter.bump().get(), 1);
    assert_eq!(counter.load("count"), Some(1));
    assert_eq!(counter.into_count(), 1);
    assert_eq!(through_reexport(), "ok");
    let panicked = std::panic::catch_unwind(|| never_returns("stop")).expect_err("it never returns");
    assert_eq!(panicked.downcast_ref::<String>().map(String::as_str), Some("stop"));
}

#[tokio::test]
async fn async_shapes_return_what_their_body_returns() {
    let ok = async_router(Request::builder().uri("/users/7").body(()).unwrap()).await.unwrap();
    assert_eq!(ok.body(), "user 7");
    let err = async_router(Request::builder().uri("/users/0").body(()).unwrap()).await.unwrap_err();
    assert_eq!(err, Error("no user 0".into()));
    let mut req = Request::new(());
    assert_eq!(async_backend(&mut req).await, StatusCode::OK);
    assert!(req.headers().contains_key("x-seen"));
    assert_eq!(async_backend_owned(Request::new(vec![1, 2])).await, 2);
    assert_eq!(async_router_mut(Request::new(())).await, StatusCode::OK);
    let (parts, ()) = Request::post("/").body(()).unwrap().into_parts();
    assert_eq!(named_request(parts, vec![1]).await, (StatusCode::CREATED, 1));
    async_unit().await;
    assert_eq!(async_into(3).await, 3);
    assert_eq!(returns_future(4).await, Ok(8));
    assert_eq!(returns_future(60).await, Err(Error("too big".into())));
    let mut counter = Counter { count: 1 };
    assert_eq!(counter.bump_async(2).await, 3);
    assert_eq!(counter.load_async("count").await, Some(3));
    assert_eq!(counter.call(Request::get("/?4").body(()).unwrap()).await, Ok(7));
    let panicked = tokio::spawn(async_never_returns("stop".into())).await.expect_err("it never returns");
    let message = panicked.into_panic();
    assert_eq!(message.downcast_ref::<String>().map(String::as_str), Some("stop"));
}
