//! A finished span into `opencensus.proto.trace.v1.Span`, field by field.
//!
//! Where opencensus-go's exporter is lossy this one is not (DESIGN.md): float attributes go out as
//! `double_value`, a root span has no `parent_span_id` at all (not eight zero bytes),
//! `same_process_as_parent_span` and `child_span_count` are set. The resource is left to the stream's first
//! message, which every span of the stream inherits.

use std::collections::BTreeMap;

use oclayer_proto::prost_types::Timestamp;
use oclayer_proto::trace::v1 as wire;
use oclayer_proto::trace::v1::span::{self, time_event};

use crate::trace::{
    AttributeValue, Attributes, Link, LinkKind, MessageEventKind, SpanData, SpanKind, TimeEvent,
    TimeEventKind, TraceState,
};

/// The wire form of `data`.
pub(super) fn span(data: &SpanData) -> wire::Span {
    wire::Span {
        trace_id: data.context.trace_id.0.to_vec(),
        span_id: data.context.span_id.0.to_vec(),
        tracestate: tracestate(&data.context.tracestate),
        parent_span_id: data.parent_span_id.map(|id| id.0.to_vec()).unwrap_or_default(),
        name: Some(truncatable(&data.name)),
        kind: match data.kind {
            SpanKind::Unspecified => span::SpanKind::Unspecified,
            SpanKind::Server => span::SpanKind::Server,
            SpanKind::Client => span::SpanKind::Client,
        } as i32,
        start_time: Some(Timestamp::from(data.start_time)),
        end_time: Some(Timestamp::from(data.end_time)),
        attributes: attributes(&data.attributes),
        stack_trace: None,
        time_events: time_events(data),
        links: links(&data.links, data.dropped_links),
        status: Some(wire::Status {
            code: data.status.code as i32,
            message: data.status.message.to_string(),
        }),
        resource: None,
        same_process_as_parent_span: data.same_process_as_parent_span,
        // Always known exactly, so always sent: a viewer can then tell when children went missing.
        child_span_count: Some(data.child_span_count),
    }
}

/// Our strings were already cut to their limits when recorded; how many bytes that cut is not kept, so
/// the count says 0, as opencensus-go's exporter does.
fn truncatable(value: &str) -> wire::TruncatableString {
    wire::TruncatableString { value: value.to_owned(), truncated_byte_count: 0 }
}

/// Counts are `u32` in the model and `int32` on the wire.
fn count(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn tracestate(state: &TraceState) -> Option<span::Tracestate> {
    if state.is_empty() {
        return None;
    }
    let entries = state
        .entries()
        .iter()
        .map(|(key, value)| span::tracestate::Entry { key: key.clone(), value: value.clone() })
        .collect();
    Some(span::Tracestate { entries })
}

fn attribute_value(value: &AttributeValue) -> wire::AttributeValue {
    use oclayer_proto::trace::v1::attribute_value::Value;
    let value = match value {
        AttributeValue::String(text) => Value::StringValue(truncatable(text)),
        AttributeValue::Int(int) => Value::IntValue(*int),
        AttributeValue::Bool(flag) => Value::BoolValue(*flag),
        AttributeValue::Double(double) => Value::DoubleValue(*double),
    };
    wire::AttributeValue { value: Some(value) }
}

/// `None` when there is nothing to say: absent and empty read the same to an agent, and absent is free.
fn attributes(attributes: &Attributes) -> Option<span::Attributes> {
    if attributes.entries.is_empty() && attributes.dropped == 0 {
        return None;
    }
    // A repeated key keeps its last value, as the model promises.
    let attribute_map: BTreeMap<String, wire::AttributeValue> =
        attributes.entries.iter().map(|(key, value)| (key.to_string(), attribute_value(value))).collect();
    Some(span::Attributes { attribute_map, dropped_attributes_count: count(attributes.dropped) })
}

fn time_event(event: &TimeEvent) -> span::TimeEvent {
    let value = match &event.kind {
        TimeEventKind::Annotation { description, attributes: details } => {
            time_event::Value::Annotation(time_event::Annotation {
                description: Some(truncatable(description)),
                attributes: attributes(details),
            })
        }
        TimeEventKind::MessageEvent { kind, id, uncompressed_size, compressed_size } => {
            time_event::Value::MessageEvent(time_event::MessageEvent {
                r#type: match kind {
                    MessageEventKind::Unspecified => time_event::message_event::Type::Unspecified,
                    MessageEventKind::Sent => time_event::message_event::Type::Sent,
                    MessageEventKind::Received => time_event::message_event::Type::Received,
                } as i32,
                id: *id,
                uncompressed_size: *uncompressed_size,
                compressed_size: *compressed_size,
            })
        }
    };
    span::TimeEvent { time: Some(Timestamp::from(event.time)), value: Some(value) }
}

