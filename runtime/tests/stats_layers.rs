//! The layers' standard views: which are registered for which enabled layers, and what the layers' record
//! functions put in them. Its own test binary, since it registers and unregisters process-wide views.

use std::collections::BTreeSet;
use std::time::Duration;

use oclayer_runtime::config::EnabledLayers;
use oclayer_runtime::layer::{self, Layer, PipeOutcome};
use oclayer_runtime::stats::{self, AggregationData, DistributionData, MeasureKind, TagMap};

const ROUTER: [&str; 6] = [
    "opencensus.io/http/server/request_count",
    "opencensus.io/http/server/request_bytes",
    "opencensus.io/http/server/response_bytes",
    "opencensus.io/http/server/latency",
    "opencensus.io/http/server/request_count_by_method",
    "opencensus.io/http/server/response_count_by_status_code",
];
const PIPE: [&str; 2] = ["oclayer.io/pipe/request_count", "oclayer.io/pipe/latency"];
const BACKEND: [&str; 4] = [
    "opencensus.io/http/client/sent_bytes",
    "opencensus.io/http/client/received_bytes",
    "opencensus.io/http/client/roundtrip_latency",
    "opencensus.io/http/client/completed_count",
];
const HEALTH: [&str; 3] =
    ["oclayer.io/export/dropped_spans", "oclayer.io/export/dropped_reports", "oclayer.io/export/errors"];

fn registered() -> BTreeSet<String> {
    stats::registered_views().iter().map(|v| v.name.to_string()).collect()
}

fn names(groups: &[&[&str]]) -> BTreeSet<String> {
    groups.iter().flat_map(|g| g.iter().map(|n| (*n).to_owned())).collect()
}

fn rows(name: &str) -> Vec<(Vec<Option<String>>, AggregationData)> {
    stats::view_data(name)
        .unwrap_or_else(|| panic!("{name} is not registered"))
        .rows
        .into_iter()
        .map(|r| (r.tags.iter().map(|t| t.as_deref().map(str::to_owned)).collect(), r.data))
        .collect()
}

fn tags(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some((*v).to_owned())).collect()
}

fn distribution(data: &AggregationData) -> &DistributionData {
    match data {
        AggregationData::Distribution(d) => d,
        other => panic!("expected a distribution, got {other:?}"),
    }
}

#[test]
fn only_enabled_layers_views_are_registered_and_health_always() {
    layer::register_layer_views(EnabledLayers { router: true, pipe: false, backend: false }).expect("views");
    assert_eq!(registered(), names(&[&ROUTER, &HEALTH]));

    layer::register_layer_views(EnabledLayers { router: false, pipe: true, backend: true }).expect("views");
    assert_eq!(registered(), names(&[&PIPE, &BACKEND, &HEALTH]));

    layer::register_layer_views(EnabledLayers { router: false, pipe: false, backend: false }).expect("views");
    assert_eq!(registered(), names(&[&HEALTH]));

    layer::register_layer_views(EnabledLayers::default()).expect("views");
    layer::register_layer_views(EnabledLayers::default()).expect("registering twice is a no-op");
    assert_eq!(registered(), names(&[&ROUTER, &PIPE, &BACKEND, &HEALTH]));

    // The definitions match ochttp's where the names are ochttp's.
    let latency = stats::registered_views()
        .into_iter()
        .find(|v| v.name == "opencensus.io/http/server/latency")
        .expect("registered");
    assert_eq!(latency.measure.unit, "ms");
    assert_eq!(latency.measure.kind, MeasureKind::Float64);
    assert_eq!(latency.tag_keys, ["http_server_route", "http.method", "http.status"]);
    for layer in Layer::ALL {
        for view in layer::views(layer) {
            assert!(!view.descriptor().description.is_empty(), "{}", view.name());
        }
    }

    records_land_in_the_layer_views();
}

