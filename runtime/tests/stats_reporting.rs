//! Stats through the whole pipeline: `init` registers the enabled layers' views, the background thread
//! reports every period to the exporters, and `shutdown` hands over a last report. Its own test binary,
//! since a pipeline is one per process.

use std::sync::Arc;
use std::time::Duration;

use oclayer_runtime::config::EnabledLayers;
use oclayer_runtime::export::memory::InMemoryExporter;
use oclayer_runtime::layer::{self, PipeOutcome};
use oclayer_runtime::stats::{self, AggregationData};
use oclayer_runtime::{Config, Telemetry};

fn request_count(report: &[stats::ViewData]) -> Option<AggregationData> {
    report
        .iter()
        .find(|v| v.view.name == "opencensus.io/http/server/request_count")
        .and_then(|v| v.rows.first())
        .map(|row| row.data.clone())
}

#[tokio::test]
async fn reports_each_period_and_a_last_one_on_shutdown() {
    let config = Config::builder()
        .reporting_period(Duration::from_millis(20))
        .enabled_layers(EnabledLayers { router: true, pipe: false, backend: true })
        .build()
        .expect("valid config");
    let exported = Arc::new(InMemoryExporter::new());
    let telemetry = Telemetry::builder(config).exporter(exported.clone()).init().expect("pipeline starts");

    let registered: Vec<String> = stats::registered_views().iter().map(|v| v.name.to_string()).collect();
    assert!(registered.iter().any(|n| n == "opencensus.io/http/server/latency"), "{registered:?}");
    assert!(registered.iter().any(|n| n == "opencensus.io/http/client/roundtrip_latency"), "{registered:?}");
    assert!(registered.iter().any(|n| n == "oclayer.io/export/errors"), "{registered:?}");
    assert!(
        !registered.iter().any(|n| n.starts_with("oclayer.io/pipe/")),
        "pipe is disabled: {registered:?}"
    );

    layer::record_router("/users/{id}", "GET", 200, 0, 10, Duration::from_millis(4));
    layer::record_pipe("/users/{id}", PipeOutcome::Ok, Duration::from_millis(1));
    // The background thread reports on its own: wait for two periodic reports (the timeout only bounds a
    // broken pipeline; nothing here depends on how fast reports come).
    let reports = exported.wait_for_reports(2, Duration::from_secs(30));
    assert!(reports.len() >= 2, "periodic reports arrive, got {}", reports.len());
    assert_eq!(request_count(reports.last().expect("a report")), Some(AggregationData::Count(1)));
    assert!(
        reports.iter().all(|r| !r.iter().any(|v| v.view.name.starts_with("oclayer.io/pipe/"))),
        "no pipe views in any report"
    );

    layer::record_router("/users/{id}", "GET", 200, 0, 10, Duration::from_millis(4));
    let before_shutdown = exported.reports().len();
    telemetry.shutdown().await.expect("clean shutdown");
    let reports = exported.reports();
    assert!(reports.len() > before_shutdown, "shutdown hands over a last report");
    assert_eq!(request_count(reports.last().expect("a report")), Some(AggregationData::Count(2)));
    let data = exported.view_data("opencensus.io/http/server/latency").expect("latency view reported");
    assert!(data.end >= data.start);
}