fn time_events(data: &SpanData) -> Option<span::TimeEvents> {
    if data.time_events.is_empty() && data.dropped_annotations == 0 && data.dropped_message_events == 0 {
        return None;
    }
    Some(span::TimeEvents {
        time_event: data.time_events.iter().map(time_event).collect(),
        dropped_annotations_count: count(data.dropped_annotations),
        dropped_message_events_count: count(data.dropped_message_events),
    })
}

fn link(link: &Link) -> span::Link {
    span::Link {
        trace_id: link.trace_id.0.to_vec(),
        span_id: link.span_id.0.to_vec(),
        r#type: match link.kind {
            LinkKind::Unspecified => span::link::Type::Unspecified,
            LinkKind::ChildLinkedSpan => span::link::Type::ChildLinkedSpan,
            LinkKind::ParentLinkedSpan => span::link::Type::ParentLinkedSpan,
        } as i32,
        attributes: attributes(&link.attributes),
        tracestate: None,
    }
}

fn links(links: &[Link], dropped: u32) -> Option<span::Links> {
    if links.is_empty() && dropped == 0 {
        return None;
    }
    Some(span::Links { link: links.iter().map(link).collect(), dropped_links_count: count(dropped) })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use oclayer_proto::prost::Message as _;
    use oclayer_proto::trace::v1::attribute_value::Value;

    use super::*;
    use crate::trace::{SpanContext, SpanId, Status, StatusCode, TraceId};

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn root() -> SpanData {
        let context = SpanContext {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            sampled: true,
            tracestate: TraceState::EMPTY,
        };
        SpanData::new(context, "/users/{id}", SpanKind::Server, at(1_700_000_000, 5), at(1_700_000_001, 7))
    }

    #[test]
    fn ids_names_kinds_and_times() {
        let wire = span(&root());
        assert_eq!(wire.trace_id, [1; 16]);
        assert_eq!(wire.span_id, [2; 8]);
        assert!(wire.parent_span_id.is_empty(), "a root has no parent bytes at all");
        assert_eq!(wire.name.as_ref().map(|n| n.value.as_str()), Some("/users/{id}"));
        assert_eq!(wire.kind, span::SpanKind::Server as i32);
        assert_eq!(wire.start_time, Some(Timestamp { seconds: 1_700_000_000, nanos: 5 }));
        assert_eq!(wire.end_time, Some(Timestamp { seconds: 1_700_000_001, nanos: 7 }));
        assert_eq!(wire.status, Some(wire::Status { code: 0, message: String::new() }));
        assert_eq!(wire.same_process_as_parent_span, None, "unset for a root");
        assert_eq!(wire.child_span_count, Some(0));
        assert!(wire.attributes.is_none() && wire.time_events.is_none() && wire.links.is_none());
        assert!(wire.tracestate.is_none() && wire.resource.is_none() && wire.stack_trace.is_none());

        let mut client = root();
        client.kind = SpanKind::Client;
        assert_eq!(span(&client).kind, span::SpanKind::Client as i32);
        client.kind = SpanKind::Unspecified;
        assert_eq!(span(&client).kind, span::SpanKind::Unspecified as i32);
    }

    #[test]
    fn a_child_carries_its_parent_and_where_it_was() {
        let mut child = root();
        child.parent_span_id = Some(SpanId([9; 8]));
        child.same_process_as_parent_span = Some(false);
        child.child_span_count = 3;
        let wire = span(&child);
        assert_eq!(wire.parent_span_id, [9; 8]);
        assert_eq!(wire.same_process_as_parent_span, Some(false));
        assert_eq!(wire.child_span_count, Some(3));

        // The wrappers go on the wire as BoolValue / UInt32Value messages, present even when false / 0.
        child.same_process_as_parent_span = Some(true);
        child.child_span_count = 0;
        let decoded = wire::Span::decode(span(&child).encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded.same_process_as_parent_span, Some(true));
        assert_eq!(decoded.child_span_count, Some(0));
    }

    #[test]
    fn attributes_keep_their_types() {
        let mut data = root();
        data.attributes = Attributes {
            entries: vec![
                (Cow::Borrowed("http.method"), AttributeValue::from("GET")),
                (Cow::Borrowed("http.status_code"), AttributeValue::Int(404)),
                (Cow::Borrowed("complete"), AttributeValue::Bool(true)),
                (Cow::Borrowed("ratio"), AttributeValue::Double(0.25)),
            ],
            dropped: 2,
        };
        let attributes = span(&data).attributes.expect("attributes");
        let value = |key: &str| attributes.attribute_map.get(key).and_then(|v| v.value.clone());
        assert_eq!(
            value("http.method"),
            Some(Value::StringValue(wire::TruncatableString {
                value: "GET".into(),
                truncated_byte_count: 0
            }))
        );
        assert_eq!(value("http.status_code"), Some(Value::IntValue(404)));
        assert_eq!(value("complete"), Some(Value::BoolValue(true)));
        assert_eq!(value("ratio"), Some(Value::DoubleValue(0.25)), "floats are sent, unlike opencensus-go");
        assert_eq!(attributes.dropped_attributes_count, 2);

        // Only drops: still said.
        data.attributes = Attributes { entries: Vec::new(), dropped: 1 };
        assert_eq!(span(&data).attributes.map(|a| a.dropped_attributes_count), Some(1));
    }

    #[test]
    fn status_and_tracestate() {
        let mut data = root();
        data.status = Status { code: StatusCode::NotFound, message: Cow::Borrowed("NOT_FOUND") };
        data.context.tracestate = TraceState::from_entries(vec![("rojo".into(), "00f067aa0ba902b7".into())]);
        let wire = span(&data);
        assert_eq!(wire.status, Some(wire::Status { code: 5, message: "NOT_FOUND".into() }));
        let entries = wire.tracestate.expect("tracestate").entries;
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].key.as_str(), entries[0].value.as_str()), ("rojo", "00f067aa0ba902b7"));
    }

    #[test]
    fn time_events_and_their_drop_counts() {
        let mut data = root();
        data.time_events = vec![
            TimeEvent {
                time: at(1_700_000_000, 100),
                kind: TimeEventKind::Annotation {
                    description: Cow::Borrowed("cache miss"),
                    attributes: Attributes {
                        entries: vec![(Cow::Borrowed("key"), AttributeValue::from("users:1"))],
                        dropped: 0,
                    },
                },
            },
            TimeEvent {
                time: at(1_700_000_000, 200),
                kind: TimeEventKind::MessageEvent {
                    kind: MessageEventKind::Received,
                    id: 7,
                    uncompressed_size: 1000,
                    compressed_size: 300,
                },
            },
        ];
        data.dropped_annotations = 4;
        data.dropped_message_events = 5;
        let events = span(&data).time_events.expect("time events");
        assert_eq!((events.dropped_annotations_count, events.dropped_message_events_count), (4, 5));
        assert_eq!(events.time_event.len(), 2);
        assert_eq!(events.time_event[0].time, Some(Timestamp { seconds: 1_700_000_000, nanos: 100 }));
        match &events.time_event[0].value {
            Some(time_event::Value::Annotation(annotation)) => {
                assert_eq!(annotation.description.as_ref().map(|d| d.value.as_str()), Some("cache miss"));
                let attributes = annotation.attributes.as_ref().expect("annotation attributes");
                assert!(attributes.attribute_map.contains_key("key"));
            }
            other => panic!("expected an annotation, got {other:?}"),
        }
        assert_eq!(
            events.time_event[1].value,
            Some(time_event::Value::MessageEvent(time_event::MessageEvent {
                r#type: time_event::message_event::Type::Received as i32,
                id: 7,
                uncompressed_size: 1000,
                compressed_size: 300,
            }))
        );
    }

    #[test]
    fn links_and_their_drop_count() {
        let mut data = root();
        data.links = vec![Link {
            trace_id: TraceId([3; 16]),
            span_id: SpanId([4; 8]),
            kind: LinkKind::ParentLinkedSpan,
            attributes: Attributes {
                entries: vec![(Cow::Borrowed("n"), AttributeValue::Int(1))],
                dropped: 0,
            },
        }];
        data.dropped_links = 6;
        let links = span(&data).links.expect("links");
        assert_eq!(links.dropped_links_count, 6);
        assert_eq!(links.link[0].trace_id, [3; 16]);
        assert_eq!(links.link[0].span_id, [4; 8]);
        assert_eq!(links.link[0].r#type, span::link::Type::ParentLinkedSpan as i32);
        assert!(links.link[0].attributes.is_some());
    }

    #[test]
    fn times_before_1970_do_not_break() {
        let mut data = root();
        data.start_time = UNIX_EPOCH - Duration::new(1, 500);
        let start = span(&data).start_time.expect("start");
        assert_eq!((start.seconds, start.nanos), (-2, 999_999_500));
    }

    #[test]
    fn huge_counts_saturate() {
        let mut data = root();
        data.dropped_links = u32::MAX;
        assert_eq!(span(&data).links.map(|l| l.dropped_links_count), Some(i32::MAX));
    }
}
