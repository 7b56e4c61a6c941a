//! Calls that never finish normally leave nothing behind: handlers that panic (sync, and inside a poll),
//! futures dropped mid-flight, and exporters that panic. After each, the running set
//! (`trace::running_spans`) holds no span of the call, every call is exported exactly once, and the views
//! count every call exactly once under the status it ended with.
//!
//! The statuses themselves (UNKNOWN "panicked", CANCELLED) are `macro_behaviour.rs`'s; this file counts.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::Poll;
use std::time::Duration;

use http::{Request, StatusCode};
use oclayer::export::memory::InMemoryExporter;
use oclayer::export::{Exporter, SpanBatch, StatsReport};
use oclayer::stats::AggregationData;
use oclayer::{Config, Telemetry, trace_layer};

/// An exporter that panics on every batch and report it is handed, and counts them.
#[derive(Default)]
struct PanickingExporter {
    batches: AtomicU64,
    reports: AtomicU64,
}

impl Exporter for PanickingExporter {
    fn name(&self) -> &'static str {
        "panicking"
    }

    fn export_spans(&self, _spans: &SpanBatch) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        panic!("PanickingExporter::export_spans, on purpose");
    }

    fn export_stats(&self, _report: &StatsReport) {
        self.reports.fetch_add(1, Ordering::Relaxed);
        panic!("PanickingExporter::export_stats, on purpose");
    }
}

struct Pipeline {
    telemetry: Telemetry,
    exported: Arc<InMemoryExporter>,
    panicking: Arc<PanickingExporter>,
}

/// One pipeline for the whole binary. The panicking exporter comes first, so every batch meets it before
/// the in-memory one.
static PIPELINE: LazyLock<Pipeline> = LazyLock::new(|| {
    let config = Config::builder()
        .sample_rate(100)
        .reporting_period(Duration::from_secs(3600))
        .build()
        .expect("a valid config");
    let exported = Arc::new(InMemoryExporter::new());
    let panicking = Arc::new(PanickingExporter::default());
    let telemetry = Telemetry::builder(config)
        .exporter(panicking.clone())
        .exporter(exported.clone())
        .init()
        .expect("the pipeline starts");
    Pipeline { telemetry, exported, panicking }
});

/// Spans named `name` still counted as running.
fn running(name: &str) -> u64 {
    oclayer::trace::running_spans().into_iter().find(|(n, _)| n == name).map_or(0, |(_, count)| count)
}

/// Exported spans named `name`, once everything ended so far was delivered.
async fn exported(name: &str) -> usize {
    PIPELINE.telemetry.flush().await.expect("the pipeline flushes despite the panicking exporter");
    PIPELINE.exported.spans().iter().filter(|s| s.name == name).count()
}

/// The router request count of `route` with HTTP status `status`.
fn requests(route: &str, status: &str) -> i64 {
    let view = "opencensus.io/http/server/request_count";
    let data = oclayer::stats::view_data(view).unwrap_or_else(|| panic!("{view} is registered"));
    let index = |key: &str| data.view.tag_keys.iter().position(|k| k == key).expect("a key of the view");
    let (route_at, status_at) = (index("http_server_route"), index("http.status"));
    data.rows
        .iter()
        .filter(|row| {
            row.tags[route_at].as_deref() == Some(route) && row.tags[status_at].as_deref() == Some(status)
        })
        .map(|row| match &row.data {
            AggregationData::Count(n) => *n,
            other => panic!("{view} is a Count view, got {other:?}"),
        })
        .sum()
}

fn request(uri: &str) -> Request<()> {
    Request::get(uri).body(()).expect("a valid request")
}

/// Ends as asked: answers, panics before its first await, panics after it, or stays pending (to be dropped
/// mid-flight).
#[derive(Clone, Copy, Debug)]
enum Ending {
    Answer,
    PanicAtOnce,
    PanicAfterAwait,
    Pending,
}

