//! What `#[trace_layer]` records, through the facade with a running pipeline (every layer on, every trace
//! sampled) and the in-memory exporter: the router -> pipe -> backend tree, names, kinds and attributes,
//! statuses from `Err`, HTTP statuses, panics and cancellation, trace context in and out, and the layers'
//! measures.
//!
//! Tests run in parallel in one process, so each uses its own routes and looks only at its own trace.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::task::Poll;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use oclayer::export::memory::InMemoryExporter;
use oclayer::stats::AggregationData;
use oclayer::trace::{
    AttributeValue, SpanData, SpanId, SpanKind, StatusCode as Code, TimeEventKind, TraceId,
};
use oclayer::{Config, Telemetry, trace_layer};

struct Pipeline {
    telemetry: Telemetry,
    exported: Arc<InMemoryExporter>,
}

/// One pipeline for the whole binary: the process may run only one.
static PIPELINE: LazyLock<Pipeline> = LazyLock::new(|| {
    let config = Config::builder().sample_rate(100).build().expect("a valid config");
    let exported = Arc::new(InMemoryExporter::new());
    let telemetry =
        Telemetry::builder(config).exporter(exported.clone()).init().expect("the pipeline starts");
    Pipeline { telemetry, exported }
});

/// Starts the pipeline if no test did yet: before it, every layer is off.
fn pipeline() -> &'static Pipeline {
    &PIPELINE
}

/// Every exported span of `trace`, once everything ended so far has been delivered.
async fn trace_spans(trace: TraceId) -> Vec<SpanData> {
    pipeline().telemetry.flush().await.expect("the pipeline flushes");
    pipeline().exported.spans().into_iter().filter(|s| s.context.trace_id == trace).collect()
}

