//! One view's snapshot, as the reporting loop hands it to exporters. It carries everything both the ocagent
//! metrics conversion and the Prometheus exposition need, so the two read one aggregation.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

/// Whether a measure records integers or floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MeasureKind {
    /// 64-bit signed integers (counts, bytes).
    Int64,
    /// 64-bit floats (latencies in ms).
    Float64,
}

/// What a measure is: its name, meaning and unit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MeasureDescriptor {
    /// e.g. `opencensus.io/http/server/latency`.
    pub name: Cow<'static, str>,
    /// What is measured, in words.
    pub description: Cow<'static, str>,
    /// `"1"`, `"ms"` or `"By"` (UCUM, as OpenCensus uses it).
    pub unit: Cow<'static, str>,
    /// Integer or float.
    pub kind: MeasureKind,
}

/// How a view aggregates the measurements of one row.
#[derive(Clone, Debug, PartialEq)]
pub enum Aggregation {
    /// Number of measurements.
    Count,
    /// Sum of the values.
    Sum,
    /// Histogram over explicit, strictly increasing bucket bounds: bucket `i` holds `bounds[i-1] <= v <
    /// bounds[i]`; there are `bounds.len() + 1` buckets.
    Distribution {
        /// The bucket bounds.
        bounds: Arc<[f64]>,
    },
    /// The last value recorded.
    LastValue,
}

/// What a view is: a measure, the tag keys it is broken down by, and the aggregation.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewDescriptor {
    /// The view's name, e.g. `opencensus.io/http/server/request_count`.
    pub name: Cow<'static, str>,
    /// What the view shows, in words.
    pub description: Cow<'static, str>,
    /// The measure it aggregates.
    pub measure: MeasureDescriptor,
    /// The tag keys that split it into rows, in order.
    pub tag_keys: Vec<Cow<'static, str>>,
    /// How each row aggregates.
    pub aggregation: Aggregation,
}

impl ViewDescriptor {
    /// The unit of the view's values: the measure's, except that a count counts measurements, whatever
    /// they measure, so it is dimensionless (`"1"`). opencensus-go sends the measure's unit here, which
    /// labels a request count "ms".
    pub fn unit(&self) -> &str {
        match self.aggregation {
            Aggregation::Count => "1",
            _ => &self.measure.unit,
        }
    }
}

/// The aggregate of one distribution row.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DistributionData {
    /// Number of values.
    pub count: i64,
    /// Sum of the values.
    pub sum: f64,
    /// Sum of squared deviations from the mean (Welford), as OpenCensus carries it.
    pub sum_of_squared_deviation: f64,
    /// Smallest value recorded (`f64::INFINITY` when none).
    pub min: f64,
    /// Largest value recorded (`f64::NEG_INFINITY` when none).
    pub max: f64,
    /// Per-bucket counts, `bounds.len() + 1` of them, not cumulative.
    pub bucket_counts: Vec<i64>,
}

impl DistributionData {
    /// The mean value, 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.sum / self.count as f64 }
    }
}

/// The aggregate of one row, by aggregation and measure kind.
#[derive(Clone, Debug, PartialEq)]
pub enum AggregationData {
    /// `Count`.
    Count(i64),
    /// `Sum` of an int measure.
    SumInt64(i64),
    /// `Sum` of a float measure.
    SumFloat64(f64),
    /// `Distribution`.
    Distribution(DistributionData),
    /// `LastValue` of an int measure.
    LastValueInt64(i64),
    /// `LastValue` of a float measure.
    LastValueFloat64(f64),
}

/// One row of a view: the tag values (one per tag key of the view, `None` where the tag was not set) and
/// their aggregate.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// One value per view tag key, in the view's key order.
    pub tags: Vec<Option<Arc<str>>>,
    /// The aggregate, cumulative since [`ViewData::start`] (except last values).
    pub data: AggregationData,
}

/// A snapshot of one view.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewData {
    /// The view.
    pub view: Arc<ViewDescriptor>,
    /// When the view was registered: the start of every cumulative series.
    pub start: SystemTime,
    /// When the snapshot was taken.
    pub end: SystemTime,
    /// The rows, one per tag-value combination seen.
    pub rows: Vec<Row>,
}
