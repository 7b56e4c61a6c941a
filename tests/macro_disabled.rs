//! `#[trace_layer]` on a layer the config disables (`enabled_layers` without `pipe`): the body runs, nothing
//! is recorded, `fields(...)` are not evaluated, and the calls inside keep the caller's span as parent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use oclayer::config::EnabledLayers;
use oclayer::export::memory::InMemoryExporter;
use oclayer::{Config, Telemetry, trace_layer};

static EVALUATED: AtomicUsize = AtomicUsize::new(0);

fn evaluated() -> u32 {
    EVALUATED.fetch_add(1, Ordering::Relaxed);
    1
}

#[trace_layer(router, route = "/outer")]
async fn outer() -> u32 {
    skipped().await
}

#[trace_layer(pipe, route = "/skipped", fields(n = evaluated()))]
async fn skipped() -> u32 {
    inner() + 1
}

#[trace_layer(backend, route = "/inner")]
fn inner() -> u32 {
    41
}

#[tokio::test]
async fn a_disabled_layer_records_nothing_and_keeps_the_parent() {
    let layers = EnabledLayers { router: true, pipe: false, backend: true };
    let config = Config::builder().sample_rate(100).enabled_layers(layers).build().expect("valid");
    let exported = Arc::new(InMemoryExporter::new());
    let telemetry =
        Telemetry::builder(config).exporter(exported.clone()).init().expect("the pipeline starts");

    assert_eq!(outer().await, 42);
    telemetry.flush().await.expect("the pipeline flushes");

    assert_eq!(EVALUATED.load(Ordering::Relaxed), 0, "a disabled layer evaluates no field");
    let spans = exported.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let router = spans.iter().find(|s| s.name == "/outer").expect("the router span");
    let backend = spans.iter().find(|s| s.name == "backend-/inner").expect("the backend span");
    assert_eq!(backend.parent_span_id, Some(router.context.span_id), "the disabled pipe is transparent");
    assert!(
        oclayer::stats::view_data("oclayer.io/pipe/request_count").is_none(),
        "pipe views are not registered"
    );

    telemetry.shutdown().await.expect("the pipeline stops");
}
