//! The ocagent exporter against a real agent receiver on loopback: every span and metric field arrives as
//! the runtime recorded it, every stream opens with the Node, and headers and gzip apply to every stream.

mod ocagent_support;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use ocagent_support::*;
use oclayer_agent::StreamKind;
use oclayer_proto::metrics::v1::metric_descriptor::Type;
use oclayer_proto::metrics::v1::{distribution_value, point};
use oclayer_proto::prost_types::Timestamp;
use oclayer_proto::trace::v1::attribute_value::Value;
use oclayer_proto::trace::v1::span::{self as wire_span, time_event};
use oclayer_runtime::export::{Exporter, StatsReport};
use oclayer_runtime::stats::{
    Aggregation, AggregationData, DistributionData, MeasureDescriptor, MeasureKind, Row, ViewData,
    ViewDescriptor,
};
use oclayer_runtime::trace::{
    AttributeValue, Attributes, Link, LinkKind, MessageEventKind, SpanId, SpanKind, Status, StatusCode,
    TimeEvent, TimeEventKind, TraceId, TraceState,
};

fn text(value: &str) -> Option<Value> {
    Some(Value::StringValue(oclayer_proto::trace::v1::TruncatableString {
        value: value.to_owned(),
        truncated_byte_count: 0,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_field_arrives() {
    let agent = agent().await;
    let exporter = exporter(&config_for(&agent, "wire-test"));

    let mut root = span("/users/{id}");
    root.context.trace_id = TraceId([0x4b; 16]);
    root.context.span_id = SpanId([0x11; 8]);
    root.context.tracestate = TraceState::from_entries(vec![("congo".into(), "t61rcWkgMzE".into())]);
    root.start_time = at(1_700_000_000, 123_456_789);
    root.end_time = at(1_700_000_000, 923_456_789);
    root.attributes = Attributes {
        entries: vec![
            (Cow::Borrowed("http.method"), AttributeValue::from("GET")),
            (Cow::Borrowed("http.status_code"), AttributeValue::Int(404)),
            (Cow::Borrowed("complete"), AttributeValue::Bool(true)),
            (Cow::Borrowed("ratio"), AttributeValue::Double(0.75)),
        ],
        dropped: 3,
    };
    root.status = Status { code: StatusCode::NotFound, message: Cow::Borrowed("NOT_FOUND") };
    root.child_span_count = 1;
    root.time_events = vec![
        TimeEvent {
            time: at(1_700_000_000, 200_000_000),
            kind: TimeEventKind::Annotation {
                description: Cow::Borrowed("cache miss"),
                attributes: Attributes {
                    entries: vec![(Cow::Borrowed("key"), AttributeValue::from("users:1"))],
                    dropped: 0,
                },
            },
        },
        TimeEvent {
            time: at(1_700_000_000, 300_000_000),
            kind: TimeEventKind::MessageEvent {
                kind: MessageEventKind::Sent,
                id: 1,
                uncompressed_size: 2048,
                compressed_size: 512,
            },
        },
    ];
    root.dropped_annotations = 2;
    root.dropped_message_events = 1;
    root.links = vec![Link {
        trace_id: TraceId([0x99; 16]),
        span_id: SpanId([0x98; 8]),
        kind: LinkKind::ParentLinkedSpan,
        attributes: Attributes {
            entries: vec![(Cow::Borrowed("why"), AttributeValue::from("retry"))],
            dropped: 0,
        },
    }];
    root.dropped_links = 4;

    let mut child = span("backend-/users");
    child.context.trace_id = root.context.trace_id;
    child.context.span_id = SpanId([0x22; 8]);
    child.parent_span_id = Some(root.context.span_id);
    child.kind = SpanKind::Client;
    child.same_process_as_parent_span = Some(true);
    child.status = Status { code: StatusCode::Unknown, message: Cow::Borrowed("connection reset") };

    exporter.export_spans(&Arc::from(vec![root.clone(), child.clone()]));
    exporter.flush(deadline()).await.expect("flush");
    let received = agent.wait_for_spans(2, WAIT).await.expect("two spans");
    let by_name: BTreeMap<&str, &oclayer_proto::trace::v1::Span> =
        received.iter().map(|r| (r.name(), &r.span)).collect();

    let wire_root = by_name["/users/{id}"];
    assert_eq!(wire_root.trace_id, [0x4b; 16]);
    assert_eq!(wire_root.span_id, [0x11; 8]);
    assert!(wire_root.parent_span_id.is_empty(), "a root sends no parent id bytes");
    assert_eq!(wire_root.kind, wire_span::SpanKind::Server as i32);
    assert_eq!(wire_root.start_time, Some(Timestamp { seconds: 1_700_000_000, nanos: 123_456_789 }));
    assert_eq!(wire_root.end_time, Some(Timestamp { seconds: 1_700_000_000, nanos: 923_456_789 }));
    let tracestate = wire_root.tracestate.as_ref().expect("tracestate");
    assert_eq!(
        tracestate.entries.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect::<Vec<_>>(),
        [("congo", "t61rcWkgMzE")]
    );
    let attributes = wire_root.attributes.as_ref().expect("attributes");
    let attribute = |key: &str| attributes.attribute_map.get(key).and_then(|v| v.value.clone());
    assert_eq!(attribute("http.method"), text("GET"));
    assert_eq!(attribute("http.status_code"), Some(Value::IntValue(404)));
    assert_eq!(attribute("complete"), Some(Value::BoolValue(true)));
    assert_eq!(attribute("ratio"), Some(Value::DoubleValue(0.75)));
    assert_eq!(attributes.dropped_attributes_count, 3);
    let status = wire_root.status.as_ref().expect("status");
    assert_eq!((status.code, status.message.as_str()), (5, "NOT_FOUND"));
    assert_eq!(wire_root.child_span_count, Some(1));
    assert_eq!(wire_root.same_process_as_parent_span, None);

    let events = wire_root.time_events.as_ref().expect("time events");
    assert_eq!((events.dropped_annotations_count, events.dropped_message_events_count), (2, 1));
    assert_eq!(events.time_event.len(), 2);
    assert_eq!(events.time_event[0].time, Some(Timestamp { seconds: 1_700_000_000, nanos: 200_000_000 }));
    let Some(time_event::Value::Annotation(annotation)) = &events.time_event[0].value else {
        panic!("expected an annotation first: {events:?}");
    };
    assert_eq!(annotation.description.as_ref().map(|d| d.value.as_str()), Some("cache miss"));
    let annotation_attributes = annotation.attributes.as_ref().expect("annotation attributes");
    assert_eq!(annotation_attributes.attribute_map.get("key").and_then(|v| v.value.clone()), text("users:1"));
    let Some(time_event::Value::MessageEvent(message)) = &events.time_event[1].value else {
        panic!("expected a message event second: {events:?}");
    };
    assert_eq!(message.r#type, time_event::message_event::Type::Sent as i32);
    assert_eq!((message.id, message.uncompressed_size, message.compressed_size), (1, 2048, 512));

    let links = wire_root.links.as_ref().expect("links");
    assert_eq!(links.dropped_links_count, 4);
    assert_eq!(links.link.len(), 1);
    assert_eq!(links.link[0].trace_id, [0x99; 16]);
    assert_eq!(links.link[0].span_id, [0x98; 8]);
    assert_eq!(links.link[0].r#type, wire_span::link::Type::ParentLinkedSpan as i32);
    let link_attributes = links.link[0].attributes.as_ref().expect("link attributes");
    assert_eq!(link_attributes.attribute_map.get("why").and_then(|v| v.value.clone()), text("retry"));

    let wire_child = by_name["backend-/users"];
    assert_eq!(wire_child.trace_id, [0x4b; 16]);
    assert_eq!(wire_child.parent_span_id, [0x11; 8]);
    assert_eq!(wire_child.kind, wire_span::SpanKind::Client as i32);
    assert_eq!(wire_child.same_process_as_parent_span, Some(true));
    assert_eq!(wire_child.child_span_count, Some(0));
    let status = wire_child.status.as_ref().expect("status");
    assert_eq!((status.code, status.message.as_str()), (2, "connection reset"));
    assert_eq!(
        (wire_child.start_time.as_ref(), wire_child.end_time.as_ref()),
        (Some(&Timestamp::from(child.start_time)), Some(&Timestamp::from(child.end_time)))
    );

    exporter.shutdown(deadline()).await.expect("shutdown");
    assert_eq!(exporter.dropped_spans(), 0);
}

fn view(
    name: &'static str,
    aggregation: Aggregation,
    kind: MeasureKind,
    keys: &[&'static str],
) -> Arc<ViewDescriptor> {
    Arc::new(ViewDescriptor {
        name: Cow::Borrowed(name),
        description: Cow::Borrowed("a test view"),
        measure: MeasureDescriptor {
            name: Cow::Borrowed(name),
            description: Cow::Borrowed("a test measure"),
            unit: Cow::Borrowed(if matches!(kind, MeasureKind::Float64) { "ms" } else { "By" }),
            kind,
        },
        tag_keys: keys.iter().map(|k| Cow::Borrowed(*k)).collect(),
        aggregation,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_arrive_with_types_bounds_and_counts() {
    let agent = agent().await;
    let exporter = exporter(&config_for(&agent, "wire-test"));
    let start = at(1_700_000_000, 0);
    let end = at(1_700_000_010, 500);
    let snapshot = |view: Arc<ViewDescriptor>, rows: Vec<Row>| ViewData { view, start, end, rows };
    let row = |tags: &[Option<&str>], data: AggregationData| Row {
        tags: tags.iter().map(|t| t.map(Arc::from)).collect(),
        data,
    };
    let bounds: Arc<[f64]> = Arc::from(vec![10.0, 100.0]);
    let report: StatsReport = Arc::from(vec![
        snapshot(
            view("test/count", Aggregation::Count, MeasureKind::Int64, &["method", "status"]),
            vec![row(&[Some("GET"), None], AggregationData::Count(7))],
        ),
        snapshot(
            view("test/sum_int", Aggregation::Sum, MeasureKind::Int64, &[]),
            vec![row(&[], AggregationData::SumInt64(4096))],
        ),
        snapshot(
            view("test/sum_float", Aggregation::Sum, MeasureKind::Float64, &[]),
            vec![row(&[], AggregationData::SumFloat64(12.5))],
        ),
        snapshot(
            view(
                "test/latency",
                Aggregation::Distribution { bounds: bounds.clone() },
                MeasureKind::Float64,
                &["route"],
            ),
            vec![row(
                &[Some("/users/{id}")],
                AggregationData::Distribution(DistributionData {
                    count: 3,
                    sum: 165.0,
                    sum_of_squared_deviation: 9350.0,
                    min: 5.0,
                    max: 110.0,
                    bucket_counts: vec![1, 1, 1],
                }),
            )],
        ),
        snapshot(
            view("test/last_int", Aggregation::LastValue, MeasureKind::Int64, &[]),
            vec![row(&[], AggregationData::LastValueInt64(42))],
        ),
        snapshot(
            view("test/last_float", Aggregation::LastValue, MeasureKind::Float64, &[]),
            vec![row(&[], AggregationData::LastValueFloat64(0.5))],
        ),
    ]);
    exporter.export_stats(&report);
    exporter.flush(deadline()).await.expect("flush");
    let metrics = agent.wait_for_metrics(6, WAIT).await.expect("six metrics");
    let by_name: BTreeMap<&str, &oclayer_proto::metrics::v1::Metric> =
        metrics.iter().map(|m| (m.name(), &m.metric)).collect();
    let type_of = |name: &str| by_name[name].metric_descriptor.as_ref().map(|d| d.r#type);
    let only_point = |name: &str| {
        let series = &by_name[name].timeseries;
        assert_eq!(series.len(), 1, "{name}");
        assert_eq!(series[0].points.len(), 1, "{name}");
        (series[0].clone(), series[0].points[0].value.clone())
    };
    let start_ts = Some(Timestamp { seconds: 1_700_000_000, nanos: 0 });
    let end_ts = Some(Timestamp { seconds: 1_700_000_010, nanos: 500 });

    assert_eq!(type_of("test/count"), Some(Type::CumulativeInt64 as i32));
    let (series, value) = only_point("test/count");
    assert_eq!(value, Some(point::Value::Int64Value(7)));
    assert_eq!(series.start_timestamp, start_ts);
    assert_eq!(series.points[0].timestamp, end_ts);
    let labels: Vec<(&str, bool)> =
        series.label_values.iter().map(|l| (l.value.as_str(), l.has_value)).collect();
    assert_eq!(labels, [("GET", true), ("", false)], "one value per key, absent marked");
    let descriptor = by_name["test/count"].metric_descriptor.as_ref().expect("descriptor");
    assert_eq!(
        descriptor.label_keys.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(),
        ["method", "status"]
    );
    // A count of byte-sized messages is a number of messages: dimensionless.
    assert_eq!((descriptor.unit.as_str(), descriptor.description.as_str()), ("1", "a test view"));

    assert_eq!(type_of("test/sum_int"), Some(Type::CumulativeInt64 as i32));
    assert_eq!(only_point("test/sum_int").1, Some(point::Value::Int64Value(4096)));
    assert_eq!(type_of("test/sum_float"), Some(Type::CumulativeDouble as i32));
    assert_eq!(only_point("test/sum_float").1, Some(point::Value::DoubleValue(12.5)));

    assert_eq!(type_of("test/latency"), Some(Type::CumulativeDistribution as i32));
    let (series, value) = only_point("test/latency");
    assert_eq!(series.start_timestamp, start_ts);
    let Some(point::Value::DistributionValue(distribution)) = value else { panic!("a distribution") };
    assert_eq!(
        (distribution.count, distribution.sum, distribution.sum_of_squared_deviation),
        (3, 165.0, 9350.0)
    );
    let Some(distribution_value::BucketOptions {
        r#type: Some(distribution_value::bucket_options::Type::Explicit(explicit)),
    }) = distribution.bucket_options
    else {
        panic!("explicit bucket bounds");
    };
    assert_eq!(explicit.bounds, [10.0, 100.0]);
    assert_eq!(
        distribution.buckets.iter().map(|b| b.count).collect::<Vec<_>>(),
        [1, 1, 1],
        "len(bounds) + 1"
    );

    assert_eq!(type_of("test/last_int"), Some(Type::GaugeInt64 as i32));
    let (series, value) = only_point("test/last_int");
    assert_eq!(value, Some(point::Value::Int64Value(42)));
    assert_eq!(series.start_timestamp, None, "gauges have no start");
    assert_eq!(type_of("test/last_float"), Some(Type::GaugeDouble as i32));
    assert_eq!(only_point("test/last_float").1, Some(point::Value::DoubleValue(0.5)));

    exporter.shutdown(deadline()).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_stats_arrive_through_a_snapshot() {
    use oclayer_runtime::stats::{self, Int64Measure, TagKey, View};
    static BYTES: Int64Measure = Int64Measure::new("ocagent_wire/bytes", "Bytes sent", "By");
    const ROUTE: TagKey = TagKey::from_static("route");
    stats::register(&[View::new(
        "ocagent_wire/bytes",
        "Bytes by route",
        &BYTES,
        &[ROUTE],
        Aggregation::distribution(&[100.0, 1000.0]),
    )])
    .expect("register");
    for value in [50, 500, 5000, 70] {
        stats::record_with_tags(&[BYTES.m(value)], &[(&ROUTE, "/a")]);
    }

    let agent = agent().await;
    let exporter = exporter(&config_for(&agent, "wire-test"));
    exporter.export_stats(&stats::snapshot());
    exporter.flush(deadline()).await.expect("flush");
    let metrics = agent.wait_for_metrics(1, WAIT).await.expect("metric");
    let metric = &metrics.iter().find(|m| m.name() == "ocagent_wire/bytes").expect("our view").metric;
    let series = &metric.timeseries[0];
    assert_eq!(series.label_values[0].value, "/a");
    let Some(point::Value::DistributionValue(distribution)) = &series.points[0].value else {
        panic!("distribution")
    };
    assert_eq!(distribution.count, 4);
    assert_eq!(distribution.sum, 5620.0);
    assert_eq!(distribution.buckets.iter().map(|b| b.count).collect::<Vec<_>>(), [2, 1, 1]);
    exporter.shutdown(deadline()).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_stream_opens_with_the_node_and_resource() {
    let agent = agent().await;
    let exporter = exporter(&config_for(&agent, "node-test"));
    // Each flush ends the stream it waits for, so three rounds use three trace streams and three metrics
    // streams.
    let report: StatsReport = Arc::from(Vec::new());
    for round in 0..3 {
        exporter.export_spans(&batch(&format!("round{round}"), 5));
        exporter.export_stats(&report);
        exporter.flush(deadline()).await.expect("flush");
    }
    agent.wait_for_spans(15, WAIT).await.expect("spans");
    agent.wait_for_library_configs(1, WAIT).await.expect("the Config stream's first message");
    let trace_streams = used_streams(&agent, StreamKind::TraceExport);
    let metric_streams = used_streams(&agent, StreamKind::MetricsExport);
    assert!(trace_streams.len() >= 3, "{trace_streams:?}");
    assert!(metric_streams.len() >= 3, "{metric_streams:?}");
    let config_streams = used_streams(&agent, StreamKind::TraceConfig);
    assert!(!config_streams.is_empty(), "the Config stream opens at start");

    let host = hostname();
    for stream in trace_streams.iter().chain(&metric_streams).chain(&config_streams) {
        let node = stream.first_node.node().unwrap_or_else(|| panic!("stream without a Node: {stream:?}"));
        assert_eq!(first_service(stream).as_deref(), Some("node-test"));
        let identifier = node.identifier.as_ref().expect("identifier");
        assert_eq!(identifier.pid, std::process::id());
        assert_eq!(identifier.host_name, host);
        assert!(identifier.start_timestamp.is_some());
        let library = node.library_info.as_ref().expect("library info");
        assert_eq!(library.exporter_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(node.attributes.get("language").map(String::as_str), Some("rust"));
    }
    // Spans inherit the resource of their stream's first message.
    for span in agent.spans() {
        let resource = span.resource.as_ref().expect("resource");
        assert!(!resource.r#type.is_empty(), "{resource:?}");
    }
    exporter.shutdown(deadline()).await.expect("shutdown");
}

/// What `gethostname` says, read here without the exporter's code.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_gzip_apply_to_every_stream() {
    let agent = agent().await;
    let config = config_for(&agent, "headers-test")
        .with_enable_compression(true)
        .with_header("Authorization", "Bearer s3cret")
        .with_header("x-tenant", "edge");
    let exporter = exporter(&config);
    assert!(!format!("{exporter:?}").contains("s3cret"), "Debug never shows header values");

    exporter.export_spans(&batch("gzip", 50));
    exporter.export_stats(&Arc::from(Vec::new()));
    exporter.flush(deadline()).await.expect("flush");
    agent.wait_for_spans(50, WAIT).await.expect("spans, decompressed");
    // The Config stream opens on its own schedule; wait for its first message.
    agent.wait_for_library_configs(1, WAIT).await.expect("the Config stream's first message");

    for kind in StreamKind::ALL {
        let streams = used_streams(&agent, kind);
        assert!(!streams.is_empty(), "no {kind} stream");
        for stream in streams {
            assert_eq!(stream.header("authorization"), Some("Bearer s3cret"), "{kind}");
            assert_eq!(stream.header("x-tenant"), Some("edge"), "{kind}");
            assert_eq!(stream.compression.as_deref(), Some("gzip"), "{kind}");
        }
    }
    exporter.shutdown(deadline()).await.expect("shutdown");
}
