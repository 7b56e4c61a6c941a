//! An exporter that keeps what it receives in memory, for tests (yours too).
//!
//! ```no_run
//! use std::sync::Arc;
//! use oclayer_runtime::{Config, Telemetry, export::memory::InMemoryExporter};
//! # async fn example(config: Config) -> Result<(), oclayer_runtime::Error> {
//! let exported = Arc::new(InMemoryExporter::new());
//! let telemetry = Telemetry::builder(config).exporter(exported.clone()).init()?;
//! // ... run the code under test ...
//! telemetry.flush().await?;
//! assert!(exported.spans().iter().any(|span| span.name == "/users/{id}"));
//! # Ok(()) }
//! ```

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Exporter, SpanBatch, StatsReport};
use crate::stats::ViewData;
use crate::trace::SpanData;

/// Collects exported spans. Cheap to share: register an `Arc` of it and keep a clone to inspect.
#[derive(Debug, Default)]
pub struct InMemoryExporter {
    spans: Mutex<Vec<SpanData>>,
    /// Signalled on every batch, for [`wait_for_spans`](InMemoryExporter::wait_for_spans).
    arrived: Condvar,
    /// Every stats report received, oldest first (a test runs for a few periods, so keeping all is cheap).
    reports: Mutex<Vec<StatsReport>>,
    /// Signalled on every report, for [`wait_for_reports`](InMemoryExporter::wait_for_reports).
    reported: Condvar,
}

impl InMemoryExporter {
    /// An empty exporter.
    pub fn new() -> InMemoryExporter {
        InMemoryExporter::default()
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<SpanData> {
        self.lock().clone()
    }

    /// Forgets every span received so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Blocks the calling thread until at least `count` spans have arrived or `timeout` passed, and returns
    /// the spans received by then (fewer than `count` on timeout, so the test's assertion says what came).
    ///
    /// The pipeline runs on its own thread, so blocking here never stops it. In async tests prefer
    /// `telemetry.flush().await` followed by [`spans`](InMemoryExporter::spans): it needs no timeout.
    pub fn wait_for_spans(&self, count: usize, timeout: Duration) -> Vec<SpanData> {
        let deadline = Instant::now() + timeout;
        let mut spans = self.lock();
        while spans.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            spans = self.arrived.wait_timeout(spans, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        spans.clone()
    }

    /// Every stats report received so far, oldest first. Views are cumulative, so the last one has the
    /// totals.
    pub fn reports(&self) -> Vec<StatsReport> {
        self.lock_reports().clone()
    }

    /// The latest stats report, if any arrived.
    pub fn last_report(&self) -> Option<StatsReport> {
        self.lock_reports().last().cloned()
    }

    /// The data of view `name` in the latest report that has it.
    pub fn view_data(&self, name: &str) -> Option<ViewData> {
        self.lock_reports()
            .iter()
            .rev()
            .find_map(|report| report.iter().find(|v| v.view.name == name).cloned())
    }

    /// Blocks the calling thread until at least `count` stats reports have arrived or `timeout` passed, and
    /// returns the reports received by then (fewer than `count` on timeout). `Telemetry::shutdown` hands over
    /// a last report, so after it no waiting is needed.
    pub fn wait_for_reports(&self, count: usize, timeout: Duration) -> Vec<StatsReport> {
        let deadline = Instant::now() + timeout;
        let mut reports = self.lock_reports();
        while reports.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            reports = self.reported.wait_timeout(reports, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        reports.clone()
    }

    fn lock_reports(&self) -> MutexGuard<'_, Vec<StatsReport>> {
        self.reports.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<SpanData>> {
        // A test that panicked while holding the lock must not hide the spans from the next assertion.
        self.spans.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Exporter for InMemoryExporter {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn export_spans(&self, spans: &SpanBatch) {
        self.lock().extend(spans.iter().cloned());
        self.arrived.notify_all();
    }

    fn export_stats(&self, report: &StatsReport) {
        self.lock_reports().push(StatsReport::clone(report));
        self.reported.notify_all();
    }
}
