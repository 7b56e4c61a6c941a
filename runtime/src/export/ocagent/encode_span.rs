//! Spans straight into the protobuf bytes of an `ExportTraceServiceRequest`, without building the
//! generated message types first.
//!
//! This is the hot part of the exporter: building `opencensus.proto.trace.v1.Span` values would allocate a
//! string per name, key and value and a map node per attribute, and then walk them twice (size, then
//! bytes). Writing the wire format from [`SpanData`] directly allocates nothing per span once the message
//! buffer has grown. The mapping is the one `convert_span.rs` states with the generated types, and the
//! tests hold this encoder to it: for every shape of span, decoding these bytes gives exactly the message
//! `convert_span::span` builds.
//!
//! Nested messages are written with a one-byte length placeholder that is widened afterwards if the
//! content turned out longer than 127 bytes, so each byte is written once and most are never moved.

use std::time::SystemTime;

use oclayer_proto::prost_types::Timestamp;

use crate::trace::{
    AttributeValue, Attributes, Link, LinkKind, MessageEventKind, SpanData, SpanKind, TimeEvent,
    TimeEventKind, TraceState,
};

// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// `ExportTraceServiceRequest.spans`.
const REQUEST_SPANS: u32 = 2;

/// Appends `data` to `request` as one element of `ExportTraceServiceRequest.spans`.
pub(super) fn push_span(request: &mut Vec<u8>, data: &SpanData) {
    nested(request, REQUEST_SPANS, |out| span(out, data));
}

fn key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    varint(out, u64::from((field << 3) | wire_type));
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 takes one byte.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// A varint field, left out when 0 (proto3 default), as prost does.
fn uint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(out, field, VARINT);
        varint(out, value);
    }
}

/// An `int32`/`int64` field: negative values are sign-extended to ten bytes, as protobuf specifies.
fn int_field(out: &mut Vec<u8>, field: u32, value: i64) {
    uint_field(out, field, value as u64);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        key(out, field, LEN);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
}

/// A field holding a nested message written by `write`, present even when empty (a set wrapper or oneof
/// member must be).
fn nested(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    let at = out.len();
    out.push(0);
    write(out);
    let len = out.len() - at - 1;
    let width = varint_len(len as u64);
    if width > 1 {
        // Make room for the longer length: shift the content right by the extra bytes.
        let end = out.len();
        out.resize(end + width - 1, 0);
        out.copy_within(at + 1..end, at + width);
    }
    let mut value = len as u64;
    for slot in &mut out[at..at + width] {
        *slot = if value >= 0x80 { (value as u8) | 0x80 } else { value as u8 };
        value >>= 7;
    }
}

/// `TruncatableString { value }`; the truncated count is always 0 (see `convert_span.rs`).
fn truncatable(out: &mut Vec<u8>, field: u32, value: &str) {
    nested(out, field, |out| bytes_field(out, 1, value.as_bytes()));
}

fn timestamp(out: &mut Vec<u8>, field: u32, time: SystemTime) {
    let Timestamp { seconds, nanos } = Timestamp::from(time);
    nested(out, field, |out| {
        int_field(out, 1, seconds);
        int_field(out, 2, i64::from(nanos));
    });
}

fn count(value: u32) -> i64 {
    i64::from(i32::try_from(value).unwrap_or(i32::MAX))
}

fn span(out: &mut Vec<u8>, data: &SpanData) {
    bytes_field(out, 1, &data.context.trace_id.0);
    bytes_field(out, 2, &data.context.span_id.0);
    if let Some(parent) = data.parent_span_id {
        bytes_field(out, 3, &parent.0);
    }
    truncatable(out, 4, &data.name);
    timestamp(out, 5, data.start_time);
    timestamp(out, 6, data.end_time);
    attributes(out, 7, &data.attributes);
    time_events(out, data);
    links(out, &data.links, data.dropped_links);
    nested(out, 11, |out| {
        uint_field(out, 1, data.status.code as u64);
        bytes_field(out, 2, data.status.message.as_bytes());
    });
    if let Some(same_process) = data.same_process_as_parent_span {
        nested(out, 12, |out| uint_field(out, 1, u64::from(same_process)));
    }
    nested(out, 13, |out| uint_field(out, 1, u64::from(data.child_span_count)));
    let kind = match data.kind {
        SpanKind::Unspecified => 0,
        SpanKind::Server => 1,
        SpanKind::Client => 2,
    };
    uint_field(out, 14, kind);
    tracestate(out, 15, &data.context.tracestate);
}

fn tracestate(out: &mut Vec<u8>, field: u32, state: &TraceState) {
    if state.is_empty() {
        return;
    }
    nested(out, field, |out| {
        for (key, value) in state.entries() {
            nested(out, 1, |out| {
                bytes_field(out, 1, key.as_bytes());
                bytes_field(out, 2, value.as_bytes());
            });
        }
    });
}

