//! `#[trace_layer]` on requests that are not sampled (`sample_rate: 0`): the measures are recorded, no span
//! is exported, `fields(...)` expressions are never evaluated, the unsampled decision still travels to the
//! upstream, and the annotated call allocates nothing.
//!
//! Allocations are counted by this binary's global allocator, per thread, so that other tests running in
//! parallel do not disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Waker};

use http::{HeaderValue, Request, Response, StatusCode};
use oclayer::export::memory::InMemoryExporter;
use oclayer::stats::AggregationData;
use oclayer::{Config, Telemetry, trace_layer};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the count is a const-initialised
// thread-local without destructor, which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` has too.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as for `dealloc`, and `new_size` follows the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

struct Pipeline {
    telemetry: Telemetry,
    exported: Arc<InMemoryExporter>,
}

static PIPELINE: LazyLock<Pipeline> = LazyLock::new(|| {
    let config = Config::builder().sample_rate(0).build().expect("a valid config");
    let exported = Arc::new(InMemoryExporter::new());
    let telemetry =
        Telemetry::builder(config).exporter(exported.clone()).init().expect("the pipeline starts");
    Pipeline { telemetry, exported }
});

/// Counts evaluations of `fields(...)` expressions.
static EVALUATED: AtomicUsize = AtomicUsize::new(0);

fn evaluated(value: u32) -> u32 {
    EVALUATED.fetch_add(1, Ordering::Relaxed);
    value
}

#[trace_layer(router, route = "/quiet/{id}", fields(user = evaluated(1)))]
fn quiet_router(req: &Request<()>) -> Response<()> {
    let _ = req;
    quiet_pipe().expect("the pipe succeeds");
    Response::new(())
}

#[trace_layer(pipe, route = "/quiet/{id}", err, fields(step = evaluated(2)))]
fn quiet_pipe() -> Result<u32, String> {
    Ok(quiet_backend(&Request::get("http://users.internal/quiet").body(()).expect("a valid request"))
        .as_u16()
        .into())
}

#[trace_layer(backend, route = "/quiet", fields(attempt = evaluated(3)))]
fn quiet_backend(req: &Request<()>) -> StatusCode {
    let _ = req;
    StatusCode::ACCEPTED
}

#[trace_layer(pipe, route = "/quiet-async")]
async fn quiet_async(n: u32) -> u32 {
    n + 1
}

#[trace_layer(backend, route = "/quiet-out")]
async fn quiet_out(req: &mut Request<()>) -> StatusCode {
    let _ = req;
    StatusCode::OK
}

fn count(view: &str, key: &str, value: &str) -> i64 {
    let data = oclayer::stats::view_data(view).unwrap_or_else(|| panic!("view {view} is registered"));
    let index = data.view.tag_keys.iter().position(|k| k == key).expect("a key of the view");
    data.rows
        .iter()
        .filter(|row| row.tags[index].as_deref() == Some(value))
        .map(|row| match &row.data {
            AggregationData::Count(n) => *n,
            other => panic!("{view} is a Count view, got {other:?}"),
        })
        .sum()
}

/// Polls a future that completes at once, with no executor (which could allocate on its own).
fn poll_ready<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the future completes at once"),
    }
}

#[test]
fn unsampled_calls_record_measures_but_no_span_and_skip_fields() {
    LazyLock::force(&PIPELINE);
    let req = Request::get("http://gateway.local/quiet/1").body(()).expect("a valid request");
    assert_eq!(quiet_router(&req).status(), StatusCode::OK);
    assert_eq!(poll_ready(quiet_async(1)), 2);

    assert_eq!(EVALUATED.load(Ordering::Relaxed), 0, "fields(...) are evaluated only for sampled spans");
    assert!(count("opencensus.io/http/server/request_count", "http_server_route", "/quiet/{id}") >= 1);
    assert!(count("oclayer.io/pipe/request_count", "endpoint", "/quiet/{id}") >= 1);
    assert!(count("oclayer.io/pipe/request_count", "endpoint", "/quiet-async") >= 1);
    assert!(count("opencensus.io/http/client/completed_count", "http_client_path", "/quiet") >= 1);

    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    runtime.block_on(PIPELINE.telemetry.flush()).expect("the pipeline flushes");
    assert!(PIPELINE.exported.spans().is_empty(), "{:#?}", PIPELINE.exported.spans());
}

#[test]
fn the_unsampled_decision_travels_to_the_upstream() {
    LazyLock::force(&PIPELINE);
    let mut req = Request::get("http://users.internal/quiet-out").body(()).expect("a valid request");
    assert_eq!(poll_ready(quiet_out(&mut req)), StatusCode::OK);
    let traceparent = req.headers()["traceparent"].to_str().expect("ASCII");
    assert!(traceparent.starts_with("00-") && traceparent.ends_with("-00"), "{traceparent}");
    assert_eq!(req.headers()["x-b3-sampled"], HeaderValue::from_static("0"));
}

#[test]
fn an_unsampled_call_allocates_nothing() {
    LazyLock::force(&PIPELINE);
    let req = Request::get("http://gateway.local/quiet/2").body(()).expect("a valid request");
    // The first call on a thread creates its stats cells for these tag values; later calls reuse them.
    quiet_router(&req);
    poll_ready(quiet_async(1));
    let allocations = allocations_during(|| {
        for _ in 0..100 {
            quiet_router(&req);
            poll_ready(quiet_async(1));
        }
    });
    // The router, pipe and backend calls here allocate nothing besides the outgoing request the pipe's
    // body builds (one `Request` per call: its header map and URI).
    let body_only = allocations_during(|| {
        for _ in 0..100 {
            let upstream = Request::get("http://users.internal/quiet").body(()).expect("a valid request");
            std::hint::black_box(&upstream);
        }
    });
    assert_eq!(allocations, body_only, "the instrumentation itself allocated");
}
