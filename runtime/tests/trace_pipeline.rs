//! The span pipeline end to end: `init`, spans through the queue and batcher into an exporter, `flush`,
//! `shutdown`, drops, and the process-wide state `init` sets. One pipeline runs per process, so every test
//! here takes the `serial()` lock first.

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use oclayer_runtime::config::{Config, EnabledLayers, PrometheusConfig};
use oclayer_runtime::export::memory::InMemoryExporter;
use oclayer_runtime::export::{ExportFuture, Exporter, SpanBatch};
use oclayer_runtime::layer::Layer;
use oclayer_runtime::stats::AggregationData;
use oclayer_runtime::trace::{
    self, FutureExt, Parent, Sampler, SpanBuilder, SpanData, SpanKind, StatusCode, propagation,
};
use oclayer_runtime::{Error, Telemetry, TelemetryBuilder};

/// Long enough for any machine; only reached when a test is about to fail anyway.
const PATIENCE: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A valid config with no exporter of its own: the tests add theirs in code.
fn config(sample_rate: u8) -> Config {
    Config::builder().sample_rate(sample_rate).build().expect("a valid config")
}

fn builder(sample_rate: u8) -> (TelemetryBuilder, Arc<InMemoryExporter>) {
    let exported = Arc::new(InMemoryExporter::new());
    (Telemetry::builder(config(sample_rate)).exporter(exported.clone()), exported)
}

fn start(sample_rate: u8) -> (Telemetry, Arc<InMemoryExporter>) {
    let (builder, exported) = builder(sample_rate);
    (builder.init().expect("the pipeline starts"), exported)
}

/// Runs `future` on a current-thread tokio runtime, the kind a `#[tokio::test]` uses.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime").block_on(future)
}

fn names(spans: &[SpanData]) -> Vec<String> {
    spans.iter().map(|span| span.name.to_string()).collect()
}

fn find<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {:?}", names(spans)))
}

#[test]
fn flush_and_shutdown_deliver_on_a_current_thread_runtime() {
    let _serial = serial();
    block_on(async {
        let (telemetry, exported) = start(100);
        let root = trace::start_span("root", SpanKind::Server);
        {
            let _entered = root.enter();
            trace::start_span("child", SpanKind::Client).end();
        }
        root.end();
        telemetry.flush().await.expect("flush");
        let spans = exported.spans();
        assert_eq!(names(&spans), ["child", "root"], "in the order they ended");
        let (root, child) = (find(&spans, "root"), find(&spans, "child"));
        assert_eq!(child.parent_span_id, Some(root.context.span_id));
        assert_eq!(child.context.trace_id, root.context.trace_id);
        assert_eq!(child.same_process_as_parent_span, Some(true));
        assert_eq!(root.child_span_count, 1);
        assert!(root.end_time >= root.start_time && child.start_time >= root.start_time);

        trace::start_span("last", SpanKind::Unspecified).end();
        telemetry.shutdown().await.expect("shutdown");
        assert_eq!(names(&exported.spans()), ["child", "root", "last"], "shutdown delivers what is queued");
    });
}

#[test]
fn one_pipeline_at_a_time_and_init_again_after_shutdown_or_drop() {
    let _serial = serial();
    let (telemetry, _) = start(100);
    assert!(matches!(builder(100).0.init(), Err(Error::AlreadyInitialized)));
    block_on(telemetry.shutdown()).expect("shutdown");

    let (telemetry, _) = start(100);
    drop(telemetry);
    let (telemetry, _) = start(100);
    block_on(telemetry.shutdown()).expect("shutdown");
}

#[test]
fn a_taken_port_fails_init_and_frees_the_slot() {
    let _serial = serial();
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    let port = taken.local_addr().expect("bound").port();
    let prometheus = PrometheusConfig::new(port).with_listen_address(Ipv4Addr::LOCALHOST.into());
    let config = Config::builder().sample_rate(100).prometheus(prometheus).build().expect("a valid config");
    match oclayer_runtime::init(config) {
        Err(Error::Listen { address, path, .. }) => {
            assert_eq!(address.port(), port);
            assert_eq!(path, "exporters.prometheus.port");
        }
        other => panic!("expected a listen error, got {other:?}"),
    }
    let (telemetry, _) = start(100);
    block_on(telemetry.shutdown()).expect("shutdown");
}

