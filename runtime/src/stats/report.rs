//! Reports: a snapshot of every registered view, and the loop that hands one to the exporters each period.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::health;
use super::registry;
use super::view_data::ViewData;
use crate::export::{Exporter, StatsReport};

/// Every registered view's data now: rows cumulative since the view's registration (its `start`), in a
/// stable order (by tag values). Views that saw no record yet are included with no rows, so exporters can
/// describe them.
pub fn snapshot() -> StatsReport {
    let end = SystemTime::now();
    registry::collectors().iter().map(|c| c.view_data(end)).collect::<Vec<_>>().into()
}

/// The data of one registered view now, or `None` if no view of that name is registered.
pub fn view_data(name: &str) -> Option<ViewData> {
    registry::collector(name).map(|c| c.view_data(SystemTime::now()))
}

/// Takes a snapshot and hands it to every exporter. A panicking exporter is counted as an export error and
/// does not stop the others.
fn export_report(exporters: &[Arc<dyn Exporter>]) {
    if exporters.is_empty() {
        return;
    }
    let report = snapshot();
    for exporter in exporters {
        if catch_unwind(AssertUnwindSafe(|| exporter.export_stats(&report))).is_err() {
            tracing::error!(exporter = exporter.name(), "exporter panicked while taking a stats report");
            health::record_export_error(exporter.name());
        }
    }
}

/// Hands a report to every exporter each `period` until `stop` resolves, then hands over a last one (so
/// shutdown delivers what was recorded since the previous period).
///
/// A slow period (the runtime busy) is not caught up on: the next report waits a full period, and since
/// views are cumulative no data is lost by a late report.
pub(crate) async fn reporting_loop(
    period: Duration,
    exporters: Vec<Arc<dyn Exporter>>,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    // A zero period would spin; config never gives one, but keep the loop sane for any caller.
    let period = period.max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            _ = ticks.tick() => export_report(&exporters),
        }
    }
    export_report(&exporters);
}