/// Runs after the registration test above has left every layer's views registered.
fn records_land_in_the_layer_views() {
    layer::record_router("/users/{id}", "GET", 200, 10, 2048, Duration::from_micros(2500));
    layer::record_router("/users/{id}", "GET", 200, 0, 100, Duration::from_millis(1));
    layer::record_router(layer::UNMATCHED_ROUTE, "POST", 404, 5, 0, Duration::from_millis(400));

    let route_row = tags(&["/users/{id}", "GET", "200"]);
    let unmatched_row = tags(&["(unmatched)", "POST", "404"]);
    assert_eq!(
        rows("opencensus.io/http/server/request_count"),
        vec![
            (unmatched_row.clone(), AggregationData::Count(1)),
            (route_row.clone(), AggregationData::Count(2))
        ]
    );
    let latency = rows("opencensus.io/http/server/latency");
    let d = distribution(&latency[1].1);
    assert_eq!(latency[1].0, route_row);
    assert_eq!(d.sum, 3.5);
    // 2.5 ms in [2,3), 1 ms on the bound goes to [1,2).
    assert_eq!((d.bucket_counts[1], d.bucket_counts[2]), (1, 1));
    let response = rows("opencensus.io/http/server/response_bytes");
    // 2048 is a bound: it counts in [2048, 4096).
    assert_eq!(distribution(&response[1].1).bucket_counts[..3], [1, 0, 1]);
    assert_eq!(
        rows("opencensus.io/http/server/request_count_by_method"),
        vec![(tags(&["GET"]), AggregationData::Count(2)), (tags(&["POST"]), AggregationData::Count(1))]
    );
    assert_eq!(
        rows("opencensus.io/http/server/response_count_by_status_code"),
        vec![(tags(&["200"]), AggregationData::Count(2)), (tags(&["404"]), AggregationData::Count(1))]
    );

    layer::record_backend("users:80", "/u/{id}", "GET", Some(503), 0, 64, Duration::from_millis(20));
    layer::record_backend("users:80", "/u/{id}", "GET", None, 12, 0, Duration::from_secs(30));
    assert_eq!(
        rows("opencensus.io/http/client/completed_count"),
        vec![
            (tags(&["users:80", "/u/{id}", "GET", "500"]), AggregationData::Count(1)),
            (tags(&["users:80", "/u/{id}", "GET", "503"]), AggregationData::Count(1)),
        ]
    );
    let sent = rows("opencensus.io/http/client/sent_bytes");
    assert_eq!(distribution(&sent[0].1).sum, 12.0, "a transport error is recorded as status 500");
    let latency = rows("opencensus.io/http/client/roundtrip_latency");
    assert_eq!(distribution(&latency[0].1).max, 30_000.0);

    // The route set by the router layer is in the context of the pipe's record; pipe views do not use it, so
    // it must not leak into their rows either.
    stats::with_tags_sync(TagMap::new().with(layer::KEY_SERVER_ROUTE, "/users/{id}"), || {
        layer::record_pipe("/users/{id}", PipeOutcome::Ok, Duration::from_millis(3));
        layer::record_pipe("/users/{id}", PipeOutcome::Canceled, Duration::from_millis(1));
    });
    layer::record_pipe("/users/{id}", PipeOutcome::Error, Duration::from_millis(3));
    assert_eq!(
        rows("oclayer.io/pipe/request_count"),
        vec![
            (tags(&["/users/{id}", "canceled"]), AggregationData::Count(1)),
            (tags(&["/users/{id}", "error"]), AggregationData::Count(1)),
            (tags(&["/users/{id}", "ok"]), AggregationData::Count(1)),
        ]
    );

    stats::health::record_export_error("ocagent");
    stats::health::record_export_error("ocagent");
    stats::health::record_dropped_spans("pipeline", 7);
    stats::health::record_dropped_reports("ocagent", 1);
    assert_eq!(rows("oclayer.io/export/errors"), vec![(tags(&["ocagent"]), AggregationData::Count(2))]);
    assert_eq!(
        rows("oclayer.io/export/dropped_spans"),
        vec![(tags(&["pipeline"]), AggregationData::SumInt64(7))]
    );
    assert_eq!(
        rows("oclayer.io/export/dropped_reports"),
        vec![(tags(&["ocagent"]), AggregationData::SumInt64(1))]
    );
}

#[test]
fn status_tags_are_the_three_digits() {
    assert_eq!(layer::status_tag(100), "100");
    assert_eq!(layer::status_tag(200), "200");
    assert_eq!(layer::status_tag(404), "404");
    assert_eq!(layer::status_tag(999), "999");
    assert_eq!(layer::status_tag(99), "invalid");
    assert_eq!(layer::status_tag(1000), "invalid");
}
