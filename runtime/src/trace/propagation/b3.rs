//! B3 (<https://github.com/openzipkin/b3-propagation>): the multi-header form (`X-B3-TraceId`,
//! `X-B3-SpanId`, `X-B3-ParentSpanId`, `X-B3-Sampled`, `X-B3-Flags`) and the single `b3` header
//! (`{trace}-{span}[-{sampling}[-{parent}]]`).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{FormattedIds, remove_all, set_formatted, single_value};
use crate::trace::{SpanContext, SpanId, TraceId, TraceState};

pub(super) static TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
static SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
static PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
static SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
static FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
pub(super) static SINGLE: HeaderName = HeaderName::from_static("b3");

pub(super) fn extract_multi(headers: &HeaderMap) -> Option<SpanContext> {
    let trace_id = parse_trace_id(single_value(headers, &TRACE_ID)?)?;
    let span_id = SpanId::from_hex(single_value(headers, &SPAN_ID)?)?;
    // The parent id is not needed (the span id is our parent), but a present, malformed one means the
    // sender is broken and the rest cannot be trusted either.
    if headers.contains_key(&PARENT_SPAN_ID) {
        SpanId::from_hex(single_value(headers, &PARENT_SPAN_ID)?)?;
    }
    // As opencensus-go: only `1` and `true` mean sampled; debug (`X-B3-Flags: 1`) implies it.
    let sampled = matches!(single_value(headers, &SAMPLED), Some("1" | "true"))
        || single_value(headers, &FLAGS) == Some("1");
    Some(SpanContext { trace_id, span_id, sampled, tracestate: TraceState::EMPTY })
}

pub(super) fn extract_single(headers: &HeaderMap) -> Option<SpanContext> {
    parse_single(single_value(headers, &SINGLE)?)
}

/// `{trace}-{span}`, optionally `-{1|0|d}`, optionally `-{parent}`. A bare sampling state (`b3: 0`)
/// carries no ids, so it is no parent.
pub(super) fn parse_single(value: &str) -> Option<SpanContext> {
    let mut fields = value.split('-');
    let trace_id = parse_trace_id(fields.next()?)?;
    let span_id = SpanId::from_hex(fields.next()?)?;
    let sampled = match fields.next() {
        None => false,
        Some("1" | "d") => true,
        Some("0") => false,
        Some(_) => return None,
    };
    if let Some(parent) = fields.next() {
        SpanId::from_hex(parent)?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(SpanContext { trace_id, span_id, sampled, tracestate: TraceState::EMPTY })
}

/// 32 hex digits, or 16 for a 64-bit id, which is right-aligned into 128 bits (zeros first).
pub(super) fn parse_trace_id(hex: &str) -> Option<TraceId> {
    match hex.len() {
        32 => TraceId::from_hex(hex),
        16 => {
            let low = SpanId::from_hex(hex)?;
            let mut bytes = [0; 16];
            bytes[8..].copy_from_slice(&low.0);
            Some(TraceId(bytes))
        }
        _ => None,
    }
}

pub(super) fn inject_multi(ids: &FormattedIds, context: &SpanContext, headers: &mut HeaderMap) {
    set_formatted(headers, &TRACE_ID, ids.trace_id());
    set_formatted(headers, &SPAN_ID, ids.span_id());
    let sampled = HeaderValue::from_static(if context.sampled { "1" } else { "0" });
    headers.insert(SAMPLED.clone(), sampled);
    // Whatever these said (say, forwarded from the incoming request) described another span.
    remove_all(headers, &[&PARENT_SPAN_ID, &FLAGS]);
}

pub(super) fn inject_single(ids: &FormattedIds, context: &SpanContext, headers: &mut HeaderMap) {
    // `{trace:32}-{span:16}-{sampled}`: the first two as `traceparent` has them.
    let mut value = [b'-'; 32 + 1 + 16 + 1 + 1];
    value[..49].copy_from_slice(ids.trace_and_span_ids());
    value[50] = if context.sampled { b'1' } else { b'0' };
    set_formatted(headers, &SINGLE, &value);
}
