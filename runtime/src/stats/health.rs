//! The runtime's own health: what exporters and the span pipeline lost, and what recording had to fix or
//! drop.
//!
//! Losses of exporters go to the health views (`oclayer.io/export/*`, defined in [`crate::layer`]), so they
//! reach the same dashboards as the traffic. Problems of recording itself are plain counters: recording
//! them as stats could recurse into the problem being counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use super::record::record_with_tags;
use crate::layer;

// Each on cache lines of its own: each can be written on every call (tag values from request data that is
// not printable ASCII, NaN measurements, records from an exiting thread), and the statics a linker places
// beside them (the layer switches, the sampler) are read by every call on every core.
static INVALID_TAG_VALUES: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
static INVALID_MEASUREMENTS: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
static DROPPED_RECORDS: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// Spans the exporter `exporter` (or the span pipeline, as `"pipeline"`) dropped, e.g. on a full queue.
pub fn record_dropped_spans(exporter: &str, count: u64) {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    record_with_tags(&[layer::DROPPED_SPANS.m(count)], &[(&layer::KEY_EXPORTER, exporter)]);
}

/// Stats reports the exporter `exporter` dropped (a full queue, or the agent down beyond the bound).
pub fn record_dropped_reports(exporter: &str, count: u64) {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    record_with_tags(&[layer::DROPPED_REPORTS.m(count)], &[(&layer::KEY_EXPORTER, exporter)]);
}

/// One failed export attempt (a stream error, a rejected request, a panic in `export_*`) of `exporter`.
pub fn record_export_error(exporter: &str) {
    record_with_tags(&[layer::EXPORT_ERRORS.m(1)], &[(&layer::KEY_EXPORTER, exporter)]);
}

/// Tag values that were not printable ASCII or longer than 255 bytes, and were recorded fixed (offending
/// characters replaced by `_`, cut to 255 bytes). Counts every record that used such a value.
pub fn invalid_tag_values() -> u64 {
    INVALID_TAG_VALUES.load(Ordering::Relaxed)
}

/// Measurements dropped because their value was NaN or infinite.
pub fn invalid_measurements() -> u64 {
    INVALID_MEASUREMENTS.load(Ordering::Relaxed)
}

/// Measurements dropped because recording was re-entered on a thread (from inside a record) or the thread was
/// exiting.
pub fn dropped_records() -> u64 {
    DROPPED_RECORDS.load(Ordering::Relaxed)
}

pub(crate) fn count_invalid_tag_value() {
    if INVALID_TAG_VALUES.fetch_add(1, Ordering::Relaxed) == 0 {
        tracing::warn!(
            "a stats tag value was not printable ASCII or longer than 255 bytes; it was recorded with `_` in \
             place of the offending characters (counted in oclayer::stats::health::invalid_tag_values; \
             only this first occurrence is logged)"
        );
    }
}

pub(crate) fn count_invalid_measurement(measure: &str) {
    if INVALID_MEASUREMENTS.fetch_add(1, Ordering::Relaxed) == 0 {
        tracing::warn!(
            measure,
            "a NaN or infinite measurement was dropped (counted in \
             oclayer::stats::health::invalid_measurements; only this first occurrence is logged)"
        );
    }
}

pub(crate) fn count_dropped_records(count: usize) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    DROPPED_RECORDS.fetch_add(count as u64, Ordering::Relaxed);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "stats recorded from inside a record, or while a thread exits, were dropped (counted in \
             oclayer::stats::health::dropped_records; only this first occurrence is logged)"
        );
    }
}
