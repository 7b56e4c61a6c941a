//! The properties the fuzz targets check, one function per target.
//!
//! This file is also compiled as a module of `runtime/tests/fuzz_corpus.rs`, which replays every file of
//! `fuzz/corpus/<target>/` through the same function on stable, so CI checks the corpus with exactly the
//! rules the fuzzers used. It therefore uses only crates the runtime depends on, and no crate attributes.
//!
//! Each function takes arbitrary bytes and panics (a finding) when a property fails:
//! - [`config_json`]: the JSON reader never panics; text and parsed document agree; an accepted config
//!   passes `Config::validate`; every error names a JSON path that exists in the document.
//! - [`propagation`]: extracting never panics on any headers; an extracted context is valid, writes only
//!   valid header values in every format, and reads back as itself, also over the incoming headers.
//! - [`agent_messages`]: every message the ocagent exporter decodes from the agent survives any bytes and
//!   re-encodes stably; a pushed sampler config maps to a usable sampler or an error naming the bad value.

use std::str;

use http::{HeaderMap, HeaderName, HeaderValue};
use oclayer_proto::agent::metrics::v1::ExportMetricsServiceResponse;
use oclayer_proto::agent::trace::v1::{ExportTraceServiceResponse, UpdatedLibraryConfig};
use oclayer_proto::prost::Message;
use oclayer_proto::trace::v1::TraceConfig;
use oclayer_proto::trace::v1::trace_config::Sampler as WireSampler;
use oclayer_runtime::export::ocagent::fuzzing;
use oclayer_runtime::trace::propagation::{self, Propagation};
use oclayer_runtime::trace::{Sampler, SpanContext, SpanId, TraceId, TraceState};
use oclayer_runtime::{Config, Error};
use serde_json::Value;

/// A target's check: returns when the properties hold for the input, panics when one fails.
pub type Check = fn(&[u8]);

/// Every target: its name (the directory of its corpus under `fuzz/corpus/`) and its check.
pub const TARGETS: [(&str, Check); 3] =
    [("config_json", config_json), ("propagation", propagation), ("agent_messages", agent_messages)];

/// The KrakenD config reader, on arbitrary text.
pub fn config_json(data: &[u8]) {
    // The reader takes `&str`: bytes that are not UTF-8 never reach it.
    let Ok(text) = str::from_utf8(data) else { return };
    let result = Config::from_json_str(text);
    let document: Value = match serde_json::from_str(text) {
        Ok(document) => document,
        Err(_) => {
            assert!(
                matches!(&result, Err(Error::ConfigSyntax { line, message, .. }) if *line >= 1 && !message.is_empty()),
                "text that is not JSON must give ConfigSyntax with a line and a message, got {result:?}"
            );
            return;
        }
    };
    // Reading the text and reading the parsed document are two doors to the same rules.
    match (&result, &Config::from_value(&document)) {
        (Ok(from_text), Ok(from_value)) => assert_eq!(from_text, from_value),
        (Err(from_text), Err(from_value)) => assert_eq!(from_text.to_string(), from_value.to_string()),
        (from_text, from_value) => panic!("from_json_str gave {from_text:?} but from_value {from_value:?}"),
    }
    match result {
        Ok(config) => {
            if let Err(e) = config.validate() {
                panic!("an accepted config fails Config::validate: {e}");
            }
            assert!(config.sample_rate <= 100, "sample_rate {}", config.sample_rate);
            assert!(!config.reporting_period.is_zero(), "a zero reporting period must become the default");
            assert!(
                config.ocagent.is_some() || config.prometheus.is_some() || config.zpages.is_some(),
                "a JSON config without exporters must be refused"
            );
            for warning in config.warnings() {
                let segments = parse_path(&warning.path);
                assert!(
                    lookup(&document, &segments).is_some(),
                    "warning {warning} names a key that is not in the document"
                );
            }
        }
        Err(Error::Config { path, message }) => {
            assert!(!message.is_empty(), "empty message at {path}");
            // The path may end at a key that is missing (a required key), but it must lead there: every
            // key before the last is an object in the document. `(root)` is the document, whatever it is.
            let segments = parse_path(&path);
            assert!(
                segments.split_last().is_none_or(|(_, parent)| {
                    matches!(lookup(&document, parent), Some(Value::Object(_)))
                }),
                "error path {path} does not lead into the document (message: {message})"
            );
        }
        Err(other) => panic!("a JSON document gave {other:?}, not Error::Config"),
    }
}

