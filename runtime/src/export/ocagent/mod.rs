//! The ocagent exporter: spans and stats streamed over gRPC to an OpenCensus Agent.
//!
//! Three streams share one HTTP/2 connection: `TraceService.Export` (spans), `MetricsService.Export`
//! (stats reports) and `TraceService.Config` (the agent pushes samplers, which are applied at once). Every
//! new stream opens with the `Node` (who is exporting: host, pid, library, service) and the `Resource`, so
//! an agent restarted mid-run still knows who is talking. Spans are encoded straight from the runtime's
//! model into protobuf bytes (`encode_span.rs`), the hot part of the exporter.
//!
//! Delivery, stronger than opencensus-go's exporter (which drops everything while disconnected):
//! [`export_spans`](Exporter::export_spans) and [`export_stats`](Exporter::export_stats) only queue and
//! wake the stream task, so handlers never wait for the network. Spans and reports stay queued while the
//! agent is down, restarting or slow, up to
//! [`max_queued_spans`](crate::config::OcAgentConfig::max_queued_spans) and
//! [`max_queued_reports`](crate::config::OcAgentConfig::max_queued_reports); beyond that the oldest are
//! dropped, counted ([`dropped_spans`](OcAgentExporter::dropped_spans), the
//! `oclayer.io/export/dropped_*` views) and logged at most every 10 s. An item leaves the queue only once
//! the stream it was written to ended cleanly (the agent answered our end of stream with OK); a stream
//! that breaks has its items written again on the next one, so an agent may see an item twice, never
//! not at all. Reconnection waits `reconnection`, doubling with jitter up to 30 s.
//!
//! The streams run on the tokio runtime handed to [`OcAgentExporter::start`] (the telemetry pipeline's
//! background runtime, under `init`).

mod backoff;
mod codec;
mod convert_metrics;
/// The span mapping stated with the generated types: the reference `encode_span` is tested against.
#[cfg(test)]
mod convert_span;
mod delivery;
mod encode_span;
mod library_config;
mod node;
mod stream;
mod transport;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use oclayer_proto::agent::common::v1::Node;
use oclayer_proto::resource::v1::Resource;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::delivery::{Chunk, DeliveryQueue, ReportChunk, SpanChunk};
use self::transport::Transport;
use crate::Error;
use crate::config::{DEFAULT_OCAGENT_MAX_QUEUED_REPORTS, DEFAULT_OCAGENT_MAX_QUEUED_SPANS, OcAgentConfig};
use crate::export::{ExportFuture, Exporter, SpanBatch, StatsReport};
use crate::stats::health;

/// The exporter's name in logs and in the health views' `exporter` tag.
pub const NAME: &str = "ocagent";

/// Losses are logged at most this often (each log line says how many since the last one).
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The ocagent exporter. Start it with [`OcAgentExporter::start`]; `init` does so for
/// `exporters.ocagent`.
///
/// ```no_run
/// # async fn demo() -> Result<(), oclayer_runtime::Error> {
/// use std::time::{Duration, Instant};
/// use oclayer_runtime::config::OcAgentConfig;
/// use oclayer_runtime::export::Exporter;
/// use oclayer_runtime::export::ocagent::OcAgentExporter;
///
/// let config = OcAgentConfig::new().with_address("collector:55678").with_insecure(true);
/// let exporter = OcAgentExporter::start(&config, &tokio::runtime::Handle::current())?;
/// // ... the pipeline calls exporter.export_spans(..) and exporter.export_stats(..) ...
/// exporter.shutdown(Instant::now() + Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
pub struct OcAgentExporter {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for OcAgentExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcAgentExporter")
            .field("transport", &self.shared.transport)
            .field("queued_spans", &self.queued_spans())
            .field("queued_reports", &self.queued_reports())
            .finish_non_exhaustive()
    }
}