/// `Attributes`, left out when there is nothing to say (as `convert_span.rs`). Map entries go in insertion
/// order; a repeated key's last value wins on decoding, as the model promises.
fn attributes(out: &mut Vec<u8>, field: u32, attributes: &Attributes) {
    if attributes.entries.is_empty() && attributes.dropped == 0 {
        return;
    }
    nested(out, field, |out| {
        for (name, value) in &attributes.entries {
            nested(out, 1, |out| {
                bytes_field(out, 1, name.as_bytes());
                nested(out, 2, |out| attribute_value(out, value));
            });
        }
        int_field(out, 2, count(attributes.dropped));
    });
}

/// The `AttributeValue` oneof: the member is written even when it holds the default (0, false, "").
fn attribute_value(out: &mut Vec<u8>, value: &AttributeValue) {
    match value {
        AttributeValue::String(text) => truncatable(out, 1, text),
        AttributeValue::Int(int) => {
            key(out, 2, VARINT);
            varint(out, *int as u64);
        }
        AttributeValue::Bool(flag) => {
            key(out, 3, VARINT);
            varint(out, u64::from(*flag));
        }
        AttributeValue::Double(double) => {
            key(out, 4, FIXED64);
            out.extend_from_slice(&double.to_le_bytes());
        }
    }
}

fn time_events(out: &mut Vec<u8>, data: &SpanData) {
    if data.time_events.is_empty() && data.dropped_annotations == 0 && data.dropped_message_events == 0 {
        return;
    }
    nested(out, 9, |out| {
        for event in &data.time_events {
            nested(out, 1, |out| time_event(out, event));
        }
        int_field(out, 2, count(data.dropped_annotations));
        int_field(out, 3, count(data.dropped_message_events));
    });
}

fn time_event(out: &mut Vec<u8>, event: &TimeEvent) {
    timestamp(out, 1, event.time);
    match &event.kind {
        TimeEventKind::Annotation { description, attributes: details } => nested(out, 2, |out| {
            truncatable(out, 1, description);
            attributes(out, 2, details);
        }),
        TimeEventKind::MessageEvent { kind, id, uncompressed_size, compressed_size } => {
            nested(out, 3, |out| {
                let kind = match kind {
                    MessageEventKind::Unspecified => 0,
                    MessageEventKind::Sent => 1,
                    MessageEventKind::Received => 2,
                };
                uint_field(out, 1, kind);
                uint_field(out, 2, *id);
                uint_field(out, 3, *uncompressed_size);
                uint_field(out, 4, *compressed_size);
            })
        }
    }
}

