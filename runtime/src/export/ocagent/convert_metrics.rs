//! A view snapshot into `opencensus.proto.metrics.v1.Metric`, as DESIGN.md maps them:
//!
//! | aggregation | measure | metric type |
//! |---|---|---|
//! | Count | any | `CUMULATIVE_INT64` |
//! | Sum | int | `CUMULATIVE_INT64` |
//! | Sum | float | `CUMULATIVE_DOUBLE` |
//! | Distribution | any | `CUMULATIVE_DISTRIBUTION` (explicit bounds, `len(bounds) + 1` buckets) |
//! | LastValue | int / float | `GAUGE_INT64` / `GAUGE_DOUBLE` |
//!
//! Label keys are the view's tag keys; every series has exactly one label value per key, `has_value:
//! false` where the tag was not set (opencensus-go shifts the values instead). Cumulative series start at
//! the view's registration; each series has one point, at the snapshot's time.

use oclayer_proto::metrics::v1 as wire;
use oclayer_proto::metrics::v1::metric_descriptor::Type;
use oclayer_proto::metrics::v1::{distribution_value, point};
use oclayer_proto::prost_types::Timestamp;

use crate::stats::{
    Aggregation, AggregationData, DistributionData, MeasureKind, Row, ViewData, ViewDescriptor,
};

/// The wire form of one view's snapshot. Rows whose data does not fit the view (a model bug, never
/// expected) are left out with a warning rather than sent malformed.
pub(super) fn metric(data: &ViewData) -> wire::Metric {
    let view = &data.view;
    let metric_type = metric_type(view);
    let cumulative = !matches!(metric_type, Type::GaugeInt64 | Type::GaugeDouble);
    let start = cumulative.then(|| Timestamp::from(data.start));
    let at = Timestamp::from(data.end);
    let timeseries = data
        .rows
        .iter()
        .filter_map(|row| match point_value(metric_type, view, &row.data) {
            Some(value) => Some(wire::TimeSeries {
                start_timestamp: start,
                label_values: label_values(view, row),
                points: vec![wire::Point { timestamp: Some(at), value: Some(value) }],
            }),
            None => {
                tracing::warn!(
                    view = %view.name,
                    "ocagent exporter: a row's aggregate does not match its view's aggregation; row not sent"
                );
                None
            }
        })
        .collect();
    wire::Metric {
        metric_descriptor: Some(wire::MetricDescriptor {
            name: view.name.to_string(),
            description: view.description.to_string(),
            unit: view.unit().to_string(),
            r#type: metric_type as i32,
            label_keys: view
                .tag_keys
                .iter()
                .map(|key| wire::LabelKey { key: key.to_string(), description: String::new() })
                .collect(),
        }),
        timeseries,
        resource: None,
    }
}

/// The metric type of a view: from its aggregation and its measure's kind.
fn metric_type(view: &ViewDescriptor) -> Type {
    match (&view.aggregation, view.measure.kind) {
        (Aggregation::Count, _) | (Aggregation::Sum, MeasureKind::Int64) => Type::CumulativeInt64,
        (Aggregation::Sum, MeasureKind::Float64) => Type::CumulativeDouble,
        (Aggregation::Distribution { .. }, _) => Type::CumulativeDistribution,
        (Aggregation::LastValue, MeasureKind::Int64) => Type::GaugeInt64,
        (Aggregation::LastValue, MeasureKind::Float64) => Type::GaugeDouble,
    }
}

/// One value per tag key, in the view's key order; a missing tag is `has_value: false`. A row with fewer
/// values than keys (a model bug) is padded the same way, so values never shift to the wrong key.
fn label_values(view: &ViewDescriptor, row: &Row) -> Vec<wire::LabelValue> {
    (0..view.tag_keys.len())
        .map(|i| match row.tags.get(i).and_then(Option::as_deref) {
            Some(value) => wire::LabelValue { value: value.to_owned(), has_value: true },
            None => wire::LabelValue { value: String::new(), has_value: false },
        })
        .collect()
}

/// The point value of one row, if its data fits the metric type.
fn point_value(metric_type: Type, view: &ViewDescriptor, data: &AggregationData) -> Option<point::Value> {
    let value = match (metric_type, data) {
        (Type::CumulativeInt64, AggregationData::Count(n) | AggregationData::SumInt64(n))
        | (Type::GaugeInt64, AggregationData::LastValueInt64(n)) => point::Value::Int64Value(*n),
        (Type::CumulativeDouble, AggregationData::SumFloat64(x))
        | (Type::GaugeDouble, AggregationData::LastValueFloat64(x)) => point::Value::DoubleValue(*x),
        (Type::CumulativeDistribution, AggregationData::Distribution(distribution)) => {
            let Aggregation::Distribution { bounds } = &view.aggregation else { return None };
            point::Value::DistributionValue(distribution_value(bounds, distribution)?)
        }
        _ => return None,
    };
    Some(value)
}