impl OcAgentExporter {
    /// Checks `config` and starts the stream tasks on `runtime`. Nothing connects yet: the trace and metrics
    /// streams open when there is something to send, the Config stream at once, and an agent that is not
    /// up yet is retried with backoff, so this succeeds whether or not the agent is reachable.
    ///
    /// # Errors
    /// [`Error::Config`] for an address, header or CA certificate that cannot be used.
    pub fn start(
        config: &OcAgentConfig,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Arc<OcAgentExporter>, Error> {
        // The channel spawns its connection worker on the runtime it is created in.
        let transport = {
            let _inside = runtime.enter();
            Transport::new(config)?
        };
        let host_name = node::host_name();
        let span_capacity = if config.max_queued_spans == 0 {
            DEFAULT_OCAGENT_MAX_QUEUED_SPANS
        } else {
            config.max_queued_spans
        };
        let report_capacity = if config.max_queued_reports == 0 {
            DEFAULT_OCAGENT_MAX_QUEUED_REPORTS
        } else {
            config.max_queued_reports
        };
        let shared = Arc::new(Shared {
            node: node::node(&config.service_name, &host_name),
            resource: node::resource(&host_name),
            transport,
            reconnection: config.reconnection,
            spans: Lane::new(Kind::Spans, span_capacity),
            reports: Lane::new(Kind::Reports, report_capacity),
            progress: Notify::new(),
            closed: AtomicBool::new(false),
            closing: CancellationToken::new(),
            stop: CancellationToken::new(),
            last_error: Mutex::new(None),
        });
        let tasks = vec![
            runtime.spawn(stream::run::<stream::Traces>(Arc::clone(&shared))),
            runtime.spawn(stream::run::<stream::Metrics>(Arc::clone(&shared))),
            runtime.spawn(library_config::run(Arc::clone(&shared))),
        ];
        tracing::info!(
            agent = shared.transport.target(),
            service = %config.service_name,
            compression = config.enable_compression,
            headers = config.headers.len(),
            "ocagent exporter started"
        );
        Ok(Arc::new(OcAgentExporter { shared, runtime: runtime.clone(), tasks: Mutex::new(tasks) }))
    }

    /// Spans dropped so far: beyond the queue bound while the agent was unreachable or slow, or handed over
    /// after shutdown.
    pub fn dropped_spans(&self) -> u64 {
        self.shared.spans.dropped.load(Ordering::Relaxed)
    }

    /// Stats reports dropped so far, as [`dropped_spans`](Self::dropped_spans) counts spans.
    pub fn dropped_reports(&self) -> u64 {
        self.shared.reports.dropped.load(Ordering::Relaxed)
    }

    /// Spans the agent confirmed so far (a span written again after a broken stream counts once per
    /// confirmed stream).
    pub fn delivered_spans(&self) -> u64 {
        self.shared.spans.delivered.load(Ordering::Relaxed)
    }

    /// Stats reports the agent confirmed so far.
    pub fn delivered_reports(&self) -> u64 {
        self.shared.reports.delivered.load(Ordering::Relaxed)
    }

    /// Spans queued now, written or not, that the agent has not confirmed.
    pub fn queued_spans(&self) -> usize {
        self.shared.spans.queued()
    }

    /// Stats reports queued now that the agent has not confirmed.
    pub fn queued_reports(&self) -> usize {
        self.shared.reports.queued()
    }

    /// The last connection or stream error (header values are never part of it); `None` once a stream
    /// delivered again.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Resolves once the items queued when it was called are resolved (delivered, or dropped by the bound),
    /// or fails at `deadline` with how many are still queued.
    async fn wait_resolved(shared: &Shared, deadline: Instant) -> Result<(), Error> {
        // Ask the stream tasks to end their streams once these items are written, rather than when they
        // would rotate anyway.
        let span_target = shared.spans.request_flush();
        let report_target = shared.reports.request_flush();
        loop {
            let progress = shared.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if shared.spans.resolved_up_to(span_target) && shared.reports.resolved_up_to(report_target) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline.into(), progress).await.is_err() {
                return Err(shared.undelivered());
            }
        }
    }

