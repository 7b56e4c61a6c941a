//! Propagation: the trace context in HTTP headers, read from incoming requests and written to outgoing
//! ones.
//!
//! Three formats are understood: W3C trace context (`traceparent` + `tracestate`), B3 multi-header
//! (`X-B3-TraceId`, `X-B3-SpanId`, `X-B3-ParentSpanId`, `X-B3-Sampled`, `X-B3-Flags`) and B3 single-header
//! (`b3`). [`extract`] tries them in that order and takes the first valid one. [`inject`] writes the formats
//! of the process-wide [`Propagation`] set, W3C and B3 multi by default.
//!
//! Headers come from strangers, so reading never fails and never panics: a malformed, oversized,
//! upper-case or all-zero value is ignored, and the request starts a new trace. The rules are
//! opencensus-go's: `traceparent` version `ff` is invalid, B3's sampled flag is true only for `1` or
//! `true` (or debug), and an invalid `tracestate` is dropped while the `traceparent` is kept.

mod b3;
mod w3c;

use std::ops::BitOr;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::SpanContext;

/// A set of header formats to write.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Propagation(u8);

impl Propagation {
    /// No format: nothing is written.
    pub const NONE: Propagation = Propagation(0);
    /// W3C trace context: `traceparent`, and `tracestate` when there are entries.
    pub const W3C: Propagation = Propagation(1);
    /// B3 multi-header: `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled`.
    pub const B3_MULTI: Propagation = Propagation(2);
    /// B3 single-header: `b3: {trace}-{span}-{sampled}`.
    pub const B3_SINGLE: Propagation = Propagation(4);
    /// What is written unless [`set_propagation`] says otherwise: W3C and B3 multi, which between them
    /// every OpenCensus, OpenTelemetry and Zipkin peer reads.
    pub const DEFAULT: Propagation = Propagation(Self::W3C.0 | Self::B3_MULTI.0);

    /// Whether every format of `other` is in this set.
    pub const fn contains(self, other: Propagation) -> bool {
        self.0 & other.0 == other.0
    }

    /// Reads the trace context from `headers`; see [`extract`]. The set does not matter for reading:
    /// every format is understood.
    pub fn extract(self, headers: &HeaderMap) -> Option<SpanContext> {
        extract(headers)
    }

    /// Writes `context` into `headers` in this set's formats, replacing what those headers held. An invalid
    /// context (no span) writes nothing.
    pub fn inject(self, context: &SpanContext, headers: &mut HeaderMap) {
        if !context.is_valid() {
            return;
        }
        let ids = FormattedIds::of(context);
        if self.contains(Propagation::W3C) {
            w3c::inject(&ids, context, headers);
        }
        if self.contains(Propagation::B3_MULTI) {
            b3::inject_multi(&ids, context, headers);
        }
        if self.contains(Propagation::B3_SINGLE) {
            b3::inject_single(&ids, context, headers);
        }
    }
}

impl Default for Propagation {
    fn default() -> Self {
        Propagation::DEFAULT
    }
}

impl BitOr for Propagation {
    type Output = Propagation;

    fn bitor(self, other: Propagation) -> Propagation {
        Propagation(self.0 | other.0)
    }
}

impl std::fmt::Debug for Propagation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [
            (Propagation::W3C, "W3C"),
            (Propagation::B3_MULTI, "B3_MULTI"),
            (Propagation::B3_SINGLE, "B3_SINGLE"),
        ];
        let mut set = f.debug_set();
        for (format, name) in names {
            if self.contains(format) {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
}

static FORMATS: AtomicU8 = AtomicU8::new(Propagation::DEFAULT.0);

/// Chooses the formats [`inject`] writes, process-wide.
pub fn set_propagation(formats: Propagation) {
    FORMATS.store(formats.0, Ordering::Relaxed);
}

/// The formats [`inject`] writes.
pub fn propagation() -> Propagation {
    Propagation(FORMATS.load(Ordering::Relaxed))
}

/// The remote parent carried by `headers`: `traceparent` (with `tracestate`) first, then B3 multi-header,
/// then `b3`. `None` when none is present and valid, which starts a new trace.
///
/// Every router call reads this, and most requests carry no context, so the miss is what is kept cheap: one
/// pass compares the request's header names with each format's first header, and a format
/// is parsed only when its header is there.
#[inline]
pub fn extract(headers: &HeaderMap) -> Option<SpanContext> {
    let present = Present::scan(headers);
    if present == Present::NONE { None } else { extract_present(headers, present) }
}

/// The parsing, out of line: the miss above stays a short loop with no stack frame to speak of.
#[inline(never)]
fn extract_present(headers: &HeaderMap, present: Present) -> Option<SpanContext> {
    if present.w3c
        && let Some(context) = w3c::extract(headers)
    {
        return Some(context);
    }
    if present.b3_multi
        && let Some(context) = b3::extract_multi(headers)
    {
        return Some(context);
    }
    if present.b3_single { b3::extract_single(headers) } else { None }
}

/// Which formats' first headers (`traceparent`, `X-B3-TraceId`, `b3`) a request carries.
///
/// Found by comparing names, not by looking them up: a lookup hashes the name (about 140 instructions
/// each, three per request), while comparing a request's name with ours stops at the first differing word
/// (a standard header such as `Host` differs in kind at once). Past [`Present::MAX_SCANNED`] distinct
/// names the lookups are cheaper, so every format is simply tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Present {
    w3c: bool,
    b3_multi: bool,
    b3_single: bool,
}