/// The segments of a path as `Error::Config` and `ConfigWarning` display it: keys joined by `.`, a key
/// that is not an identifier quoted as a JSON string, `(root)` for the document itself.
fn parse_path(path: &str) -> Vec<String> {
    let mut segments = Vec::new();
    if path == "(root)" {
        return segments;
    }
    let mut rest = path;
    loop {
        let segment;
        if rest.starts_with('"') {
            let mut strings = serde_json::Deserializer::from_str(rest).into_iter::<String>();
            match strings.next() {
                Some(Ok(key)) => segment = key,
                other => panic!("path {path}: a quoted key that is not a JSON string ({other:?})"),
            }
            rest = &rest[strings.byte_offset()..];
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            segment = rest[..end].to_owned();
            let identifier = segment.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && segment.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            assert!(identifier, "path {path}: key {segment:?} should have been quoted");
            rest = &rest[end..];
        }
        segments.push(segment);
        match rest.strip_prefix('.') {
            Some(next) => rest = next,
            None if rest.is_empty() => return segments,
            None => panic!("path {path}: {rest:?} follows a key"),
        }
    }
}

fn lookup<'a>(document: &'a Value, segments: &[String]) -> Option<&'a Value> {
    segments.iter().try_fold(document, |value, key| value.as_object()?.get(key))
}

/// Header propagation, on arbitrary headers written as `name: value` lines.
pub fn propagation(data: &[u8]) {
    let headers = header_map(data);
    let extracted = propagation::extract(&headers);
    for formats in [Propagation::NONE, Propagation::W3C, Propagation::B3_SINGLE] {
        assert_eq!(formats.extract(&headers), extracted, "reading does not depend on the format set");
    }
    if let Some(context) = &extracted {
        assert!(context.is_valid(), "extracted an invalid context {context:?}");
        for formats in format_sets() {
            round_trip(context, formats);
        }
        // A gateway forwards the incoming headers with its own span written over them: the next hop must
        // read that span, not a stale one left from the request (formats with W3C, which is read first).
        let child = SpanContext { span_id: nonzero_span_id(data), ..context.clone() };
        for formats in format_sets().into_iter().filter(|f| f.contains(Propagation::W3C)) {
            let mut forwarded = headers.clone();
            formats.inject(&child, &mut forwarded);
            assert_eq!(propagation::extract(&forwarded), Some(child.clone()), "forwarded with {formats:?}");
        }
    }
    // Whatever the headers said, any valid ids make the round trip too.
    let span = data.get(16..).and_then(<[u8]>::first_chunk::<8>);
    if let (Some(trace), Some(span), Some(flags)) = (data.first_chunk::<16>(), span, data.get(24)) {
        let (trace_id, span_id) = (TraceId(*trace), SpanId(*span));
        let context =
            SpanContext { trace_id, span_id, sampled: flags & 1 == 1, tracestate: TraceState::EMPTY };
        if context.is_valid() {
            for formats in format_sets() {
                round_trip(&context, formats);
            }
        }
    }
}

/// The sets worth writing: each format alone, the default, and all of them.
fn format_sets() -> [Propagation; 5] {
    let all = Propagation::W3C | Propagation::B3_MULTI | Propagation::B3_SINGLE;
    [Propagation::W3C, Propagation::B3_MULTI, Propagation::B3_SINGLE, Propagation::DEFAULT, all]
}

