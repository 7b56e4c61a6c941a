//! W3C trace context: `traceparent: {version}-{trace-id}-{parent-id}-{flags}` and
//! `tracestate: key=value,...` (<https://www.w3.org/TR/trace-context/>).

use std::fmt::Write as _;

use http::{HeaderMap, HeaderName};

use super::{FormattedIds, remove_all, set_formatted, set_header, single_value};
use crate::trace::{SpanContext, SpanId, TraceId, TraceState};

pub(super) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// Version 00 is exactly this long; later versions may append `-` and more fields.
const VERSION_00_LEN: usize = 55;
/// Longer than any version needs: a bigger value is refused rather than scanned.
const MAX_TRACEPARENT_LEN: usize = 512;
/// The spec's limit on list members.
const MAX_TRACESTATE_MEMBERS: usize = 32;
/// The sampled bit of the flags.
pub(super) const SAMPLED: u8 = 0x01;

pub(super) fn extract(headers: &HeaderMap) -> Option<SpanContext> {
    let (trace_id, span_id, flags) = parse_traceparent(single_value(headers, &TRACEPARENT)?)?;
    Some(SpanContext {
        trace_id,
        span_id,
        sampled: flags & SAMPLED != 0,
        tracestate: parse_tracestate(headers),
    })
}

pub(super) fn inject(ids: &FormattedIds, context: &SpanContext, headers: &mut HeaderMap) {
    set_formatted(headers, &TRACEPARENT, ids.traceparent());
    let entries = context.tracestate.entries();
    if entries.is_empty() {
        // Do not leave a stale tracestate (say, forwarded from the incoming request) next to our parent.
        remove_all(headers, &[&TRACESTATE]);
        return;
    }
    let mut tracestate = String::new();
    for (i, (key, value)) in entries.iter().enumerate() {
        let separator = if i == 0 { "" } else { "," };
        let _ = write!(tracestate, "{separator}{key}={value}");
    }
    set_header(headers, &TRACESTATE, tracestate.as_bytes());
}

/// `{version:2}-{trace-id:32}-{parent-id:16}-{flags:2}`, all lower-case hex.
pub(super) fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, u8)> {
    if value.len() < VERSION_00_LEN || value.len() > MAX_TRACEPARENT_LEN {
        return None;
    }
    let bytes = value.as_bytes();
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let version = lower_hex_byte(value.get(0..2)?)?;
    // ff is forbidden; 00 has exactly four fields; a later version may add fields after a dash.
    if version == 0xff
        || (version == 0 && value.len() != VERSION_00_LEN)
        || (value.len() > VERSION_00_LEN && bytes[VERSION_00_LEN] != b'-')
    {
        return None;
    }
    let trace_id = TraceId::from_hex(value.get(3..35)?)?;
    let span_id = SpanId::from_hex(value.get(36..52)?)?;
    let flags = lower_hex_byte(value.get(53..55)?)?;
    Some((trace_id, span_id, flags))
}

fn lower_hex_byte(hex: &str) -> Option<u8> {
    let digits = hex.as_bytes();
    if digits.len() != 2 || !digits.iter().all(|d| matches!(d, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Every `tracestate` header, joined as one list. Any invalid member (or too many, or a repeated key)
/// drops the whole list, as the spec asks; the `traceparent` stands regardless.
pub(super) fn parse_tracestate(headers: &HeaderMap) -> TraceState {
    let mut entries: Vec<(String, String)> = Vec::new();
    for value in headers.get_all(&TRACESTATE) {
        let Ok(text) = value.to_str() else { return TraceState::EMPTY };
        for member in text.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let Some((key, value)) = member.split_once('=') else { return TraceState::EMPTY };
            if !valid_key(key)
                || !valid_value(value)
                || entries.len() == MAX_TRACESTATE_MEMBERS
                || entries.iter().any(|(seen, _)| seen == key)
            {
                return TraceState::EMPTY;
            }
            entries.push((key.to_owned(), value.to_owned()));
        }
    }
    TraceState::from_entries(entries)
}

/// `simple-key = lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")`, or
/// `tenant-id "@" system-id` with `tenant-id = (lcalpha / DIGIT) 0*240(...)` and
/// `system-id = lcalpha 0*13(...)`.
pub(super) fn valid_key(key: &str) -> bool {
    fn rest_ok(rest: &[u8]) -> bool {
        rest.iter().all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/'))
    }
    match key.split_once('@') {
        None => {
            let bytes = key.as_bytes();
            (1..=256).contains(&bytes.len()) && bytes[0].is_ascii_lowercase() && rest_ok(&bytes[1..])
        }
        Some((tenant, system)) => {
            let (tenant, system) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&tenant.len())
                && matches!(tenant[0], b'a'..=b'z' | b'0'..=b'9')
                && rest_ok(&tenant[1..])
                && (1..=14).contains(&system.len())
                && system[0].is_ascii_lowercase()
                && rest_ok(&system[1..])
        }
    }
}

/// `value = 0*255(chr) nblk-chr`: printable ASCII without `,` and `=`, 1 to 256 of them, not ending in a
/// space.
pub(super) fn valid_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    (1..=256).contains(&bytes.len())
        && bytes.iter().all(|c| matches!(c, 0x20..=0x7e) && *c != b',' && *c != b'=')
        && bytes[bytes.len() - 1] != b' '
}