impl Present {
    /// Where three hashed lookups start to cost less than comparing every name three times.
    const MAX_SCANNED: usize = 24;

    const NONE: Present = Present { w3c: false, b3_multi: false, b3_single: false };

    #[inline]
    fn scan(headers: &HeaderMap) -> Present {
        if headers.keys_len() > Present::MAX_SCANNED {
            return Present { w3c: true, b3_multi: true, b3_single: true };
        }
        let mut present = Present::NONE;
        for name in headers.keys() {
            present.w3c |= *name == w3c::TRACEPARENT;
            present.b3_multi |= *name == b3::TRACE_ID;
            present.b3_single |= *name == b3::SINGLE;
        }
        present
    }
}

/// Writes `context` into `headers` in the process-wide formats ([`set_propagation`]).
pub fn inject(context: &SpanContext, headers: &mut HeaderMap) {
    propagation().inject(context, headers);
}

/// The one value of a header that must appear at most once, as text. Two values (a proxy appended its
/// own) are ambiguous, so they count as none.
fn single_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok().map(|text| text.trim_matches([' ', '\t']))
}

/// Writes a header whose value came from elsewhere (a tracestate's entries), replacing any previous value.
fn set_header(headers: &mut HeaderMap, name: &HeaderName, value: &[u8]) {
    // An invalid value is not written: writing nothing beats a panic or a broken request.
    if let Ok(value) = HeaderValue::from_bytes(value) {
        // A clone of a constant name points at its static text: no allocation.
        headers.insert(name.clone(), value);
    }
}

/// Writes one of [`FormattedIds`]' values, replacing any previous value.
fn set_formatted(headers: &mut HeaderMap, name: &HeaderName, value: &[u8]) {
    debug_assert!(value.iter().all(|&b| b == b'-' || b.is_ascii_hexdigit()));
    // SAFETY: the value is lower-case hex digits and dashes (`FormattedIds` writes nothing else), all
    // visible ASCII, which is what a header value may hold. The check `from_bytes` would make is a loop
    // over every byte, a sixth of an injection.
    let value = unsafe { HeaderValue::from_maybe_shared_unchecked(Bytes::copy_from_slice(value)) };
    headers.insert(name.clone(), value);
}

/// Removes the headers named `names`. Most outgoing requests hold none of them, and a small map is
/// searched for them by comparing names, once, which costs less than a hashed lookup per name (each one
/// hashes the name byte by byte).
fn remove_all(headers: &mut HeaderMap, names: &[&HeaderName]) {
    if headers.keys_len() <= Present::MAX_SCANNED && !headers.keys().any(|key| names.contains(&key)) {
        return;
    }
    for name in names {
        headers.remove(*name);
    }
}

/// A context's ids as the W3C `traceparent` value, `00-{trace}-{span}-{flags}`, formatted once: the B3
/// headers take their values from the same text. Every backend call writes these headers, sampled or not.
struct FormattedIds([u8; 55]);

impl FormattedIds {
    const TRACE: std::ops::Range<usize> = 3..35;
    const SPAN: std::ops::Range<usize> = 36..52;

    fn of(context: &SpanContext) -> FormattedIds {
        let mut traceparent = *b"00-00000000000000000000000000000000-0000000000000000-00";
        write_hex(&context.trace_id.0, &mut traceparent[FormattedIds::TRACE]);
        write_hex(&context.span_id.0, &mut traceparent[FormattedIds::SPAN]);
        write_hex(&[if context.sampled { w3c::SAMPLED } else { 0 }], &mut traceparent[53..]);
        FormattedIds(traceparent)
    }

    fn traceparent(&self) -> &[u8] {
        &self.0
    }

    fn trace_id(&self) -> &[u8] {
        &self.0[FormattedIds::TRACE]
    }

    fn span_id(&self) -> &[u8] {
        &self.0[FormattedIds::SPAN]
    }

    /// `{trace}-{span}`.
    fn trace_and_span_ids(&self) -> &[u8] {
        &self.0[FormattedIds::TRACE.start..FormattedIds::SPAN.end]
    }
}

/// Writes `bytes` as lower-case hex into `out`, which must be twice as long (the callers' buffers are
/// sized by the id types). Formatting through `Display` would cost a `write!` per byte and a `String`.
fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (&byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
}

/// Every byte's two lower-case hex digits: one load per byte, not two and the shifts between.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0x0f]];
        byte += 1;
    }
    pairs
};

#[cfg(test)]
mod tests;
