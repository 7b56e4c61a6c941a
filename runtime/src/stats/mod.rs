//! Stats: the view-data model that exporters receive, and (added by the stats issue) measures, tags, views,
//! aggregation and the reporting loop.

mod view_data;

pub use view_data::{
    Aggregation, AggregationData, DistributionData, MeasureDescriptor, MeasureKind, Row, ViewData,
    ViewDescriptor,
};
