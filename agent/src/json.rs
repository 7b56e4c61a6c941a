//! JSON views of received records, one object per span or metric (the binary's `--json-out` writes
//! them one per line).
//!
//! Ids are lower-case hex, times are integer nanoseconds since the Unix epoch (`*_unix_nano`),
//! enums are their proto names; absent optional fields are `null`. The shape is ours, chosen for
//! `jq` and test scripts; it is not the proto3 JSON mapping.

use oclayer_proto::agent::common::v1::Node;
use oclayer_proto::agent::common::v1::library_info::Language;
use oclayer_proto::metrics::v1::distribution_value::bucket_options;
use oclayer_proto::metrics::v1::metric_descriptor::Type as MetricType;
use oclayer_proto::metrics::v1::{DistributionValue, point};
use oclayer_proto::prost_types::Timestamp;
use oclayer_proto::resource::v1::Resource;
use oclayer_proto::trace::v1::span::link::Type as LinkType;
use oclayer_proto::trace::v1::span::time_event::message_event::Type as MessageType;
use oclayer_proto::trace::v1::span::{Attributes, SpanKind, Tracestate, time_event};
use oclayer_proto::trace::v1::{AttributeValue, attribute_value};
use serde_json::{Map, Value, json};

use crate::record::{ReceivedMetric, ReceivedSpan, StreamId, hex};
use crate::render::{code_name, unix_nanos};

fn time(ts: Option<&Timestamp>) -> Value {
    // Nanoseconds since 1970 fit an i64 until 2262; later (or absurd) values are kept as text.
    ts.map_or(Value::Null, |ts| {
        let nanos = unix_nanos(ts);
        i64::try_from(nanos).map_or_else(|_| Value::String(nanos.to_string()), Value::from)
    })
}

fn attribute(value: &AttributeValue) -> Value {
    match &value.value {
        Some(attribute_value::Value::StringValue(s)) => Value::String(s.value.clone()),
        Some(attribute_value::Value::IntValue(i)) => Value::from(*i),
        Some(attribute_value::Value::BoolValue(b)) => Value::Bool(*b),
        // NaN and infinities have no JSON number; serde_json turns them into null.
        Some(attribute_value::Value::DoubleValue(d)) => Value::from(*d),
        None => Value::Null,
    }
}

fn attributes(attributes: Option<&Attributes>) -> Value {
    let map: Map<String, Value> = attributes
        .map(|a| a.attribute_map.iter().map(|(k, v)| (k.clone(), attribute(v))).collect())
        .unwrap_or_default();
    Value::Object(map)
}

fn tracestate(state: Option<&Tracestate>) -> Value {
    state.map_or(Value::Null, |s| {
        Value::Array(s.entries.iter().map(|e| json!({ "key": e.key, "value": e.value })).collect())
    })
}

/// A node as JSON, `null` when absent.
pub fn node(node: Option<&Node>) -> Value {
    let Some(node) = node else { return Value::Null };
    json!({
        "host_name": node.identifier.as_ref().map(|i| i.host_name.clone()),
        "pid": node.identifier.as_ref().map(|i| i.pid),
        "start_time_unix_nano": time(node.identifier.as_ref().and_then(|i| i.start_timestamp.as_ref())),
        "language": node.library_info.as_ref().map(|l| {
            Language::try_from(l.language).map_or_else(|_| l.language.to_string(), |x| x.as_str_name().to_owned())
        }),
        "exporter_version": node.library_info.as_ref().map(|l| l.exporter_version.clone()),
        "core_library_version": node.library_info.as_ref().map(|l| l.core_library_version.clone()),
        "service_name": node.service_info.as_ref().map(|s| s.name.clone()),
        "attributes": node.attributes,
    })
}

