//! The bounded in-memory store behind `/debug/tracez`: per span name, counts by latency bucket and of
//! errors since start, and the newest few finished spans of each bucket as samples.
//!
//! Bounded twice: at most [`SAMPLES_PER_BUCKET`] samples per name and bucket, and at most
//! [`MAX_SPAN_NAMES`] names (spans of further names are counted, not kept). Spans arrive in batches from the
//! span pipeline, never from a request, so a short lock is fine here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::trace::{SpanData, StatusCode};

/// How many sample spans are kept per span name and latency bucket, and per span name for errors.
pub(crate) const SAMPLES_PER_BUCKET: usize = 5;

/// How many distinct span names are tracked. Span names are route patterns and function names, so a
/// real gateway stays far below; the cap protects the process from a span named after raw paths.
pub(crate) const MAX_SPAN_NAMES: usize = 1000;

/// The lower bounds of the latency buckets after the first, as OpenCensus zPages use them: [0, 10µs),
/// [10µs, 100µs), [100µs, 1ms), [1ms, 10ms), [10ms, 100ms), [100ms, 1s), [1s, 10s), [10s, 100s), [100s, ∞).
const LATENCY_BOUNDS: [Duration; LATENCY_BUCKETS - 1] = [
    Duration::from_micros(10),
    Duration::from_micros(100),
    Duration::from_millis(1),
    Duration::from_millis(10),
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(10),
    Duration::from_secs(100),
];

/// The number of latency buckets.
pub(crate) const LATENCY_BUCKETS: usize = 9;

/// Column headings of the latency buckets, as OpenCensus zPages label them (each is the lower bound).
pub(crate) const LATENCY_LABELS: [&str; LATENCY_BUCKETS] =
    [">0s", ">10µs", ">100µs", ">1ms", ">10ms", ">100ms", ">1s", ">10s", ">100s"];

/// The bucket a span of this duration falls into: bounds include their lower end.
pub(crate) fn latency_bucket(duration: Duration) -> usize {
    LATENCY_BOUNDS.iter().take_while(|bound| duration >= **bound).count()
}

/// Counts and samples of one span name.
#[derive(Default)]
struct NameEntry {
    /// Spans that ended with status OK, by latency bucket.
    latency: [u64; LATENCY_BUCKETS],
    /// Spans that ended with any other status.
    errors: u64,
    latency_samples: [VecDeque<SpanData>; LATENCY_BUCKETS],
    error_samples: VecDeque<SpanData>,
}

/// One line of the summary table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NameSummary {
    /// The span name.
    pub(crate) name: String,
    /// OK spans by latency bucket, since start.
    pub(crate) latency: [u64; LATENCY_BUCKETS],
    /// Spans with an error status, since start.
    pub(crate) errors: u64,
}

/// Which samples to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SampleKind {
    /// OK spans of one latency bucket.
    Latency(usize),
    /// Spans with an error status.
    Errors,
}

#[derive(Default)]
struct Inner {
    names: BTreeMap<String, NameEntry>,
    /// Spans not tracked because [`MAX_SPAN_NAMES`] names were already tracked.
    untracked: u64,
}

/// The store. Cheap to share behind an `Arc`.
#[derive(Default)]
pub(crate) struct SpanStore {
    inner: Mutex<Inner>,
}