    /// Runs `work` on the exporter's runtime, so that flush and shutdown work from any executor (the
    /// timers they use need tokio's).
    fn on_runtime<F>(&self, work: F) -> ExportFuture<'_>
    where
        F: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let task = self.runtime.spawn(work);
        Box::pin(async move {
            task.await.unwrap_or_else(|e| {
                Err(Error::Pipeline {
                    message: format!("the ocagent exporter's runtime stopped before it finished: {e}"),
                })
            })
        })
    }
}

impl Exporter for OcAgentExporter {
    fn name(&self) -> &'static str {
        NAME
    }

    fn export_spans(&self, spans: &SpanBatch) {
        if spans.is_empty() {
            return;
        }
        if self.shared.closed.load(Ordering::Acquire) {
            self.shared.spans.count_dropped(spans.len());
            return;
        }
        let batch = spans.clone();
        self.shared.spans.push(&self.shared, spans.len(), |seq| SpanChunk {
            range: 0..batch.len(),
            batch,
            seq,
        });
    }

    fn export_stats(&self, report: &StatsReport) {
        if self.shared.closed.load(Ordering::Acquire) {
            self.shared.reports.count_dropped(1);
            return;
        }
        let report = report.clone();
        self.shared.reports.push(&self.shared, 1, |seq| ReportChunk { report, seq });
    }

    fn flush(&self, deadline: Instant) -> ExportFuture<'_> {
        let shared = Arc::clone(&self.shared);
        self.on_runtime(async move { OcAgentExporter::wait_resolved(&shared, deadline).await })
    }

    fn shutdown(&self, deadline: Instant) -> ExportFuture<'_> {
        let shared = Arc::clone(&self.shared);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        self.on_runtime(async move {
            shared.closed.store(true, Ordering::Release);
            // The stream tasks deliver what is queued, end their streams cleanly and return.
            shared.closing.cancel();
            let delivered = OcAgentExporter::wait_resolved(&shared, deadline).await;
            for task in tasks {
                let abort = task.abort_handle();
                if tokio::time::timeout_at(deadline.into(), task).await.is_err() {
                    shared.stop.cancel();
                    abort.abort();
                }
            }
            shared.stop.cancel();
            let left = shared.spans.queued() + shared.reports.queued();
            if left > 0 || delivered.is_err() {
                let error = shared.undelivered();
                tracing::warn!(error = %error, "ocagent exporter shut down with items undelivered");
                return Err(error);
            }
            tracing::info!(
                spans = shared.spans.delivered.load(Ordering::Relaxed),
                reports = shared.reports.delivered.load(Ordering::Relaxed),
                "ocagent exporter shut down; everything queued was delivered"
            );
            Ok(())
        })
    }
}

impl Drop for OcAgentExporter {
    fn drop(&mut self) {
        // Without a shutdown, the stream tasks stop where they are.
        self.shared.stop.cancel();
    }
}

/// What the exporter handle and its stream tasks share.
struct Shared {
    transport: Transport,
    node: Node,
    resource: Resource,
    reconnection: Duration,
    spans: Lane<SpanChunk>,
    reports: Lane<ReportChunk>,
    /// Fired whenever queued items resolve (confirmed or dropped): flush and shutdown re-check.
    progress: Notify,
    /// Set at shutdown: later exports are dropped and counted.
    closed: AtomicBool,
    /// Shutdown began: deliver what is queued, end streams cleanly, return.
    closing: CancellationToken,
    /// Stop now (shutdown deadline, or the exporter was dropped).
    stop: CancellationToken,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn undelivered(&self) -> Error {
        Error::Undelivered {
            exporter: NAME,
            destination: self.transport.target().to_owned(),
            spans: self.spans.queued() as u64,
            reports: self.reports.queued() as u64,
            last_error: self.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        }
    }

    fn set_last_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = error;
    }
}

/// What a lane carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Spans,
    Reports,
}

impl Kind {
    /// For log lines.
    fn what(self) -> &'static str {
        match self {
            Kind::Spans => "spans",
            Kind::Reports => "stats reports",
        }
    }

    /// The setting that bounds the lane's queue.
    fn bound_setting(self) -> &'static str {
        match self {
            Kind::Spans => "max_queued_spans",
            Kind::Reports => "max_queued_reports",
        }
    }
}