#[trace_layer(router, route = "/mixed")]
async fn mixed(_req: Request<()>, ending: Ending) -> StatusCode {
    if let Ending::PanicAtOnce = ending {
        panic!("mixed: at once, on purpose");
    }
    tokio::task::yield_now().await;
    match ending {
        Ending::Answer => StatusCode::OK,
        Ending::PanicAfterAwait => panic!("mixed: after an await, on purpose"),
        Ending::Pending => std::future::pending().await,
        Ending::PanicAtOnce => unreachable!("returned above"),
    }
}

#[trace_layer(router, route = "/sync-panics")]
fn sync_panics(_req: Request<()>, panics: bool) -> StatusCode {
    if panics {
        panic!("sync_panics: on purpose");
    }
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_and_dropped_futures_leave_no_running_span_and_count_once() {
    let _ = &*PIPELINE;
    const EACH: u64 = 50;
    let mut tasks = Vec::new();
    for _ in 0..EACH {
        for ending in [Ending::Answer, Ending::PanicAtOnce, Ending::PanicAfterAwait] {
            tasks.push((ending, tokio::spawn(mixed(request("/mixed"), ending))));
        }
        // Polled once, so the span is running, then dropped mid-flight, as a client that went away.
        tasks.push((
            Ending::Pending,
            tokio::spawn(async {
                let mut call = Box::pin(mixed(request("/mixed"), Ending::Pending));
                let polled = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
                assert!(polled.is_pending());
                assert!(running("/mixed") > 0, "a polled call is running");
                drop(call);
                StatusCode::REQUEST_TIMEOUT
            }),
        ));
    }
    for (ending, task) in tasks {
        match (ending, task.await) {
            (Ending::Answer, Ok(status)) => assert_eq!(status, StatusCode::OK),
            (Ending::Pending, Ok(status)) => assert_eq!(status, StatusCode::REQUEST_TIMEOUT),
            (Ending::PanicAtOnce | Ending::PanicAfterAwait, Err(e)) => assert!(e.is_panic(), "{e}"),
            (ending, other) => panic!("{ending:?} ended as {other:?}"),
        }
    }
    for n in 0..EACH {
        let panics = n % 2 == 0;
        let outcome = std::panic::catch_unwind(|| sync_panics(request("/sync-panics"), panics));
        assert_eq!(outcome.is_err(), panics);
    }

    assert_eq!(running("/mixed"), 0, "no span of a panicked or dropped call is left running");
    assert_eq!(running("/sync-panics"), 0);
    assert_eq!(exported("/mixed").await as u64, 4 * EACH, "every call exported once");
    assert_eq!(exported("/sync-panics").await as u64, EACH);
    let each = EACH as i64;
    assert_eq!(requests("/mixed", "200"), each);
    assert_eq!(requests("/mixed", "500"), 2 * each, "both kinds of panic answer 500");
    assert_eq!(requests("/mixed", "499"), each, "a dropped call is a client gone away");
    assert_eq!(requests("/sync-panics", "200") + requests("/sync-panics", "500"), each);
    assert_eq!(requests("/sync-panics", "500"), each / 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_exporter_does_not_stop_the_others() {
    let pipeline = &*PIPELINE;
    let before = exported("/sync-panics-2").await;
    assert_eq!(before, 0);
    for _ in 0..10 {
        assert_eq!(second_route(request("/x")), StatusCode::OK);
    }
    assert_eq!(exported("/sync-panics-2").await, 10, "the exporter after the panicking one got every span");
    assert!(pipeline.panicking.batches.load(Ordering::Relaxed) > 0, "the panicking exporter was called");
    assert_eq!(running("/sync-panics-2"), 0);
    // Once more after its panics: the pipeline still delivers.
    assert_eq!(second_route(request("/x")), StatusCode::OK);
    assert_eq!(exported("/sync-panics-2").await, 11);
}

#[trace_layer(router, route = "/sync-panics-2")]
fn second_route(_req: Request<()>) -> StatusCode {
    StatusCode::OK
}
