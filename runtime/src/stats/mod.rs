//! Stats: measures, tags, views, aggregation and reports, after OpenCensus.
//!
//! A [`Measure`] names a quantity (a request's latency in ms). Code records [`Measurement`]s of it, tagged
//! ([`TagMap`], or borrowed `(key, value)` pairs). A [`View`] says which measure to aggregate, split by which
//! tag keys, and how ([`Aggregation`]: count, sum, distribution, last value); nothing is kept for a measure
//! that no registered view uses. Each report ([`snapshot`]) gives every view's rows, cumulative since the
//! view was registered, in the [`ViewData`] model both exporters read.
//!
//! Recording is the hot path of every request, so it never blocks and never allocates for a tag combination
//! the thread has recorded before: each thread aggregates into its own cells and the reporter merges them
//! (see `record.rs`). Everything else (registration, reports) may lock and allocate.
//!
//! Tags set with [`with_tags`] travel with the request: the router layer's route is seen by the pipe and
//! backend records made while the request is handled.
//!
//! ```
//! use oclayer_runtime::stats::{self, Aggregation, Float64Measure, TagKey, View};
//!
//! static LATENCY: Float64Measure = Float64Measure::new("example.com/latency", "Time to answer", "ms");
//! const METHOD: TagKey = TagKey::from_static("method");
//!
//! stats::register(&[View::new(
//!     "example.com/latency",
//!     "Latency by method",
//!     &LATENCY,
//!     &[METHOD],
//!     Aggregation::distribution(&[10.0, 100.0]),
//! )])?;
//! stats::record_with_tags(&[LATENCY.m(42.0)], &[(&METHOD, "GET")]);
//!
//! let data = stats::view_data("example.com/latency").expect("registered");
//! assert_eq!(data.rows.len(), 1);
//! # Ok::<(), oclayer_runtime::Error>(())
//! ```

mod cell;
pub mod health;
mod measure;
mod record;
mod registry;
mod report;
mod tag;
mod view;
mod view_data;

/// Spans dropped by the full span queue; kept by the tracing core, named here with the other health counts.
pub use crate::trace::dropped_spans;
#[doc(hidden)]
pub use measure::Value;
pub use measure::{Float64Measure, Int64Measure, Measure, MeasureValue, Measurement};
pub(crate) use record::{SHAPE_SLOTS, Shape, record_shaped, record_shaped_static};
pub use record::{record, record_with_tags};
pub use registry::{register, registered_views, unregister};
pub(crate) use report::reporting_loop;
pub use report::{snapshot, view_data};
pub use tag::{MAX_TAG_LEN, TagKey, TagMap, TagValue, WithTags, current_tags, with_tags, with_tags_sync};
pub use view::View;
pub use view_data::{
    Aggregation, AggregationData, DistributionData, MeasureDescriptor, MeasureKind, Row, ViewData,
    ViewDescriptor,
};

#[cfg(test)]
mod tests;