/// A distribution with its explicit bounds. `None` if the bucket counts do not match the bounds.
fn distribution_value(bounds: &[f64], data: &DistributionData) -> Option<wire::DistributionValue> {
    if data.bucket_counts.len() != bounds.len() + 1 {
        return None;
    }
    Some(wire::DistributionValue {
        count: data.count,
        sum: data.sum,
        sum_of_squared_deviation: data.sum_of_squared_deviation,
        bucket_options: Some(distribution_value::BucketOptions {
            r#type: Some(distribution_value::bucket_options::Type::Explicit(
                distribution_value::bucket_options::Explicit { bounds: bounds.to_vec() },
            )),
        }),
        buckets: data
            .bucket_counts
            .iter()
            .map(|&count| distribution_value::Bucket { count, exemplar: None })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::stats::MeasureDescriptor;

    fn view(aggregation: Aggregation, kind: MeasureKind, keys: &[&'static str]) -> Arc<ViewDescriptor> {
        Arc::new(ViewDescriptor {
            name: Cow::Borrowed("opencensus.io/http/server/latency"),
            description: Cow::Borrowed("Latency"),
            measure: MeasureDescriptor {
                name: Cow::Borrowed("opencensus.io/http/server/latency"),
                description: Cow::Borrowed("Latency"),
                unit: Cow::Borrowed("ms"),
                kind,
            },
            tag_keys: keys.iter().map(|k| Cow::Borrowed(*k)).collect(),
            aggregation,
        })
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn snapshot(view: Arc<ViewDescriptor>, rows: Vec<Row>) -> ViewData {
        ViewData { view, start: at(1_700_000_000), end: at(1_700_000_060), rows }
    }

    fn row(tags: &[Option<&str>], data: AggregationData) -> Row {
        Row { tags: tags.iter().map(|t| t.map(Arc::from)).collect(), data }
    }

    fn only_point(metric: &wire::Metric) -> (&wire::TimeSeries, Option<&point::Value>) {
        let series = &metric.timeseries[0];
        (series, series.points[0].value.as_ref())
    }

    #[test]
    fn count_is_cumulative_int64_from_the_view_start() {
        let data = snapshot(
            view(Aggregation::Count, MeasureKind::Float64, &["http.method"]),
            vec![row(&[Some("GET")], AggregationData::Count(12))],
        );
        let metric = metric(&data);
        let descriptor = metric.metric_descriptor.as_ref().expect("descriptor");
        assert_eq!(descriptor.r#type, Type::CumulativeInt64 as i32);
        assert_eq!(descriptor.name, "opencensus.io/http/server/latency");
        assert_eq!(descriptor.description, "Latency");
        assert_eq!(descriptor.unit, "1", "a count is dimensionless, whatever its measure's unit");
        assert_eq!(descriptor.label_keys.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(), ["http.method"]);
        let (series, value) = only_point(&metric);
        assert_eq!(series.start_timestamp, Some(Timestamp { seconds: 1_700_000_000, nanos: 0 }));
        assert_eq!(series.points[0].timestamp, Some(Timestamp { seconds: 1_700_000_060, nanos: 0 }));
        assert_eq!(value, Some(&point::Value::Int64Value(12)));
    }

    #[test]
    fn sums_follow_the_measure_kind() {
        let int = metric(&snapshot(
            view(Aggregation::Sum, MeasureKind::Int64, &[]),
            vec![row(&[], AggregationData::SumInt64(1024))],
        ));
        assert_eq!(int.metric_descriptor.as_ref().map(|d| d.r#type), Some(Type::CumulativeInt64 as i32));
        assert_eq!(only_point(&int).1, Some(&point::Value::Int64Value(1024)));

        let float = metric(&snapshot(
            view(Aggregation::Sum, MeasureKind::Float64, &[]),
            vec![row(&[], AggregationData::SumFloat64(2.5))],
        ));
        assert_eq!(float.metric_descriptor.as_ref().map(|d| d.r#type), Some(Type::CumulativeDouble as i32));
        assert_eq!(only_point(&float).1, Some(&point::Value::DoubleValue(2.5)));
    }

    #[test]
    fn distribution_has_bounds_and_one_more_bucket() {
        let bounds: Arc<[f64]> = Arc::from(vec![1.0, 10.0, 100.0]);
        let data = snapshot(
            view(Aggregation::Distribution { bounds: bounds.clone() }, MeasureKind::Float64, &["route"]),
            vec![row(
                &[Some("/users/{id}")],
                AggregationData::Distribution(DistributionData {
                    count: 4,
                    sum: 160.5,
                    sum_of_squared_deviation: 7000.25,
                    min: 0.5,
                    max: 150.0,
                    bucket_counts: vec![1, 1, 1, 1],
                }),
            )],
        );
        let metric = metric(&data);
        assert_eq!(
            metric.metric_descriptor.as_ref().map(|d| d.r#type),
            Some(Type::CumulativeDistribution as i32)
        );
        let Some(point::Value::DistributionValue(distribution)) = only_point(&metric).1 else {
            panic!("expected a distribution: {metric:?}");
        };
        assert_eq!((distribution.count, distribution.sum), (4, 160.5));
        assert_eq!(distribution.sum_of_squared_deviation, 7000.25);
        let Some(distribution_value::BucketOptions {
            r#type: Some(distribution_value::bucket_options::Type::Explicit(explicit)),
        }) = &distribution.bucket_options
        else {
            panic!("expected explicit bounds");
        };
        assert_eq!(explicit.bounds, [1.0, 10.0, 100.0]);
        assert_eq!(distribution.buckets.iter().map(|b| b.count).collect::<Vec<_>>(), [1, 1, 1, 1]);
        assert!(metric.timeseries[0].start_timestamp.is_some());
    }

    #[test]
    fn last_values_are_gauges_without_a_start() {
        let int = metric(&snapshot(
            view(Aggregation::LastValue, MeasureKind::Int64, &[]),
            vec![row(&[], AggregationData::LastValueInt64(-3))],
        ));
        assert_eq!(int.metric_descriptor.as_ref().map(|d| d.r#type), Some(Type::GaugeInt64 as i32));
        let (series, value) = only_point(&int);
        assert_eq!(series.start_timestamp, None, "a gauge has no start");
        assert_eq!(value, Some(&point::Value::Int64Value(-3)));

        let float = metric(&snapshot(
            view(Aggregation::LastValue, MeasureKind::Float64, &[]),
            vec![row(&[], AggregationData::LastValueFloat64(0.5))],
        ));
        assert_eq!(float.metric_descriptor.as_ref().map(|d| d.r#type), Some(Type::GaugeDouble as i32));
        assert_eq!(only_point(&float).1, Some(&point::Value::DoubleValue(0.5)));
    }

    #[test]
    fn one_label_value_per_key_even_when_a_tag_is_missing() {
        let data = snapshot(
            view(Aggregation::Count, MeasureKind::Int64, &["http.method", "http.status", "route"]),
            vec![row(&[Some("GET"), None, Some("/a")], AggregationData::Count(1))],
        );
        let values = &metric(&data).timeseries[0].label_values;
        let seen: Vec<(&str, bool)> = values.iter().map(|v| (v.value.as_str(), v.has_value)).collect();
        assert_eq!(seen, [("GET", true), ("", false), ("/a", true)]);

        // A short row (never produced by the stats core) still lines up with the keys.
        let short = snapshot(
            view(Aggregation::Count, MeasureKind::Int64, &["a", "b"]),
            vec![row(&[Some("x")], AggregationData::Count(1))],
        );
        let values = &metric(&short).timeseries[0].label_values;
        assert_eq!(values.len(), 2);
        assert!(!values[1].has_value);
    }

    #[test]
    fn mismatched_rows_are_left_out_not_sent_malformed() {
        let data = snapshot(
            view(Aggregation::Count, MeasureKind::Int64, &[]),
            vec![row(&[], AggregationData::SumFloat64(1.0)), row(&[], AggregationData::Count(2))],
        );
        assert_eq!(metric(&data).timeseries.len(), 1);

        let bad_buckets = snapshot(
            view(Aggregation::Distribution { bounds: Arc::from(vec![1.0]) }, MeasureKind::Float64, &[]),
            vec![row(
                &[],
                AggregationData::Distribution(DistributionData {
                    bucket_counts: vec![1],
                    ..Default::default()
                }),
            )],
        );
        assert!(metric(&bad_buckets).timeseries.is_empty());
    }

    #[test]
    fn a_view_without_rows_still_describes_itself() {
        let metric = metric(&snapshot(view(Aggregation::Count, MeasureKind::Int64, &["k"]), Vec::new()));
        assert!(metric.metric_descriptor.is_some());
        assert!(metric.timeseries.is_empty());
    }
}