/// One kind of item (spans, reports): its queue, the wake-up of its stream task, and its counters.
struct Lane<C> {
    kind: Kind,
    queue: Mutex<DeliveryQueue<C>>,
    /// Wakes the stream task: new items, a flush, shutdown.
    wake: Notify,
    dropped: AtomicU64,
    delivered: AtomicU64,
    /// Items with a lower sequence number are awaited by a flush or shutdown: the stream task ends its
    /// stream as soon as they are written, to have them confirmed.
    flush_target: AtomicU64,
    drop_log: DropLog,
}

impl<C: Chunk> Lane<C> {
    fn new(kind: Kind, capacity: usize) -> Self {
        Lane {
            kind,
            queue: Mutex::new(DeliveryQueue::new(capacity)),
            wake: Notify::new(),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            flush_target: AtomicU64::new(0),
            drop_log: DropLog::new(),
        }
    }

    /// Runs `f` on the queue. The lock is only ever held for queue bookkeeping, never across an await.
    fn with_queue<R>(&self, f: impl FnOnce(&mut DeliveryQueue<C>) -> R) -> R {
        f(&mut self.queue.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn push(&self, shared: &Shared, len: usize, make: impl FnOnce(u64) -> C) {
        let dropped = self.with_queue(|queue| queue.push(len, make));
        if dropped > 0 {
            self.count_dropped(dropped);
            shared.progress.notify_waiters();
        }
        self.wake.notify_one();
    }

    /// Counts `n` items lost: the counter, the health view, and a log line at most every
    /// [`DROP_LOG_INTERVAL`].
    fn count_dropped(&self, n: usize) {
        let total = self.dropped.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        match self.kind {
            Kind::Spans => health::record_dropped_spans(NAME, n as u64),
            Kind::Reports => health::record_dropped_reports(NAME, n as u64),
        }
        if let Some(since_last) = self.drop_log.add(n as u64) {
            tracing::warn!(
                dropped = since_last,
                total,
                bound = self.with_queue(|queue| queue.capacity()),
                "ocagent exporter: {} dropped, oldest first: the agent did not take them in time (unreachable, \
                 slow, or the exporter was shut down); raise {} to keep more",
                self.kind.what(),
                self.kind.bound_setting(),
            );
        }
    }

    fn queued(&self) -> usize {
        self.with_queue(|queue| queue.pending_len() + queue.in_flight_len())
    }

    /// Asks the stream task to have everything pushed so far confirmed; returns the sequence number that
    /// everything before is then resolved.
    fn request_flush(&self) -> u64 {
        let target = self.with_queue(|queue| queue.pushed());
        self.flush_target.fetch_max(target, Ordering::Relaxed);
        self.wake.notify_one();
        target
    }

    /// Whether a flush waits for items still unconfirmed.
    fn flush_waiting(&self) -> bool {
        let target = self.flush_target.load(Ordering::Relaxed);
        target > 0 && !self.resolved_up_to(target)
    }

    fn resolved_up_to(&self, target: u64) -> bool {
        self.with_queue(|queue| queue.oldest_unresolved() >= target)
    }
}

/// Not API: the sampler conversion of the `TraceService.Config` stream, for the fuzz targets in `fuzz/`
/// and their corpus replay test, which feed it arbitrary agent messages. Hidden rather than public so that
/// the conversion can change without a breaking release.
#[doc(hidden)]
pub mod fuzzing {
    use oclayer_proto::trace::v1::TraceConfig;

    use crate::trace::Sampler;

    /// The sampler the exporter applies for a config the agent pushed: `Ok(None)` when it names none,
    /// `Err` (logged, and the config ignored) when it makes no sense.
    pub fn sampler_of(config: &TraceConfig) -> Result<Option<Sampler>, String> {
        super::library_config::sampler_of(config)
    }

    /// The config the exporter answers the agent with while `sampler` is in force.
    pub fn config_of(sampler: Sampler) -> TraceConfig {
        super::library_config::config_of(sampler)
    }
}

/// Rate limit for loss warnings.
struct DropLog {
    last: Mutex<Option<Instant>>,
    unlogged: AtomicU64,
}

impl DropLog {
    fn new() -> Self {
        DropLog { last: Mutex::new(None), unlogged: AtomicU64::new(0) }
    }

    /// Adds `n` losses; returns how many to log now (including earlier unlogged ones), or `None` when the
    /// last log line is too recent.
    fn add(&self, n: u64) -> Option<u64> {
        self.unlogged.fetch_add(n, Ordering::Relaxed);
        // Busy: another thread is logging, and this count goes into a later line. Poisoned (a panic while
        // logging): the instant is still usable, and treating poison as busy would silence losses for good.
        let mut last = match self.last.try_lock() {
            Ok(last) => last,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < DROP_LOG_INTERVAL) {
            return None;
        }
        *last = Some(now);
        Some(self.unlogged.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_logs_are_rate_limited_and_lose_no_count() {
        let log = DropLog::new();
        assert_eq!(log.add(3), Some(3), "the first loss is logged at once");
        assert_eq!(log.add(2), None);
        assert_eq!(log.add(4), None);
        *log.last.lock().expect("lock") = Some(Instant::now() - DROP_LOG_INTERVAL);
        assert_eq!(log.add(1), Some(7), "the next line carries what was not logged");
    }

    /// Panics while holding `lock`, as a panic anywhere under it would.
    fn poison<T>(lock: &Mutex<T>) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = lock.lock();
            panic!("poisoning the lock on purpose");
        }));
        assert!(lock.is_poisoned());
    }