impl SpanStore {
    /// Counts the spans and keeps them as samples, replacing the oldest sample of a full bucket.
    pub(crate) fn record(&self, spans: &[SpanData]) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for span in spans {
            let at_capacity = inner.names.len() >= MAX_SPAN_NAMES;
            let entry = match inner.names.get_mut(span.name.as_ref()) {
                Some(entry) => entry,
                None if at_capacity => {
                    inner.untracked += 1;
                    continue;
                }
                None => inner.names.entry(span.name.clone().into_owned()).or_default(),
            };
            let samples = if span.status.code == StatusCode::Ok {
                let bucket = latency_bucket(span.duration());
                entry.latency[bucket] += 1;
                &mut entry.latency_samples[bucket]
            } else {
                entry.errors += 1;
                &mut entry.error_samples
            };
            if samples.len() == SAMPLES_PER_BUCKET {
                samples.pop_front();
            }
            samples.push_back(span.clone());
        }
    }

    /// Every tracked name with its counts, sorted by name, and the number of spans not tracked.
    pub(crate) fn summary(&self) -> (Vec<NameSummary>, u64) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let names = inner
            .names
            .iter()
            .map(|(name, entry)| NameSummary {
                name: name.clone(),
                latency: entry.latency,
                errors: entry.errors,
            })
            .collect();
        (names, inner.untracked)
    }

    /// The samples of `name` of that kind, newest first; `None` when the name is not tracked.
    pub(crate) fn samples(&self, name: &str, kind: SampleKind) -> Option<Vec<SpanData>> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = inner.names.get(name)?;
        let samples = match kind {
            SampleKind::Latency(bucket) => entry.latency_samples.get(bucket)?,
            SampleKind::Errors => &entry.error_samples,
        };
        Some(samples.iter().rev().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::trace::{SpanContext, Status};

    fn span(name: &str, duration: Duration, code: StatusCode) -> SpanData {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        SpanData {
            context: SpanContext::default(),
            parent_span_id: None,
            name: Cow::Owned(name.to_owned()),
            kind: Default::default(),
            start_time: start,
            end_time: start + duration,
            attributes: Default::default(),
            time_events: Vec::new(),
            dropped_annotations: 0,
            dropped_message_events: 0,
            links: Vec::new(),
            dropped_links: 0,
            status: Status { code, message: Cow::Borrowed("") },
            same_process_as_parent_span: None,
            child_span_count: 0,
        }
    }

    #[test]
    fn buckets_include_their_lower_bound() {
        assert_eq!(latency_bucket(Duration::ZERO), 0);
        assert_eq!(latency_bucket(Duration::from_nanos(9_999)), 0);
        assert_eq!(latency_bucket(Duration::from_micros(10)), 1);
        assert_eq!(latency_bucket(Duration::from_micros(999)), 2);
        assert_eq!(latency_bucket(Duration::from_millis(1)), 3);
        assert_eq!(latency_bucket(Duration::from_millis(150)), 5);
        assert_eq!(latency_bucket(Duration::from_secs(99)), 7);
        assert_eq!(latency_bucket(Duration::from_secs(100)), 8);
        assert_eq!(latency_bucket(Duration::MAX), 8);
    }

    #[test]
    fn counts_everything_and_keeps_the_newest_samples() {
        let store = SpanStore::default();
        let spans: Vec<SpanData> = (0..8u64)
            .map(|i| span("a", Duration::from_millis(2) + Duration::from_nanos(i), StatusCode::Ok))
            .chain([span("a", Duration::from_secs(3), StatusCode::Unavailable)])
            .collect();
        store.record(&spans);
        let (summary, untracked) = store.summary();
        assert_eq!(untracked, 0);
        let mut latency = [0; LATENCY_BUCKETS];
        latency[3] = 8;
        assert_eq!(summary, vec![NameSummary { name: "a".into(), latency, errors: 1 }]);
        let samples = store.samples("a", SampleKind::Latency(3)).expect("tracked");
        let nanos: Vec<u32> = samples.iter().map(|s| s.duration().subsec_nanos() % 1000).collect();
        assert_eq!(nanos, vec![7, 6, 5, 4, 3]);
        assert_eq!(store.samples("a", SampleKind::Errors).expect("tracked").len(), 1);
        assert_eq!(store.samples("a", SampleKind::Latency(0)), Some(vec![]));
        assert_eq!(store.samples("b", SampleKind::Errors), None);
    }

    #[test]
    fn names_beyond_the_cap_are_counted_not_kept() {
        let store = SpanStore::default();
        let spans: Vec<SpanData> = (0..MAX_SPAN_NAMES + 3)
            .map(|i| span(&format!("n{i}"), Duration::from_millis(1), StatusCode::Ok))
            .collect();
        store.record(&spans);
        // A name already tracked still counts after the cap is reached.
        store.record(&[span("n0", Duration::from_millis(1), StatusCode::Ok)]);
        let (summary, untracked) = store.summary();
        assert_eq!(summary.len(), MAX_SPAN_NAMES);
        assert_eq!(untracked, 3);
        assert_eq!(summary.iter().find(|s| s.name == "n0").map(|s| s.latency[3]), Some(2));
    }
}
