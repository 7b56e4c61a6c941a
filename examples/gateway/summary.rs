//! What the demo prints at the end: the load's results, what the telemetry pipeline handed over and lost,
//! and, from the receiving agent, one request as a trace tree and the top rows of the latency view.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use oclayer::stats::{AggregationData, view_data};
use oclayer_agent::render;
use oclayer_agent::{ReceivedMetric, ReceivedSpan};
use oclayer_proto::metrics::v1::point;

use super::load::LoadReport;

/// The router's latency view, as the agent receives it.
pub const LATENCY_VIEW: &str = "opencensus.io/http/server/latency";
/// How many rows of the latency view to print.
const LATENCY_ROWS: usize = 8;

/// What was dropped on the way to the exporters, read after shutdown.
#[derive(Clone, Copy, Debug, Default)]
pub struct Drops {
    /// Spans the span queue dropped because it was full.
    pub queue_spans: u64,
    /// Spans the exporters dropped (their queues were full, or the agent was unreachable too long).
    pub exporter_spans: i64,
    /// Stats reports the exporters dropped.
    pub exporter_reports: i64,
}

impl Drops {
    /// The counts now, from the span pipeline and the health views.
    pub fn now() -> Drops {
        Drops {
            queue_spans: oclayer::trace::dropped_spans(),
            exporter_spans: view_total("oclayer.io/export/dropped_spans"),
            exporter_reports: view_total("oclayer.io/export/dropped_reports"),
        }
    }
}

/// The tag value under which the span pipeline records its own drops in the health views: those are
/// `queue_spans`, not the exporters'.
const PIPELINE_ROW: &str = "pipeline";

/// The sum of a count or sum view over its exporters' rows (the pipeline's own row left out); 0 when it
/// is not registered.
fn view_total(name: &str) -> i64 {
    view_data(name).map_or(0, |data| {
        data.rows
            .iter()
            .filter(|row| !row.tags.iter().any(|tag| tag.as_deref() == Some(PIPELINE_ROW)))
            .map(|row| match &row.data {
                AggregationData::Count(n) | AggregationData::SumInt64(n) => *n,
                AggregationData::SumFloat64(x) => *x as i64,
                _ => 0,
            })
            .sum()
    })
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The load's lines: requests by status and the gateway's latency percentiles as the client saw them.
pub fn load_lines(report: &LoadReport) -> String {
    let mut out = String::new();
    let total = report.answered() + report.failed;
    let rate = total as f64 / report.elapsed.as_secs_f64().max(f64::EPSILON);
    let _ =
        writeln!(out, "requests     {total} in {:.2} s ({rate:.0} per second)", report.elapsed.as_secs_f64());
    let by_status: Vec<String> = report.statuses.iter().map(|(status, n)| format!("{status}: {n}")).collect();
    let mut statuses = by_status.join(" · ");
    if report.failed > 0 {
        let _ = write!(statuses, " · no answer: {}", report.failed);
    }
    let _ = writeln!(out, "  by status  {statuses}");
    if let Some(failure) = &report.first_failure {
        let _ = writeln!(out, "  first request without an answer: {failure}");
    }
    if let (Some(p50), Some(p90), Some(p99)) =
        (report.percentile(50.0), report.percentile(90.0), report.percentile(99.0))
    {
        let _ = writeln!(
            out,
            "latency      p50 {} · p90 {} · p99 {}  (through the gateway, seen by the client)",
            millis(p50),
            millis(p90),
            millis(p99)
        );
    }
    out
}

/// The telemetry lines: what the pipeline handed to its exporters, what the agent received, what was lost.
pub fn telemetry_lines(
    spans_handed: u64,
    reports_handed: u64,
    agent: Option<(&[ReceivedSpan], &[ReceivedMetric])>,
    drops: Drops,
) -> String {
    let mut out = String::new();
    let _ = write!(out, "spans        {spans_handed} exported (handed to the exporters)");
    if let Some((spans, _)) = agent {
        let _ = write!(out, " · {} received by the agent", spans.len());
    }
    out.push('\n');
    let _ = write!(
        out,
        "stats        {reports_handed} report{} sent (one per reporting period, and a last one at shutdown)",
        if reports_handed == 1 { "" } else { "s" }
    );
    if let Some((_, metrics)) = agent {
        let mut views: Vec<&str> = metrics.iter().map(ReceivedMetric::name).collect();
        views.sort_unstable();
        views.dedup();
        let _ = write!(out, " · {} metrics of {} views received by the agent", metrics.len(), views.len());
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "drops        {} spans at the span queue · {} spans and {} reports at the exporters",
        drops.queue_spans, drops.exporter_spans, drops.exporter_reports
    );
    out
}

/// The spans of one trace, grouped by trace id in arrival order of their first span.
pub fn traces(spans: &[ReceivedSpan]) -> Vec<Vec<&ReceivedSpan>> {
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    let mut traces: Vec<Vec<&ReceivedSpan>> = Vec::new();
    for span in spans {
        let slot = *index.entry(span.span.trace_id.as_slice()).or_insert_with(|| {
            traces.push(Vec::new());
            traces.len() - 1
        });
        traces[slot].push(span);
    }
    traces
}

/// The request to show: preferably one of `/users/{id}/orders` (the pipe with two backends) that
/// succeeded, with the most spans; else the trace with the most spans.
pub fn pick_trace(spans: &[ReceivedSpan]) -> Option<Vec<ReceivedSpan>> {
    traces(spans)
        .into_iter()
        .enumerate()
        .max_by_key(|(arrival, trace)| {
            let orders = trace.iter().any(|s| s.name() == "/users/{id}/orders");
            let ok = trace.iter().all(|s| s.span.status.as_ref().is_none_or(|st| st.code == 0));
            // Among equals, the earliest: `max_by_key` keeps the last maximum, so rank earlier ones higher.
            (orders && ok, trace.len(), std::cmp::Reverse(*arrival))
        })
        .map(|(_, trace)| trace.into_iter().cloned().collect())
}

/// The latest report of the latency view as a table of its busiest rows, or `None` if it did not arrive or
/// has no rows.
pub fn latency_rows(metrics: &[ReceivedMetric]) -> Option<String> {
    // Views are cumulative: the last report holds everything.
    let mut latest = metrics.iter().rev().find(|m| m.name() == LATENCY_VIEW)?.clone();
    if latest.metric.timeseries.is_empty() {
        return None;
    }
    let count = |series: &oclayer_proto::metrics::v1::TimeSeries| -> i64 {
        series
            .points
            .last()
            .and_then(|p| match &p.value {
                Some(point::Value::DistributionValue(d)) => Some(d.count),
                _ => None,
            })
            .unwrap_or(0)
    };
    let rows = latest.metric.timeseries.len();
    latest.metric.timeseries.sort_by_key(|series| std::cmp::Reverse(count(series)));
    latest.metric.timeseries.truncate(LATENCY_ROWS);
    let mut table = render::metrics_table(std::slice::from_ref(&latest));
    if rows > LATENCY_ROWS {
        let _ = writeln!(table, "  ... {} more rows", rows - LATENCY_ROWS);
    }
    Some(table)
}