fn links(out: &mut Vec<u8>, links: &[Link], dropped: u32) {
    if links.is_empty() && dropped == 0 {
        return;
    }
    nested(out, 10, |out| {
        for link in links {
            nested(out, 1, |out| {
                bytes_field(out, 1, &link.trace_id.0);
                bytes_field(out, 2, &link.span_id.0);
                let kind = match link.kind {
                    LinkKind::Unspecified => 0,
                    LinkKind::ChildLinkedSpan => 1,
                    LinkKind::ParentLinkedSpan => 2,
                };
                uint_field(out, 3, kind);
                attributes(out, 4, &link.attributes);
            });
        }
        int_field(out, 2, count(dropped));
    });
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::{Duration, UNIX_EPOCH};

    use oclayer_proto::agent::trace::v1::ExportTraceServiceRequest;
    use oclayer_proto::prost::Message as _;
    use proptest::prelude::*;

    use super::*;
    use crate::export::ocagent::convert_span;
    use crate::trace::{SpanContext, SpanId, Status, StatusCode, TraceId};

    fn decoded(spans: &[SpanData]) -> ExportTraceServiceRequest {
        let mut request = Vec::new();
        for data in spans {
            push_span(&mut request, data);
        }
        ExportTraceServiceRequest::decode(request.as_slice()).expect("the bytes decode")
    }

    fn assert_same_as_conversion(data: &SpanData) {
        let request = decoded(std::slice::from_ref(data));
        assert_eq!(request.spans, vec![convert_span::span(data)], "{data:#?}");
    }

    fn plain() -> SpanData {
        let context =
            SpanContext { trace_id: TraceId([1; 16]), span_id: SpanId([2; 8]), ..SpanContext::default() };
        SpanData::new(
            context,
            "/users/{id}",
            SpanKind::Server,
            UNIX_EPOCH + Duration::new(1_700_000_000, 5),
            UNIX_EPOCH + Duration::new(1_700_000_001, 0),
        )
    }

    #[test]
    fn varints_and_their_lengths() {
        for value in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
            assert_eq!(oclayer_proto::prost::encoding::decode_varint(&mut out.as_slice()).ok(), Some(value));
        }
    }

    #[test]
    fn nested_lengths_widen_past_127_bytes() {
        for len in [0usize, 1, 127, 128, 200, 16_383, 16_384, 70_000] {
            let mut out = vec![0xaa];
            nested(&mut out, 1, |out| out.extend(std::iter::repeat_n(7u8, len)));
            let mut rest = &out[2..];
            let decoded_len = oclayer_proto::prost::encoding::decode_varint(&mut rest).expect("length");
            assert_eq!(decoded_len as usize, len);
            assert_eq!(rest.len(), len, "content follows the length, intact");
            assert!(rest.iter().all(|b| *b == 7));
        }
    }

    #[test]
    fn a_plain_root_matches_the_conversion() {
        assert_same_as_conversion(&plain());
    }

    #[test]
    fn every_field_matches_the_conversion() {
        let mut data = plain();
        data.parent_span_id = Some(SpanId([9; 8]));
        data.kind = SpanKind::Client;
        data.context.tracestate = TraceState::from_entries(vec![
            ("rojo".into(), "00f067aa".into()),
            ("congo".into(), "t61".into()),
        ]);
        data.attributes = Attributes {
            entries: vec![
                (Cow::Borrowed("s"), AttributeValue::from("GET")),
                (Cow::Borrowed("empty"), AttributeValue::from("")),
                (Cow::Borrowed("i"), AttributeValue::Int(-5)),
                (Cow::Borrowed("zero"), AttributeValue::Int(0)),
                (Cow::Borrowed("b"), AttributeValue::Bool(false)),
                (Cow::Borrowed("d"), AttributeValue::Double(-0.0)),
                (Cow::Borrowed("s"), AttributeValue::from("replaced")),
            ],
            dropped: 2,
        };
        data.time_events = vec![
            TimeEvent {
                time: UNIX_EPOCH + Duration::new(1_700_000_000, 10),
                kind: TimeEventKind::Annotation {
                    description: Cow::Borrowed("note"),
                    attributes: Attributes {
                        entries: vec![(Cow::Borrowed("k"), AttributeValue::Int(1))],
                        dropped: 1,
                    },
                },
            },
            TimeEvent {
                time: UNIX_EPOCH,
                kind: TimeEventKind::MessageEvent {
                    kind: MessageEventKind::Received,
                    id: u64::MAX,
                    uncompressed_size: 0,
                    compressed_size: 9,
                },
            },
        ];
        data.dropped_annotations = 3;
        data.dropped_message_events = u32::MAX;
        data.links = vec![Link {
            trace_id: TraceId([3; 16]),
            span_id: SpanId([4; 8]),
            kind: LinkKind::ChildLinkedSpan,
            attributes: Attributes::default(),
        }];
        data.dropped_links = 1;
        data.status = Status { code: StatusCode::Unauthenticated, message: Cow::Borrowed("UNAUTHENTICATED") };
        data.same_process_as_parent_span = Some(false);
        data.child_span_count = 300;
        assert_same_as_conversion(&data);

        data.same_process_as_parent_span = Some(true);
        data.start_time = UNIX_EPOCH - Duration::new(3, 1);
        data.name = Cow::Owned("n".repeat(300));
        assert_same_as_conversion(&data);
    }

    #[test]
    fn several_spans_make_one_request() {
        let mut second = plain();
        second.context.span_id = SpanId([7; 8]);
        let request = decoded(&[plain(), second.clone()]);
        assert_eq!(request.spans, vec![convert_span::span(&plain()), convert_span::span(&second)]);
        assert!(request.node.is_none() && request.resource.is_none());
    }

    fn attribute_value_strategy() -> impl Strategy<Value = AttributeValue> {
        prop_oneof![
            ".{0,300}".prop_map(AttributeValue::from),
            any::<i64>().prop_map(AttributeValue::Int),
            any::<bool>().prop_map(AttributeValue::Bool),
            any::<f64>()
                .prop_filter("NaN never equals itself", |d| !d.is_nan())
                .prop_map(AttributeValue::Double),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_spans_match_the_conversion(
            name in ".{0,200}",
            attributes in proptest::collection::vec(("[a-z.]{0,20}", attribute_value_strategy()), 0..12),
            dropped in any::<u32>(),
            parent in proptest::option::of(any::<[u8; 8]>()),
            start in any::<u64>(),
            length in 0u64..1_000_000_000_000,
            status in 0i32..17,
            children in any::<u32>(),
            same_process in proptest::option::of(any::<bool>()),
        ) {
            let mut data = plain();
            data.name = Cow::Owned(name);
            data.attributes = Attributes {
                entries: attributes.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect(),
                dropped,
            };
            data.parent_span_id = parent.map(SpanId);
            data.start_time = UNIX_EPOCH + Duration::from_nanos(start);
            data.end_time = data.start_time + Duration::from_nanos(length);
            data.status.code = [StatusCode::Ok, StatusCode::Cancelled, StatusCode::Unknown, StatusCode::NotFound]
                [status as usize % 4];
            data.child_span_count = children;
            data.same_process_as_parent_span = same_process;
            let request = decoded(std::slice::from_ref(&data));
            prop_assert_eq!(request.spans, vec![convert_span::span(&data)]);
        }
    }
}