/// A resource as JSON, `null` when absent.
pub fn resource(resource: Option<&Resource>) -> Value {
    resource.map_or(Value::Null, |r| json!({ "type": r.r#type, "labels": r.labels }))
}

fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(&E) -> &'static str) -> Value {
    // A number the proto does not define (a newer sender) is kept as the number.
    Value::String(E::try_from(value).map_or_else(|_| value.to_string(), |e| name(&e).to_owned()))
}

fn stream_fields(kind: &str, stream: StreamId, n: Option<&Node>, r: Option<&Resource>) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("record".to_owned(), Value::from(kind));
    map.insert("stream".to_owned(), Value::from(stream));
    map.insert("node".to_owned(), node(n));
    map.insert("resource".to_owned(), resource(r));
    map
}

/// A received span as one JSON object (`"record": "span"`).
pub fn span(received: &ReceivedSpan) -> Value {
    let s = &received.span;
    let mut map = stream_fields("span", received.stream, received.node.as_ref(), received.resource.as_ref());
    let events: Vec<Value> = s
        .time_events
        .iter()
        .flat_map(|e| &e.time_event)
        .map(|event| match &event.value {
            Some(time_event::Value::Annotation(a)) => json!({
                "time_unix_nano": time(event.time.as_ref()),
                "annotation": a.description.as_ref().map(|d| d.value.clone()),
                "attributes": attributes(a.attributes.as_ref()),
            }),
            Some(time_event::Value::MessageEvent(m)) => json!({
                "time_unix_nano": time(event.time.as_ref()),
                "message_event": enum_name(m.r#type, MessageType::as_str_name),
                "id": m.id,
                "uncompressed_size": m.uncompressed_size,
                "compressed_size": m.compressed_size,
            }),
            None => json!({ "time_unix_nano": time(event.time.as_ref()) }),
        })
        .collect();
    let links: Vec<Value> = s
        .links
        .iter()
        .flat_map(|l| &l.link)
        .map(|link| {
            json!({
                "trace_id": hex(&link.trace_id),
                "span_id": hex(&link.span_id),
                "type": enum_name(link.r#type, LinkType::as_str_name),
                "attributes": attributes(link.attributes.as_ref()),
                "tracestate": tracestate(link.tracestate.as_ref()),
            })
        })
        .collect();
    let fields = json!({
        "trace_id": hex(&s.trace_id),
        "span_id": hex(&s.span_id),
        "parent_span_id": received.parent_span_id_hex(),
        "name": received.name(),
        "kind": enum_name(s.kind, SpanKind::as_str_name),
        "start_time_unix_nano": time(s.start_time.as_ref()),
        "end_time_unix_nano": time(s.end_time.as_ref()),
        "attributes": attributes(s.attributes.as_ref()),
        "dropped_attributes_count": s.attributes.as_ref().map_or(0, |a| a.dropped_attributes_count),
        "status": s.status.as_ref().map(|st| json!({ "code": st.code, "name": code_name(st.code), "message": st.message })),
        "time_events": events,
        "dropped_annotations_count": s.time_events.as_ref().map_or(0, |e| e.dropped_annotations_count),
        "dropped_message_events_count": s.time_events.as_ref().map_or(0, |e| e.dropped_message_events_count),
        "links": links,
        "dropped_links_count": s.links.as_ref().map_or(0, |l| l.dropped_links_count),
        "tracestate": tracestate(s.tracestate.as_ref()),
        "same_process_as_parent_span": s.same_process_as_parent_span,
        "child_span_count": s.child_span_count,
        "has_stack_trace": s.stack_trace.is_some(),
    });
    if let Value::Object(fields) = fields {
        map.extend(fields);
    }
    Value::Object(map)
}

fn distribution(d: &DistributionValue) -> Value {
    let bounds: Vec<f64> = match d.bucket_options.as_ref().and_then(|o| o.r#type.as_ref()) {
        Some(bucket_options::Type::Explicit(e)) => e.bounds.clone(),
        None => Vec::new(),
    };
    json!({
        "count": d.count,
        "sum": d.sum,
        "sum_of_squared_deviation": d.sum_of_squared_deviation,
        "bounds": bounds,
        "bucket_counts": d.buckets.iter().map(|b| b.count).collect::<Vec<_>>(),
        "exemplars": d.buckets.iter().map(|b| b.exemplar.as_ref().map(|e| json!({
            "value": e.value,
            "time_unix_nano": time(e.timestamp.as_ref()),
            "attachments": e.attachments,
        }))).collect::<Vec<_>>(),
    })
}

fn point_value(value: Option<&point::Value>) -> Value {
    match value {
        Some(point::Value::Int64Value(v)) => json!({ "int64": v }),
        Some(point::Value::DoubleValue(v)) => json!({ "double": v }),
        Some(point::Value::DistributionValue(d)) => json!({ "distribution": distribution(d) }),
        Some(point::Value::SummaryValue(s)) => json!({ "summary": {
            "count": s.count,
            "sum": s.sum,
            "percentiles": s.snapshot.iter().flat_map(|snap| &snap.percentile_values)
                .map(|p| json!({ "percentile": p.percentile, "value": p.value })).collect::<Vec<_>>(),
        }}),
        None => Value::Null,
    }
}

/// A received metric as one JSON object (`"record": "metric"`).
pub fn metric(received: &ReceivedMetric) -> Value {
    let m = &received.metric;
    let mut map =
        stream_fields("metric", received.stream, received.node.as_ref(), received.resource.as_ref());
    let descriptor = m.metric_descriptor.clone().unwrap_or_default();
    let series: Vec<Value> = m
        .timeseries
        .iter()
        .map(|ts| {
            json!({
                "start_time_unix_nano": time(ts.start_timestamp.as_ref()),
                "label_values": ts.label_values.iter()
                    .map(|v| if v.has_value { Value::String(v.value.clone()) } else { Value::Null })
                    .collect::<Vec<_>>(),
                "points": ts.points.iter().map(|p| json!({
                    "time_unix_nano": time(p.timestamp.as_ref()),
                    "value": point_value(p.value.as_ref()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let fields = json!({
        "name": descriptor.name,
        "description": descriptor.description,
        "unit": descriptor.unit,
        "type": enum_name(descriptor.r#type, MetricType::as_str_name),
        "label_keys": descriptor.label_keys.iter().map(|k| k.key.clone()).collect::<Vec<_>>(),
        "timeseries": series,
    });
    if let Value::Object(fields) = fields {
        map.extend(fields);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use oclayer_proto::metrics::v1::{LabelKey, LabelValue, Metric, MetricDescriptor, Point, TimeSeries};
    use oclayer_proto::trace::v1::{Span, Status, TruncatableString};

    use super::*;

    #[test]
    fn span_fields_use_hex_ids_unix_nanos_and_proto_enum_names() {
        let received = ReceivedSpan {
            span: Span {
                trace_id: vec![0xab; 16],
                span_id: vec![0x01; 8],
                name: Some(TruncatableString { value: "root".into(), truncated_byte_count: 0 }),
                kind: SpanKind::Client as i32,
                start_time: Some(Timestamp { seconds: 2, nanos: 5 }),
                attributes: Some(Attributes {
                    attribute_map: [(
                        "ratio".to_owned(),
                        AttributeValue { value: Some(attribute_value::Value::DoubleValue(0.5)) },
                    )]
                    .into_iter()
                    .collect(),
                    dropped_attributes_count: 1,
                }),
                status: Some(Status { code: 14, message: "down".into() }),
                child_span_count: Some(3),
                ..Span::default()
            },
            node: None,
            resource: None,
            stream: 7,
        };
        let value = span(&received);
        assert_eq!(value["record"], "span");
        assert_eq!(value["stream"], 7);
        assert_eq!(value["trace_id"], "abababababababababababababababab");
        assert_eq!(value["parent_span_id"], Value::Null);
        assert_eq!(value["kind"], "CLIENT");
        assert_eq!(value["start_time_unix_nano"], 2_000_000_005_i64);
        assert_eq!(value["end_time_unix_nano"], Value::Null);
        assert_eq!(value["attributes"]["ratio"], 0.5);
        assert_eq!(value["dropped_attributes_count"], 1);
        assert_eq!(value["status"], json!({ "code": 14, "name": "UNAVAILABLE", "message": "down" }));
        assert_eq!(value["child_span_count"], 3);
        assert_eq!(value["same_process_as_parent_span"], Value::Null);
    }

    #[test]
    fn unset_label_values_are_null() {
        let received = ReceivedMetric {
            metric: Metric {
                metric_descriptor: Some(MetricDescriptor {
                    name: "requests".into(),
                    r#type: MetricType::CumulativeInt64 as i32,
                    label_keys: vec![
                        LabelKey { key: "method".into(), description: String::new() },
                        LabelKey { key: "route".into(), description: String::new() },
                    ],
                    ..MetricDescriptor::default()
                }),
                timeseries: vec![TimeSeries {
                    start_timestamp: None,
                    label_values: vec![
                        LabelValue { value: "GET".into(), has_value: true },
                        LabelValue { value: String::new(), has_value: false },
                    ],
                    points: vec![Point { timestamp: None, value: Some(point::Value::Int64Value(4)) }],
                }],
                resource: None,
            },
            node: None,
            resource: None,
            stream: 1,
        };
        let value = metric(&received);
        assert_eq!(value["type"], "CUMULATIVE_INT64");
        assert_eq!(value["timeseries"][0]["label_values"], json!(["GET", null]));
        assert_eq!(value["timeseries"][0]["points"][0]["value"], json!({ "int64": 4 }));
    }
}