    #[test]
    fn poisoned_locks_are_used_through_the_poison_and_counts_stay_exact() {
        use std::time::{SystemTime, UNIX_EPOCH};

        use crate::trace::{SpanContext, SpanData, SpanKind};

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        // Nothing listens on port 1: every attempt is refused.
        let config = OcAgentConfig::new()
            .with_address("127.0.0.1:1")
            .with_insecure(true)
            .with_reconnection(Duration::from_millis(20))
            .with_max_queued_spans(4);
        let exporter = OcAgentExporter::start(&config, runtime.handle()).expect("the exporter starts");
        let shared = &exporter.shared;
        poison(&shared.spans.queue);
        poison(&shared.reports.queue);
        poison(&shared.last_error);
        poison(&shared.spans.drop_log.last);
        poison(&exporter.tasks);

        let span =
            SpanData::new(SpanContext::default(), "s", SpanKind::Server, UNIX_EPOCH, SystemTime::now());
        exporter.export_spans(&Arc::from(vec![span; 6]));
        exporter.export_stats(&Arc::from(Vec::new()));
        assert_eq!((exporter.dropped_spans(), exporter.queued_spans()), (2, 4), "the bound of 4 held");
        assert_eq!(exporter.queued_reports(), 1);
        assert!(format!("{exporter:?}").contains("queued_spans: 4"));

        let error = runtime
            .block_on(exporter.shutdown(Instant::now() + Duration::from_millis(300)))
            .expect_err("nobody listens on port 1");
        assert!(matches!(&error, Error::Undelivered { spans: 4, reports: 1, .. }), "{error:?}");
        assert!(exporter.last_error().is_some_and(|e| e.contains("refused")), "{:?}", exporter.last_error());
        exporter.export_spans(&Arc::from(vec![SpanData::new(
            SpanContext::default(),
            "late",
            SpanKind::Server,
            UNIX_EPOCH,
            SystemTime::now(),
        )]));
        assert_eq!(exporter.dropped_spans(), 3, "after shutdown, spans are dropped and counted");
    }

    #[test]
    fn a_poisoned_drop_log_still_logs() {
        let log = DropLog::new();
        poison(&log.last);
        assert_eq!(log.add(5), Some(5), "poison is not taken for a line being logged elsewhere");
        assert_eq!(log.add(1), None, "and the rate limit still holds");
    }
}