/// Writes `context` into empty headers and reads it back: only W3C carries the tracestate.
fn round_trip(context: &SpanContext, formats: Propagation) {
    let mut headers = HeaderMap::new();
    formats.inject(context, &mut headers);
    assert!(!headers.is_empty(), "{formats:?} wrote nothing for {context:?}");
    for (name, value) in &headers {
        assert!(
            !value.is_empty() && value.to_str().is_ok(),
            "{formats:?} wrote {name}: {value:?}, not visible ASCII"
        );
    }
    let mut expected = context.clone();
    if !formats.contains(Propagation::W3C) {
        expected.tracestate = TraceState::EMPTY;
    }
    assert_eq!(propagation::extract(&headers), Some(expected), "{formats:?} round trip of {headers:?}");
}

/// `name: value` lines (`\n`, optional `\r`); lines that are not a valid header are left out, as an HTTP
/// server would refuse them before any handler runs. Repeated names append.
fn header_map(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii_start());
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    headers
}

/// A valid span id that depends on the input (FNV-1a), for the child span of a forwarded request.
fn nonzero_span_id(data: &[u8]) -> SpanId {
    let hash =
        data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    SpanId((hash | 1).to_be_bytes())
}

/// The messages the ocagent exporter decodes from the agent, on arbitrary bytes.
pub fn agent_messages(data: &[u8]) {
    decodes_stably::<ExportTraceServiceResponse>(data);
    decodes_stably::<ExportMetricsServiceResponse>(data);
    if let Some(UpdatedLibraryConfig { config: Some(config), .. }) =
        decodes_stably::<UpdatedLibraryConfig>(data)
    {
        pushed_sampler(&config, data);
    }
}

/// Decodes `data` as `M`; a message that decodes re-encodes to bytes that decode to the same bytes again.
fn decodes_stably<M: Message + Default>(data: &[u8]) -> Option<M> {
    let message = M::decode(data).ok()?;
    let bytes = message.encode_to_vec();
    assert_eq!(bytes.len(), message.encoded_len(), "encoded_len");
    let again = M::decode(bytes.as_slice()).expect("a re-encoded message decodes");
    assert_eq!(again.encode_to_vec(), bytes, "re-encoding is stable");
    Some(message)
}

/// What the exporter makes of a sampler config the agent pushed.
fn pushed_sampler(config: &TraceConfig, data: &[u8]) {
    match fuzzing::sampler_of(config) {
        Ok(None) => assert!(config.sampler.is_none(), "{config:?} names a sampler but none was taken"),
        Ok(Some(sampler)) => {
            match sampler {
                Sampler::Probability(p) => assert!((0.0..=1.0).contains(&p), "probability {p}"),
                Sampler::RateLimiting(qps) => assert!(qps.is_finite() && qps >= 0.0, "qps {qps}"),
                Sampler::AlwaysOn | Sampler::AlwaysOff | Sampler::AlwaysParent => {}
            }
            // The exporter answers with the config in force; read back, it is the same sampler.
            assert_eq!(fuzzing::sampler_of(&fuzzing::config_of(sampler)), Ok(Some(sampler)));
            let trace_id = TraceId(std::array::from_fn(|i| data.get(i).copied().unwrap_or(1)));
            for parent in [None, Some(false), Some(true)] {
                let sampled = sampler.should_sample(&trace_id, parent);
                match sampler {
                    Sampler::AlwaysOn => assert!(sampled, "ALWAYS_ON refused a trace"),
                    Sampler::AlwaysParent => assert_eq!(sampled, parent == Some(true), "ALWAYS_PARENT"),
                    _ => {}
                }
            }
        }
        Err(why) => {
            let value = match &config.sampler {
                Some(WireSampler::ProbabilitySampler(p)) => p.sampling_probability.to_string(),
                Some(WireSampler::ConstantSampler(c)) => c.decision.to_string(),
                Some(WireSampler::RateLimitingSampler(r)) => r.qps.to_string(),
                None => panic!("a config without a sampler was refused: {why}"),
            };
            assert!(why.contains(&value), "the refusal {why:?} does not name the value {value}");
        }
    }
}