#[test]
fn init_needs_an_exporter_from_the_config_or_from_code() {
    let _serial = serial();
    match Telemetry::builder(config(100)).init() {
        Err(error @ Error::Config { .. }) => {
            let message = error.to_string();
            assert!(message.starts_with("invalid telemetry config at exporters: no exporter"), "{message}");
            assert!(message.contains("exporters.prometheus"), "says how to add one to the config: {message}");
            assert!(message.contains(".exporter(...)"), "and how to add one in code: {message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    assert!(Layer::ALL.iter().all(|layer| !layer.is_enabled()), "nothing was switched on");
    // The same config starts with an exporter added in code.
    let (telemetry, _) = start(100);
    block_on(telemetry.shutdown()).expect("shutdown");
}

#[test]
fn init_checks_a_config_changed_after_it_was_built() {
    let _serial = serial();
    trace::set_sampler(Sampler::AlwaysOff);
    let mut config = config(100);
    config.sample_rate = 150;
    match Telemetry::builder(config).exporter(Arc::new(InMemoryExporter::new())).init() {
        Err(Error::Config { path, message }) => {
            assert_eq!(path, "sample_rate");
            assert!(message.contains("from 0 to 100, found 150"), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    assert_eq!(trace::sampler(), Sampler::AlwaysOff, "an invalid config changes nothing");
    assert!(Layer::ALL.iter().all(|layer| !layer.is_enabled()));
    let (telemetry, _) = start(100);
    block_on(telemetry.shutdown()).expect("shutdown");
}

#[test]
fn dropping_the_handle_hands_queued_spans_over_without_waiting() {
    let _serial = serial();
    let (telemetry, exported) = start(100);
    trace::start_span("queued", SpanKind::Unspecified).end();
    drop(telemetry);
    assert!(!Layer::Router.is_enabled(), "the layers are off once the handle is gone");
    assert_eq!(names(&exported.wait_for_spans(1, PATIENCE)), ["queued"]);
}

#[test]
fn a_full_queue_drops_the_oldest_and_counts_exactly() {
    let _serial = serial();
    let (builder, exported) = builder(100);
    // Batches only on flush: neither size (1000 > 8) nor age (an hour) sends anything meanwhile.
    let telemetry = builder
        .span_queue_capacity(8)
        .span_batch_size(1000)
        .span_batch_timeout(Duration::from_secs(3600))
        .init()
        .expect("the pipeline starts");
    let before = trace::dropped_spans();
    let in_view_before = dropped_by_pipeline_in_view();
    for i in 0..20 {
        trace::start_span(format!("span-{i}"), SpanKind::Unspecified).end();
    }
    assert_eq!(trace::dropped_spans() - before, 12);
    assert_eq!(oclayer_runtime::stats::dropped_spans(), trace::dropped_spans(), "one count, two names");
    block_on(telemetry.flush()).expect("flush");
    let expected: Vec<String> = (12..20).map(|i| format!("span-{i}")).collect();
    assert_eq!(names(&exported.spans()), expected, "the newest stay");
    block_on(telemetry.shutdown()).expect("shutdown");
    assert_eq!(dropped_by_pipeline_in_view() - in_view_before, 12, "the health view counts them too");
}

/// The `exporter = "pipeline"` row of the `oclayer.io/export/dropped_spans` view (0 before any).
fn dropped_by_pipeline_in_view() -> i64 {
    let Some(view) = oclayer_runtime::stats::view_data("oclayer.io/export/dropped_spans") else { return 0 };
    view.rows
        .iter()
        .filter(|row| row.tags.first().and_then(Option::as_deref) == Some("pipeline"))
        .map(|row| match row.data {
            AggregationData::SumInt64(sum) => sum,
            ref other => panic!("a sum, not {other:?}"),
        })
        .sum()
}

#[test]
fn flush_delivers_spans_ended_on_threads_now_idle_or_exited() {
    let _serial = serial();
    block_on(async {
        let (builder, exported) = builder(100);
        // Neither size nor age sends anything meanwhile: only the flush does.
        let telemetry = builder
            .span_batch_size(1000)
            .span_batch_timeout(Duration::from_secs(3600))
            .init()
            .expect("the pipeline starts");
        std::thread::spawn(|| {
            for i in 0..3 {
                trace::start_span(format!("exited-{i}"), SpanKind::Unspecified).end();
            }
        })
        .join()
        .expect("the thread that exits");
        let (idle_tx, idle_rx) = std::sync::mpsc::channel::<()>();
        let (ended_tx, ended_rx) = std::sync::mpsc::channel();
        let idle = std::thread::spawn(move || {
            for i in 0..2 {
                trace::start_span(format!("idle-{i}"), SpanKind::Unspecified).end();
            }
            ended_tx.send(()).expect("the test waits");
            // Idle, its ring still registered, until the test is done.
            let _ = idle_rx.recv();
        });
        ended_rx.recv().expect("the idle thread ended its spans");
        telemetry.flush().await.expect("flush");
        let mut got = names(&exported.spans());
        got.sort();
        assert_eq!(got, ["exited-0", "exited-1", "exited-2", "idle-0", "idle-1"]);
        drop(idle_tx);
        idle.join().expect("the idle thread");
        telemetry.shutdown().await.expect("shutdown");
    });
}

#[test]
fn a_full_batch_goes_out_without_a_flush() {
    let _serial = serial();
    let (builder, exported) = builder(100);
    let telemetry =
        builder.span_batch_size(5).span_batch_timeout(Duration::from_secs(3600)).init().expect("starts");
    for i in 0..5 {
        trace::start_span(format!("span-{i}"), SpanKind::Unspecified).end();
    }
    assert_eq!(exported.wait_for_spans(5, PATIENCE).len(), 5);
    block_on(telemetry.shutdown()).expect("shutdown");
}

#[test]
fn an_old_span_goes_out_without_a_flush() {
    let _serial = serial();
    let (builder, exported) = builder(100);
    let telemetry =
        builder.span_batch_size(1000).span_batch_timeout(Duration::from_millis(20)).init().expect("starts");
    trace::start_span("lonely", SpanKind::Unspecified).end();
    assert_eq!(names(&exported.wait_for_spans(1, PATIENCE)), ["lonely"]);
    block_on(telemetry.shutdown()).expect("shutdown");
}

#[test]
fn init_sets_sampler_and_layers_and_shutdown_switches_layers_off() {
    let _serial = serial();
    let mut config = config(0);
    config.enabled_layers = EnabledLayers { router: true, pipe: false, backend: true };
    let telemetry =
        Telemetry::builder(config).exporter(Arc::new(InMemoryExporter::new())).init().expect("starts");
    assert_eq!(trace::sampler(), Sampler::AlwaysOff);
    assert!(Layer::Router.is_enabled() && !Layer::Pipe.is_enabled() && Layer::Backend.is_enabled());
    assert!(!trace::start_span("never", SpanKind::Server).is_sampled(), "sample_rate 0 never samples");
    block_on(telemetry.shutdown()).expect("shutdown");
    assert!(Layer::ALL.iter().all(|layer| !layer.is_enabled()));

    let (telemetry, _) = start(25);
    assert_eq!(trace::sampler(), Sampler::Probability(0.25));
    block_on(telemetry.shutdown()).expect("shutdown");
}

#[test]
fn the_sampler_can_be_swapped_while_running() {
    let _serial = serial();
    block_on(async {
        let (telemetry, exported) = start(100);
        trace::start_span("on", SpanKind::Server).end();
        trace::set_sampler(Sampler::AlwaysOff);
        assert_eq!(trace::sampler(), Sampler::AlwaysOff);
        let off = trace::start_span("off", SpanKind::Server);
        assert!(!off.is_sampled());
        off.end();
        trace::set_sampler(Sampler::AlwaysOn);
        trace::start_span("on again", SpanKind::Server).end();
        telemetry.flush().await.expect("flush");
        assert_eq!(names(&exported.spans()), ["on", "on again"]);
        telemetry.shutdown().await.expect("shutdown");
    });
}

#[test]
fn parent_and_children_across_awaits_tasks_and_threads() {
    let _serial = serial();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    runtime.block_on(async {
        let (telemetry, exported) = start(100);
        let request = async {
            tokio::task::yield_now().await;
            async { tokio::task::yield_now().await }
                .instrument(trace::start_span("child", SpanKind::Unspecified))
                .await;
            let spawned = tokio::spawn(
                async {
                    tokio::task::yield_now().await;
                    trace::start_span("in task", SpanKind::Client).end();
                }
                .in_current_span(),
            );
            spawned.await.expect("the task ran");
            tokio::task::yield_now().await;
            oclayer_runtime::current_span().set_attribute("after", true);
        };
        tokio::spawn(request.instrument(trace::start_span("request", SpanKind::Server)))
            .await
            .expect("the request ran");
        telemetry.flush().await.expect("flush");

        let spans = exported.spans();
        let request = find(&spans, "request");
        for name in ["child", "in task"] {
            let span = find(&spans, name);
            assert_eq!(span.context.trace_id, request.context.trace_id, "{name}");
            assert_eq!(span.parent_span_id, Some(request.context.span_id), "{name}");
        }
        assert_eq!(request.child_span_count, 2);
        assert_eq!(
            request.attributes.entries,
            vec![("after".into(), true.into())],
            "still current at the end"
        );
        telemetry.shutdown().await.expect("shutdown");
    });
}

#[test]
fn a_future_dropped_before_completion_ends_cancelled() {
    let _serial = serial();
    block_on(async {
        let (telemetry, exported) = start(100);
        let slow = std::future::pending::<()>().instrument(trace::start_span("slow", SpanKind::Client));
        assert!(tokio::time::timeout(Duration::from_millis(1), slow).await.is_err());
        trace::start_span("dropped without end", SpanKind::Unspecified);
        telemetry.flush().await.expect("flush");
        let spans = exported.spans();
        let slow = find(&spans, "slow");
        assert_eq!((slow.status.code, slow.status.message.as_ref()), (StatusCode::Cancelled, "CANCELLED"));
        assert_eq!(find(&spans, "dropped without end").status.code, StatusCode::Ok, "dropping ends a span");
        telemetry.shutdown().await.expect("shutdown");
    });
}

#[test]
fn a_remote_parent_from_headers_continues_its_trace() {
    let _serial = serial();
    block_on(async {
        let (telemetry, exported) = start(100);
        // Almost never samples a root: the span below is sampled because the caller's flag says so.
        trace::set_sampler(Sampler::Probability(1e-15));
        let mut incoming = HeaderMap::new();
        incoming.insert(
            "traceparent",
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        incoming.insert("tracestate", HeaderValue::from_static("vendor=value"));
        let remote = propagation::extract(&incoming).expect("a valid traceparent");
        let server = SpanBuilder::new("server").parent(Parent::Remote(remote.clone())).start();
        assert!(server.is_sampled());

        let mut outgoing = HeaderMap::new();
        propagation::inject(&server.span_context(), &mut outgoing);
        let downstream = propagation::extract(&outgoing).expect("what we send is valid");
        assert_eq!(downstream.trace_id, remote.trace_id);
        assert_eq!(downstream.span_id, server.span_context().span_id);
        assert_eq!(downstream.tracestate, remote.tracestate);
        server.end();

        telemetry.flush().await.expect("flush");
        let spans = exported.spans();
        let server = find(&spans, "server");
        assert_eq!(server.context.trace_id, remote.trace_id);
        assert_eq!(server.parent_span_id, Some(remote.span_id));
        assert_eq!(server.same_process_as_parent_span, Some(false));
        telemetry.shutdown().await.expect("shutdown");
    });
}

/// Panics on every batch: a bug in one exporter.
struct Panicking;

impl Exporter for Panicking {
    fn name(&self) -> &'static str {
        "panicking"
    }

    fn export_spans(&self, _: &SpanBatch) {
        panic!("exporter bug");
    }
}

#[test]
fn a_panicking_exporter_does_not_stop_the_others() {
    let _serial = serial();
    block_on(async {
        let (builder, exported) = builder(100);
        let telemetry = builder.exporter(Arc::new(Panicking)).init().expect("starts");
        trace::start_span("first", SpanKind::Unspecified).end();
        telemetry.flush().await.expect("flush");
        trace::start_span("second", SpanKind::Unspecified).end();
        telemetry.flush().await.expect("the pipeline survived");
        assert_eq!(names(&exported.spans()), ["first", "second"]);
        telemetry.shutdown().await.expect("shutdown");
    });
}

/// Never finishes shutting down.
struct Stuck;

impl Exporter for Stuck {
    fn name(&self) -> &'static str {
        "stuck"
    }

    fn shutdown(&self, _: std::time::Instant) -> ExportFuture<'_> {
        Box::pin(std::future::pending())
    }
}

#[test]
fn shutdown_keeps_its_deadline_when_an_exporter_hangs() {
    let _serial = serial();
    let telemetry = Telemetry::builder(config(100)).exporter(Arc::new(Stuck)).init().expect("starts");
    let error = block_on(telemetry.shutdown_with_timeout(Duration::from_millis(50))).expect_err("a timeout");
    assert!(error.to_string().contains("exporter stuck did not shut down before the deadline"), "{error}");
    let (telemetry, _) = start(100);
    block_on(telemetry.shutdown()).expect("init works again after a timed-out shutdown");
}

/// The threads of this process whose name starts with `prefix` (Linux names them in `/proc`).
#[cfg(target_os = "linux")]
fn threads_named(prefix: &str) -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task lists this process's threads");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn flushes_share_one_deadline_watchdog_thread() {
    let _serial = serial();
    let (telemetry, exporter) = start(100);
    for i in 0..20 {
        trace::start_span(format!("flushed-{i}"), SpanKind::Unspecified).end();
        block_on(telemetry.flush()).expect("flushed");
    }
    assert_eq!(exporter.spans().len(), 20, "every flush delivered its span");
    // One thread keeps every deadline, started by the first flush of the process (this test's, or an
    // earlier test's); a thread per flush would also leave exiting ones behind.
    // "oclayer-deadline" as Linux keeps it: 15 bytes of a thread's name.
    assert_eq!(threads_named("oclayer-deadlin"), 1, "one watchdog thread for all the flushes");
    block_on(telemetry.shutdown()).expect("shuts down");
}

/// Blocks in `export_spans` (which exporters must never do) until the test lets it go.
struct Blocking {
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Exporter for Blocking {
    fn name(&self) -> &'static str {
        "blocking"
    }

    fn export_spans(&self, _: &SpanBatch) {
        let _ = self.release.lock().unwrap_or_else(PoisonError::into_inner).recv();
    }
}

#[test]
fn a_blocked_pipeline_thread_does_not_hang_flush() {
    let _serial = serial();
    let (release, released) = std::sync::mpsc::channel();
    let blocking = Arc::new(Blocking { release: Mutex::new(released) });
    let telemetry = Telemetry::builder(config(100)).exporter(blocking).init().expect("starts");
    trace::start_span("stuck", SpanKind::Unspecified).end();
    let error = block_on(telemetry.flush_with_timeout(Duration::from_millis(10))).expect_err("no answer");
    assert!(error.to_string().contains("flush got no answer from the oclayer-export thread"), "{error}");
    drop(release);
    block_on(telemetry.shutdown()).expect("once unblocked, the pipeline shuts down normally");
}

/// Takes a while over every batch, as an exporter encoding and queueing a large batch does.
struct Slow;

impl Exporter for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }

    fn export_spans(&self, _spans: &SpanBatch) {
        std::thread::sleep(Duration::from_micros(20));
    }
}

#[test]
fn flush_and_the_stats_reports_go_on_while_threads_end_spans_faster_than_the_exporters_take_them() {
    let _serial = serial();
    let reports = Arc::new(InMemoryExporter::new());
    let config = Config::builder()
        .sample_rate(100)
        .reporting_period(Duration::from_millis(20))
        .build()
        .expect("a valid config");
    let telemetry = Telemetry::builder(config)
        .exporter(Arc::new(Slow))
        .exporter(reports.clone())
        .span_batch_size(10)
        .init()
        .expect("the pipeline starts");
    let flooding = Arc::new(AtomicBool::new(true));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let flooding = Arc::clone(&flooding);
            std::thread::spawn(move || {
                while flooding.load(Ordering::Relaxed) {
                    trace::start_span("flood", SpanKind::Unspecified).end();
                }
            })
        })
        .collect();
    // The batcher shares its thread with the flush requests, the exporters' tasks and the stats reports:
    // busy with a backlog that never shrinks, it must still leave them their turns.
    std::thread::sleep(Duration::from_millis(400));
    let reported = reports.reports().len();
    let flushed = block_on(telemetry.flush_with_timeout(Duration::from_secs(5)));
    flooding.store(false, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("a flooding thread");
    }
    flushed.expect("flush answered during the flood");
    // 20 reporting periods passed. A starved reporting task sends none; here it gets a turn after each of
    // the batcher's rounds, which the slow exporter makes long (7 or 8 reports on the 2-core VM).
    assert!(reported >= 2, "only {reported} stats reports during the flood");
    block_on(telemetry.shutdown()).expect("shutdown");
}