/// The one exported span named `name`.
async fn span_named(name: &str) -> SpanData {
    pipeline().telemetry.flush().await.expect("the pipeline flushes");
    let mut spans: Vec<SpanData> =
        pipeline().exported.spans().into_iter().filter(|s| s.name == name).collect();
    assert_eq!(spans.len(), 1, "one span named {name}: {spans:#?}");
    spans.remove(0)
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a AttributeValue> {
    span.attributes.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn string(value: &str) -> AttributeValue {
    AttributeValue::String(value.to_owned().into())
}

/// The count of a Count view's rows whose tags include `tags`.
fn count(view: &str, tags: &[(&str, &str)]) -> i64 {
    let data = oclayer::stats::view_data(view).unwrap_or_else(|| panic!("view {view} is registered"));
    let index = |key: &str| data.view.tag_keys.iter().position(|k| k == key).expect("a key of the view");
    data.rows
        .iter()
        .filter(|row| tags.iter().all(|(key, value)| row.tags[index(key)].as_deref() == Some(*value)))
        .map(|row| match &row.data {
            AggregationData::Count(n) => *n,
            other => panic!("{view} is a Count view, got {other:?}"),
        })
        .sum()
}

fn request(uri: &str) -> Request<()> {
    Request::get(uri).header("user-agent", "tests/1.0").body(()).expect("a valid request")
}

// ---- router -> pipe -> backend -----------------------------------------------------------------------------

#[trace_layer(router, route = "/tree/{id}")]
async fn tree_router(req: Request<()>) -> Response<()> {
    let status = tree_pipe(req.uri().path()).await;
    Response::builder().status(status).body(()).expect("a valid response")
}

#[trace_layer(pipe, route = "/tree/{id}")]
async fn tree_pipe(path: &str) -> StatusCode {
    let mut upstream = request(&format!("http://users.internal:8080/api{path}"));
    let status = tree_backend(&mut upstream).await;
    let headers = upstream.headers().clone();
    SENT.with(|sent| *sent.borrow_mut() = Some(headers));
    status
}

#[trace_layer(backend, route = "/api/tree/{id}")]
async fn tree_backend(req: &mut Request<()>) -> StatusCode {
    assert!(req.headers().contains_key("traceparent"), "injected before the body runs");
    StatusCode::OK
}

thread_local! {
    /// The headers the backend sent, seen by the test (current-thread runtime).
    static SENT: std::cell::RefCell<Option<HeaderMap>> = const { std::cell::RefCell::new(None) };
}

#[tokio::test]
async fn nested_calls_build_the_router_pipe_backend_tree_and_carry_the_context_out() {
    pipeline();
    let response = tree_router(request("http://gateway.local/tree/7")).await;
    assert_eq!(response.status(), StatusCode::OK);

    let router = span_named("/tree/{id}").await;
    let spans = trace_spans(router.context.trace_id).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let pipe = spans.iter().find(|s| s.name == "pipe-/tree/{id}").expect("the pipe span");
    let backend = spans.iter().find(|s| s.name == "backend-/api/tree/{id}").expect("the backend span");

    assert_eq!(
        (router.kind, pipe.kind, backend.kind),
        (SpanKind::Server, SpanKind::Unspecified, SpanKind::Client)
    );
    assert_eq!(router.parent_span_id, None);
    assert_eq!(router.same_process_as_parent_span, None);
    assert_eq!(pipe.parent_span_id, Some(router.context.span_id));
    assert_eq!(backend.parent_span_id, Some(pipe.context.span_id));
    assert_eq!(
        (pipe.same_process_as_parent_span, backend.same_process_as_parent_span),
        (Some(true), Some(true))
    );
    assert_eq!((router.child_span_count, pipe.child_span_count), (1, 1));

    assert_eq!(attribute(&router, "http.method"), Some(&string("GET")));
    assert_eq!(attribute(&router, "http.path"), Some(&string("/tree/7")));
    assert_eq!(attribute(&router, "http.url"), Some(&string("http://gateway.local/tree/7")));
    assert_eq!(attribute(&router, "http.host"), Some(&string("gateway.local")));
    assert_eq!(attribute(&router, "http.user_agent"), Some(&string("tests/1.0")));
    assert_eq!(attribute(&router, "http.status_code"), Some(&AttributeValue::Int(200)));
    assert_eq!(attribute(backend, "http.url"), Some(&string("http://users.internal:8080/api/tree/7")));
    assert_eq!(attribute(backend, "http.host"), Some(&string("users.internal:8080")));
    assert_eq!(attribute(backend, "http.status_code"), Some(&AttributeValue::Int(200)));
    assert_eq!(attribute(pipe, "complete"), Some(&AttributeValue::Bool(true)));
    assert_eq!(attribute(pipe, "http.method"), None, "the pipe has no HTTP attributes");
    assert!(spans.iter().all(|s| s.status.code == Code::Ok), "{spans:#?}");

    // The backend's context went out in the request, in both default formats.
    let sent = SENT.with(|sent| sent.borrow_mut().take()).expect("the backend ran");
    let (trace, span) = (backend.context.trace_id, backend.context.span_id);
    assert_eq!(sent["traceparent"], format!("00-{trace}-{span}-01").as_str());
    assert_eq!(sent["x-b3-traceid"], trace.to_string().as_str());
    assert_eq!(sent["x-b3-spanid"], span.to_string().as_str());
    assert_eq!(sent["x-b3-sampled"], "1");

    let router_requests =
        [("http_server_route", "/tree/{id}"), ("http.method", "GET"), ("http.status", "200")];
    assert_eq!(count("opencensus.io/http/server/request_count", &router_requests), 1);
    assert_eq!(count("oclayer.io/pipe/request_count", &[("endpoint", "/tree/{id}"), ("outcome", "ok")]), 1);
    let backend_calls = [
        ("http_client_host", "users.internal:8080"),
        ("http_client_path", "/api/tree/{id}"),
        ("http_client_method", "GET"),
        ("http_client_status", "200"),
    ];
    assert_eq!(count("opencensus.io/http/client/completed_count", &backend_calls), 1);
}

// ---- context in --------------------------------------------------------------------------------------------

#[trace_layer(router, route = "/continued")]
async fn continued(req: &Request<()>) -> StatusCode {
    assert!(req.headers().contains_key("traceparent"));
    StatusCode::NO_CONTENT
}

#[tokio::test]
async fn the_router_continues_the_incoming_trace() {
    pipeline();
    let mut req = request("/continued");
    req.headers_mut().insert(
        "traceparent",
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    assert_eq!(continued(&req).await, StatusCode::NO_CONTENT);

    let span = span_named("/continued").await;
    assert_eq!(span.context.trace_id, TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"));
    assert_eq!(span.parent_span_id, Some(SpanId::from_hex("00f067aa0ba902b7").expect("hex")));
    assert_eq!(span.same_process_as_parent_span, Some(false));
    assert_eq!(attribute(&span, "http.status_code"), Some(&AttributeValue::Int(204)));
}

#[trace_layer(router, route = "/b3")]
fn b3_router(headers: &HeaderMap) -> &'static str {
    let _ = headers;
    "sync"
}

#[tokio::test]
async fn a_header_map_carries_b3_context_into_a_sync_handler() {
    pipeline();
    let mut headers = HeaderMap::new();
    headers.insert("x-b3-traceid", HeaderValue::from_static("0af7651916cd43dd8448eb211c80319c"));
    headers.insert("x-b3-spanid", HeaderValue::from_static("b7ad6b7169203331"));
    headers.insert("x-b3-sampled", HeaderValue::from_static("1"));
    assert_eq!(b3_router(&headers), "sync");

    let span = span_named("/b3").await;
    assert_eq!(span.context.trace_id, TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("hex"));
    assert_eq!(span.parent_span_id, Some(SpanId::from_hex("b7ad6b7169203331").expect("hex")));
    // A sync handler with no status in its return value answered 200.
    assert_eq!(
        count(
            "opencensus.io/http/server/request_count",
            &[("http_server_route", "/b3"), ("http.status", "200")]
        ),
        1
    );
}

// ---- statuses ----------------------------------------------------------------------------------------------

#[trace_layer(router, route = "/unavailable")]
async fn unavailable(req: Request<()>) -> Response<String> {
    let _ = req;
    Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body(String::new()).expect("a valid response")
}

#[trace_layer(router, route = "/missing")]
fn missing(req: &Request<()>) -> Result<String, StatusCode> {
    let _ = req;
    Err(StatusCode::NOT_FOUND)
}

#[tokio::test]
async fn http_statuses_set_the_span_status_and_the_status_tag() {
    pipeline();
    assert_eq!(unavailable(request("/unavailable")).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(missing(&request("/missing")), Err(StatusCode::NOT_FOUND));

    let span = span_named("/unavailable").await;
    assert_eq!((span.status.code, span.status.message.as_ref()), (Code::Unavailable, "UNAVAILABLE"));
    assert_eq!(attribute(&span, "http.status_code"), Some(&AttributeValue::Int(503)));
    let status_503 = [("http_server_route", "/unavailable"), ("http.status", "503")];
    assert_eq!(count("opencensus.io/http/server/request_count", &status_503), 1);

    // An `Err` carrying a status is that status, with or without `err`.
    let span = span_named("/missing").await;
    assert_eq!((span.status.code, span.status.message.as_ref()), (Code::NotFound, "NOT_FOUND"));
    let status_404 = [("http_server_route", "/missing"), ("http.status", "404")];
    assert_eq!(count("opencensus.io/http/server/request_count", &status_404), 1);
}

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection refused")
    }
}

#[trace_layer(pipe, route = "/failing", err, fields(attempt = 2))]
async fn failing_pipe() -> Result<u32, Refused> {
    failing_backend(request("http://users.internal/down")).await
}

#[trace_layer(backend, route = "/down", err)]
async fn failing_backend(req: Request<()>) -> Result<u32, Refused> {
    assert!(req.headers().contains_key("traceparent"), "an owned request gets the context too");
    Err(Refused)
}

#[trace_layer(pipe, route = "/unflagged")]
fn unflagged() -> Result<(), Refused> {
    Err(Refused)
}

#[tokio::test]
async fn err_marks_the_span_and_counts_an_error() {
    pipeline();
    assert!(failing_pipe().await.is_err());

    let pipe = span_named("pipe-/failing").await;
    assert_eq!((pipe.status.code, pipe.status.message.as_ref()), (Code::Unknown, "connection refused"));
    assert_eq!(attribute(&pipe, "error"), Some(&string("connection refused")));
    assert_eq!(attribute(&pipe, "complete"), Some(&AttributeValue::Bool(false)));
    assert_eq!(attribute(&pipe, "attempt"), Some(&AttributeValue::Int(2)), "fields are set when sampled");
    assert_eq!(count("oclayer.io/pipe/request_count", &[("endpoint", "/failing"), ("outcome", "error")]), 1);

    // No response came: a transport error, recorded as status 500 as ochttp does.
    let backend = span_named("backend-/down").await;
    assert_eq!((backend.status.code, backend.status.message.as_ref()), (Code::Unknown, "connection refused"));
    assert_eq!(attribute(&backend, "http.status_code"), None);
    let transport_error = [("http_client_path", "/down"), ("http_client_status", "500")];
    assert_eq!(count("opencensus.io/http/client/completed_count", &transport_error), 1);

    // Without `err`, an `Err` is an ordinary value.
    assert!(unflagged().is_err());
    let span = span_named("pipe-/unflagged").await;
    assert_eq!(span.status.code, Code::Ok);
    assert_eq!(count("oclayer.io/pipe/request_count", &[("endpoint", "/unflagged"), ("outcome", "ok")]), 1);
}

// ---- panics and cancellation -------------------------------------------------------------------------------

#[trace_layer(pipe, route = "/panics-sync")]
fn panics_sync() -> u32 {
    panic!("boom")
}

#[trace_layer(router, route = "/panics-async")]
async fn panics_async(req: Request<()>) -> StatusCode {
    let _ = req;
    tokio::task::yield_now().await;
    panic!("boom")
}

fn assert_panicked(span: &SpanData) {
    assert_eq!((span.status.code, span.status.message.as_ref()), (Code::Unknown, "panicked"));
    let annotated = span.time_events.iter().any(|event| {
        matches!(&event.kind, TimeEventKind::Annotation { description, .. } if description == "panicked")
    });
    assert!(annotated, "{span:#?}");
    // Stamped when added, which must be before the span ends, as for any time event.
    assert!(span.time_events.iter().all(|event| event.time <= span.end_time), "{span:#?}");
}

#[tokio::test]
async fn a_panic_ends_the_span_as_panicked_and_keeps_unwinding() {
    pipeline();
    let unwound = std::panic::catch_unwind(panics_sync);
    assert!(unwound.is_err(), "the panic continues");
    assert_panicked(&span_named("pipe-/panics-sync").await);
    assert_eq!(
        count("oclayer.io/pipe/request_count", &[("endpoint", "/panics-sync"), ("outcome", "error")]),
        1
    );

    // In a task: the runtime catches the panic and drops the future later; the panic is recorded when it
    // happens.
    let joined = tokio::spawn(panics_async(request("/panics-async"))).await;
    assert!(joined.expect_err("the task panicked").is_panic());
    assert_panicked(&span_named("/panics-async").await);
    let status_500 = [("http_server_route", "/panics-async"), ("http.status", "500")];
    assert_eq!(count("opencensus.io/http/server/request_count", &status_500), 1);
}

#[trace_layer(pipe, route = "/abandoned")]
async fn abandoned() -> u32 {
    std::future::pending::<()>().await;
    1
}

#[trace_layer(router, route = "/abandoned-router")]
async fn abandoned_router(req: Request<()>) -> StatusCode {
    let _ = req;
    std::future::pending::<()>().await;
    StatusCode::OK
}

/// Polls `fut` once, then drops it: what a timeout or a lost `select!` branch does.
async fn poll_once_and_drop<F: Future>(fut: F) {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
}

#[tokio::test]
async fn a_dropped_future_ends_the_span_as_cancelled() {
    pipeline();
    poll_once_and_drop(abandoned()).await;
    let span = span_named("pipe-/abandoned").await;
    assert_eq!((span.status.code, span.status.message.as_ref()), (Code::Cancelled, "CANCELLED"));
    assert_eq!(attribute(&span, "canceled"), Some(&AttributeValue::Bool(true)));
    assert_eq!(attribute(&span, "complete"), Some(&AttributeValue::Bool(false)));
    assert_eq!(
        count("oclayer.io/pipe/request_count", &[("endpoint", "/abandoned"), ("outcome", "canceled")]),
        1
    );

    poll_once_and_drop(abandoned_router(request("/abandoned-router"))).await;
    let span = span_named("/abandoned-router").await;
    assert_eq!(span.status.code, Code::Cancelled);
    let status_499 = [("http_server_route", "/abandoned-router"), ("http.status", "499")];
    assert_eq!(count("opencensus.io/http/server/request_count", &status_499), 1);
}

// ---- names -------------------------------------------------------------------------------------------------

struct Users;

impl Users {
    #[trace_layer(pipe)]
    fn lookup(&self, id: u32) -> u32 {
        id
    }

    #[trace_layer(pipe, name = "users.find")]
    async fn find(&self, id: u32) -> Option<u32> {
        Some(self.lookup(id))
    }
}

#[trace_layer(backend)]
fn returns_future(path: &str) -> impl Future<Output = usize> + '_ {
    async move { path.len() }
}

#[trace_layer(backend)]
async fn by_path(req: Request<()>) -> usize {
    req.uri().path().len()
}

#[tokio::test]
async fn default_names_follow_the_layer_table() {
    pipeline();
    assert_eq!(Users.find(3).await, Some(3));
    let find = span_named("users.find").await;
    let lookup = span_named("Users::lookup").await;
    assert_eq!(lookup.parent_span_id, Some(find.context.span_id), "a sync call inside an async one");

    assert_eq!(returns_future("/x").await, 2);
    let span = span_named("returns_future").await;
    assert_eq!(span.kind, SpanKind::Client);

    // Without a route, the request path names the span; the measures use the fn name, never the path.
    assert_eq!(by_path(request("http://upstream/raw/path/42")).await, 12);
    span_named("backend-/raw/path/42").await;
    assert_eq!(count("opencensus.io/http/client/completed_count", &[("http_client_path", "by_path")]), 1);
}

// ---- #[async_trait] ----------------------------------------------------------------------------------------

#[async_trait::async_trait]
trait Handler {
    async fn handle(&self, req: Request<()>) -> Result<Response<()>, Refused>;
}

struct Echo;

#[async_trait::async_trait]
impl Handler for Echo {
    #[trace_layer(router, route = "/async-trait", err)]
    async fn handle(&self, req: Request<()>) -> Result<Response<()>, Refused> {
        if req.uri().query() == Some("fail") {
            return Err(Refused);
        }
        Ok(Response::new(()))
    }
}

#[tokio::test]
async fn async_trait_methods_are_instrumented() {
    pipeline();
    assert!(Echo.handle(request("/async-trait")).await.is_ok());
    let span = span_named("/async-trait").await;
    assert_eq!(span.kind, SpanKind::Server);
    assert_eq!(attribute(&span, "http.status_code"), Some(&AttributeValue::Int(200)));
    assert!(Echo.handle(request("/async-trait?fail")).await.is_err());
    let failed = [("http_server_route", "/async-trait"), ("http.status", "500")];
    assert_eq!(count("opencensus.io/http/server/request_count", &failed), 1);
}

// ---- skip_span / skip_measures -----------------------------------------------------------------------------

#[trace_layer(pipe, route = "/span-only", skip_measures)]
fn span_only() -> u8 {
    1
}

#[trace_layer(pipe, route = "/measures-only", skip_span)]
fn measures_only() -> u8 {
    span_only() + 1
}

#[tokio::test]
async fn skip_span_and_skip_measures_record_one_side_only() {
    pipeline();
    assert_eq!(measures_only(), 2);
    let span = span_named("pipe-/span-only").await;
    assert_eq!(span.parent_span_id, None, "a call without span leaves the current span alone");
    assert_eq!(count("oclayer.io/pipe/request_count", &[("endpoint", "/span-only")]), 0);
    assert_eq!(
        count("oclayer.io/pipe/request_count", &[("endpoint", "/measures-only"), ("outcome", "ok")]),
        1
    );
    let spans = pipeline().exported.spans();
    assert!(spans.iter().all(|s| s.name != "pipe-/measures-only"), "no span with skip_span");
}

// A fn returning `impl Future`: its call state lives in the returned future, which a panic in a poll does
// not drop (an `async fn`'s own future drops it while unwinding).
#[trace_layer(pipe, route = "/measures-only-panics", skip_span)]
fn measures_only_panics() -> impl Future<Output = u8> {
    async {
        tokio::task::yield_now().await;
        panic!("boom")
    }
}

#[tokio::test]
async fn a_panic_without_span_is_an_error_not_a_cancellation() {
    pipeline();
    // Polled by hand and dropped only after the panic was caught, when the thread no longer unwinds (as an
    // executor may): the panic must be recorded when it happens, span or not.
    let mut fut = Box::pin(measures_only_panics());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending(), "the body yields once");
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
    assert!(unwound.is_err(), "the panic continues");
    drop(fut);
    let endpoint = ("endpoint", "/measures-only-panics");
    assert_eq!(count("oclayer.io/pipe/request_count", &[endpoint, ("outcome", "error")]), 1);
    assert_eq!(count("oclayer.io/pipe/request_count", &[endpoint, ("outcome", "canceled")]), 0);
}

async fn sized_plain(req: Request<()>, id: u64) -> StatusCode {
    tokio::task::yield_now().await;
    if req.uri().path().len() as u64 > id { StatusCode::OK } else { StatusCode::NOT_FOUND }
}

#[trace_layer(router, route = "/sized/{id}")]
async fn sized_router(req: Request<()>, id: u64) -> StatusCode {
    tokio::task::yield_now().await;
    if req.uri().path().len() as u64 > id { StatusCode::OK } else { StatusCode::NOT_FOUND }
}

#[test]
fn an_owned_request_is_not_kept_once_more_for_the_layer_to_read_it() {
    // The fn's future holds its arguments until the first poll, and the body's future its own copy of them;
    // the request read by the layer must not stay in the fn's future a third time (a borrowed local does
    // unless it goes out of scope before the `.await`). Every executor moves the whole future.
    let req = || Request::get("/sized/7").body(()).expect("a valid request");
    let plain = std::mem::size_of_val(&sized_plain(req(), 7));
    let annotated = std::mem::size_of_val(&sized_router(req(), 7));
    let request = std::mem::size_of::<Request<()>>();
    assert!(annotated < plain + 2 * request, "{annotated} bytes against {plain} unannotated");
}
