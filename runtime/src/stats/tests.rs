//! Stats end to end: record, register, report. Tests share the process-wide registry and run in parallel,
//! so each uses its own measure and view names.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::*;
use crate::Error;
use crate::export::memory::InMemoryExporter;
use crate::export::{Exporter, StatsReport};

const METHOD: TagKey = TagKey::from_static("method");
const ROUTE: TagKey = TagKey::from_static("route");
const STATUS: TagKey = TagKey::from_static("status");

fn view<T: MeasureValue>(
    name: &'static str,
    measure: &Measure<T>,
    keys: &[TagKey],
    agg: Aggregation,
) -> View {
    View::new(name, "test view", measure, keys, agg)
}

fn rows(name: &str) -> Vec<(Vec<Option<String>>, AggregationData)> {
    let data = view_data(name).unwrap_or_else(|| panic!("view {name} is not registered"));
    data.rows
        .into_iter()
        .map(|r| (r.tags.iter().map(|t| t.as_deref().map(str::to_owned)).collect(), r.data))
        .collect()
}

fn tags(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some((*v).to_owned())).collect()
}

fn distribution(data: &AggregationData) -> &DistributionData {
    match data {
        AggregationData::Distribution(d) => d,
        other => panic!("expected a distribution, got {other:?}"),
    }
}

#[test]
fn count_and_sums_aggregate_per_tag_combination() {
    static M: Int64Measure = Int64Measure::new("test/count_and_sums", "bytes", "By");
    static F: Float64Measure = Float64Measure::new("test/count_and_sums_f", "ms", "ms");
    register(&[
        view("test/count_and_sums/count", &M, &[METHOD], Aggregation::Count),
        view("test/count_and_sums/sum", &M, &[METHOD], Aggregation::Sum),
        view("test/count_and_sums/sum_f", &F, &[], Aggregation::Sum),
    ])
    .expect("valid views");
    record_with_tags(&[M.m(10)], &[(&METHOD, "GET")]);
    record_with_tags(&[M.m(-3)], &[(&METHOD, "GET")]);
    record_with_tags(&[M.m(5), F.m(1.5)], &[(&METHOD, "POST")]);
    record_with_tags(&[F.m(2.25)], &[]);

    assert_eq!(
        rows("test/count_and_sums/count"),
        vec![(tags(&["GET"]), AggregationData::Count(2)), (tags(&["POST"]), AggregationData::Count(1))]
    );
    assert_eq!(
        rows("test/count_and_sums/sum"),
        vec![(tags(&["GET"]), AggregationData::SumInt64(7)), (tags(&["POST"]), AggregationData::SumInt64(5))]
    );
    assert_eq!(rows("test/count_and_sums/sum_f"), vec![(vec![], AggregationData::SumFloat64(3.75))]);
}

#[test]
fn a_tag_missing_from_a_record_is_an_absent_value_not_a_shifted_one() {
    static M: Int64Measure = Int64Measure::new("test/missing_tag", "n", "1");
    register(&[view("test/missing_tag", &M, &[ROUTE, METHOD], Aggregation::Count)]).expect("valid");
    record_with_tags(&[M.m(1)], &[(&METHOD, "GET")]);
    assert_eq!(
        rows("test/missing_tag"),
        vec![(vec![None, Some("GET".to_owned())], AggregationData::Count(1))]
    );
}

#[test]
fn alternating_combinations_and_reused_buffers_land_in_their_own_rows() {
    // Recording compares values with the previous record's row before hashing: a changed value in a reused
    // buffer (same address, same length), a value moving to another key, and key lists shared by several
    // views must each still find the right row.
    static M: Int64Measure = Int64Measure::new("test/alternating", "n", "1");
    register(&[
        view("test/alternating/both", &M, &[ROUTE, METHOD], Aggregation::Sum),
        view("test/alternating/both_count", &M, &[ROUTE, METHOD], Aggregation::Count),
        view("test/alternating/method", &M, &[METHOD], Aggregation::Sum),
    ])
    .expect("valid views");
    let mut route = String::from("/a");
    for i in 0..6 {
        route.replace_range(1.., if i % 2 == 0 { "a" } else { "b" });
        record_with_tags(&[M.m(1)], &[(&ROUTE, &route), (&METHOD, "GET")]);
    }
    // Keys in another order than the view's, then the route given as the method.
    record_with_tags(&[M.m(10)], &[(&METHOD, "PUT"), (&ROUTE, "/a")]);
    record_with_tags(&[M.m(100)], &[(&ROUTE, "GET"), (&METHOD, "/a")]);
    record_with_tags(&[M.m(1000)], &[(&ROUTE, "/a")]);

    assert_eq!(
        rows("test/alternating/both"),
        vec![
            (vec![Some("/a".to_owned()), None], AggregationData::SumInt64(1000)),
            (tags(&["/a", "GET"]), AggregationData::SumInt64(3)),
            (tags(&["/a", "PUT"]), AggregationData::SumInt64(10)),
            (tags(&["/b", "GET"]), AggregationData::SumInt64(3)),
            (tags(&["GET", "/a"]), AggregationData::SumInt64(100)),
        ]
    );
    let counts: Vec<_> = rows("test/alternating/both_count").into_iter().map(|(_, d)| d).collect();
    assert_eq!(counts, [1, 3, 1, 3, 1].map(AggregationData::Count));
    assert_eq!(
        rows("test/alternating/method"),
        vec![
            (vec![None], AggregationData::SumInt64(1000)),
            (tags(&["/a"]), AggregationData::SumInt64(100)),
            (tags(&["GET"]), AggregationData::SumInt64(6)),
            (tags(&["PUT"]), AggregationData::SumInt64(10)),
        ]
    );
}

#[test]
fn views_with_more_keys_than_fit_inline_find_their_rows() {
    static M: Int64Measure = Int64Measure::new("test/many_keys", "n", "1");
    let keys: Vec<TagKey> = (0..12).map(|i| TagKey::new(format!("k{i}")).expect("valid key")).collect();
    register(&[view("test/many_keys", &M, &keys, Aggregation::Count)]).expect("valid view");
    let record = |last: &str| {
        let mut tags: Vec<(&TagKey, &str)> = keys.iter().map(|k| (k, "v")).collect();
        tags[11].1 = last;
        record_with_tags(&[M.m(1)], &tags);
    };
    for last in ["a", "a", "b", "a"] {
        record(last);
    }
    let counts: Vec<_> = rows("test/many_keys").into_iter().map(|(t, d)| (t[11].clone(), d)).collect();
    assert_eq!(
        counts,
        vec![
            (Some("a".to_owned()), AggregationData::Count(3)),
            (Some("b".to_owned()), AggregationData::Count(1))
        ]
    );
}

#[test]
fn last_value_keeps_the_latest_across_threads() {
    static M: Float64Measure = Float64Measure::new("test/last_value", "queue depth", "1");
    static I: Int64Measure = Int64Measure::new("test/last_value_i", "connections", "1");
    register(&[
        view("test/last_value", &M, &[], Aggregation::LastValue),
        view("test/last_value_i", &I, &[], Aggregation::LastValue),
    ])
    .expect("valid");
    assert_eq!(rows("test/last_value"), vec![], "no row before the first value");
    record(&[M.m(1.0), I.m(-7)], &TagMap::new());
    std::thread::spawn(|| record(&[M.m(2.5)], &TagMap::new())).join().expect("recording thread");
    assert_eq!(rows("test/last_value"), vec![(vec![], AggregationData::LastValueFloat64(2.5))]);
    record(&[M.m(0.5)], &TagMap::new());
    assert_eq!(rows("test/last_value"), vec![(vec![], AggregationData::LastValueFloat64(0.5))]);
    assert_eq!(rows("test/last_value_i"), vec![(vec![], AggregationData::LastValueInt64(-7))]);
}

#[test]
fn distribution_buckets_edges_negatives_and_nan() {
    static M: Float64Measure = Float64Measure::new("test/distribution", "latency", "ms");
    register(&[view("test/distribution", &M, &[], Aggregation::distribution(&[1.0, 2.0, 5.0]))])
        .expect("valid");
    let before = health::invalid_measurements();
    for v in [-10.0, 0.0, 0.999, 1.0, 1.5, 2.0, 4.0, 5.0, 7.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        record(&[M.m(v)], &TagMap::new());
    }
    assert!(health::invalid_measurements() >= before + 3, "NaN and infinities are counted");
    let rows = rows("test/distribution");
    let d = distribution(&rows[0].1);
    // [-inf,1): -10, 0, 0.999; [1,2): 1, 1.5; [2,5): 2, 4; [5,inf): 5, 7. NaN and infinities dropped.
    assert_eq!(d.bucket_counts, vec![3, 2, 2, 2]);
    assert_eq!(d.count, 9);
    // Not compared exactly: a registration by a test running beside this one makes this thread start new
    // cells mid-loop, and the row's sum then adds two partial sums, whose rounding differs from this order's
    // in the last bit (11.499000000000002 against 11.499, once in about 40 runs).
    let sum = -10.0 + 0.999 + 1.0 + 1.5 + 2.0 + 4.0 + 5.0 + 7.0;
    assert!((d.sum - sum).abs() < 1e-9, "{} against {sum}", d.sum);
    assert_eq!((d.min, d.max), (-10.0, 7.0));
    let mean = d.sum / 9.0;
    let expected: f64 =
        [-10.0, 0.0, 0.999, 1.0, 1.5, 2.0, 4.0, 5.0, 7.0].iter().map(|v: &f64| (v - mean).powi(2)).sum();
    assert!((d.sum_of_squared_deviation - expected).abs() < 1e-9);
}

#[test]
fn concurrent_recording_gives_exact_totals() {
    static M: Float64Measure = Float64Measure::new("test/concurrent", "latency", "ms");
    register(&[
        view("test/concurrent/count", &M, &[ROUTE, METHOD, STATUS], Aggregation::Count),
        view("test/concurrent/dist", &M, &[ROUTE, METHOD, STATUS], Aggregation::distribution(&[10.0, 100.0])),
    ])
    .expect("valid");
    const THREADS: usize = 4;
    const PER_THREAD: usize = 20_000;
    let start = Arc::new(Barrier::new(THREADS + 1));
    let reporter_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A reporter reads while the threads write: reads must not disturb the totals.
    let reporter = {
        let stop = Arc::clone(&reporter_stop);
        std::thread::spawn(move || {
            let mut reports = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let data = view_data("test/concurrent/dist").expect("registered");
                for row in &data.rows {
                    let d = distribution(&row.data);
                    assert_eq!(d.count, d.bucket_counts.iter().sum::<i64>(), "count agrees with buckets");
                }
                reports += 1;
            }
            reports
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                for i in 0..PER_THREAD {
                    let route = if i % 2 == 0 { "/a" } else { "/b" };
                    let status = if t % 2 == 0 { "200" } else { "500" };
                    record_with_tags(
                        &[M.m((i % 200) as f64)],
                        &[(&ROUTE, route), (&METHOD, "GET"), (&STATUS, status)],
                    );
                }
            })
        })
        .collect();
    start.wait();
    for w in workers {
        w.join().expect("worker");
    }
    reporter_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reporter.join().expect("reporter") > 0);

    let counts = rows("test/concurrent/count");
    assert_eq!(counts.len(), 4);
    for (_, data) in &counts {
        assert_eq!(*data, AggregationData::Count((THREADS * PER_THREAD / 4) as i64));
    }
    let dists = rows("test/concurrent/dist");
    let total: i64 = dists.iter().map(|(_, d)| distribution(d).count).sum();
    assert_eq!(total, (THREADS * PER_THREAD) as i64);
    // Per row: half the threads, every other i. i%200 even in [0,10): 5 values of each 200; [10,100): 45; rest 50.
    for (tags, data) in &dists {
        let d = distribution(data);
        let per_row = (THREADS / 2 * PER_THREAD / 2) as i64;
        assert_eq!(d.count, per_row, "{tags:?}");
        let cycles = per_row / 100;
        assert_eq!(d.bucket_counts, vec![5 * cycles, 45 * cycles, 50 * cycles], "{tags:?}");
        let odd = tags[0].as_deref() == Some("/b");
        let sum_per_cycle: i64 = (0..200).filter(|v| (v % 2 == 1) == odd).sum();
        assert_eq!(d.sum, (sum_per_cycle * cycles) as f64, "{tags:?}");
    }
}

#[test]
fn cells_of_finished_threads_keep_counting() {
    static M: Int64Measure = Int64Measure::new("test/finished_threads", "n", "1");
    register(&[view("test/finished_threads", &M, &[METHOD], Aggregation::Sum)]).expect("valid");
    for _ in 0..3 {
        std::thread::spawn(|| record_with_tags(&[M.m(2)], &[(&METHOD, "GET")])).join().expect("thread");
        // Each report folds the finished thread's cell into the row total.
        assert!(view_data("test/finished_threads").is_some());
    }
    record_with_tags(&[M.m(1)], &[(&METHOD, "GET")]);
    assert_eq!(rows("test/finished_threads"), vec![(tags(&["GET"]), AggregationData::SumInt64(7))]);
    assert_eq!(rows("test/finished_threads"), vec![(tags(&["GET"]), AggregationData::SumInt64(7))]);
}

#[test]
fn registering_the_same_definition_is_a_no_op_and_a_different_one_an_error() {
    static M: Int64Measure = Int64Measure::new("test/register", "n", "1");
    let v = view("test/register", &M, &[METHOD], Aggregation::Count);
    register(std::slice::from_ref(&v)).expect("first registration");
    let start = view_data("test/register").expect("registered").start;
    record_with_tags(&[M.m(1)], &[(&METHOD, "GET")]);

    register(&[v.clone(), v.clone()]).expect("same definition again is fine");
    let data = view_data("test/register").expect("registered");
    assert_eq!(data.start, start, "the view was not replaced");
    assert_eq!(data.rows.len(), 1, "its data continues");

    let other = view("test/register", &M, &[ROUTE], Aggregation::Count);
    let err = register(&[other]).expect_err("different definition");
    assert!(matches!(&err, Error::View { name, .. } if name == "test/register"), "{err}");
    assert!(err.to_string().contains("different definition"), "{err}");

    // A batch with one bad view registers none of it.
    static N: Int64Measure = Int64Measure::new("test/register_batch", "n", "1");
    let good = view("test/register_batch/good", &N, &[], Aggregation::Count);
    let bad = view("test/register_batch/bad", &N, &[], Aggregation::distribution(&[2.0, 1.0]));
    assert!(register(&[good, bad]).is_err());
    assert!(view_data("test/register_batch/good").is_none());
}

#[test]
fn invalid_views_are_refused_with_the_reason() {
    static M: Float64Measure = Float64Measure::new("test/invalid_views", "n", "1");
    let cases: [(View, &str); 5] = [
        (view("test/invalid/bounds", &M, &[], Aggregation::distribution(&[1.0, 1.0])), "strictly increasing"),
        (view("test/invalid/nan", &M, &[], Aggregation::distribution(&[1.0, f64::NAN])), "finite"),
        (view("test/invalid/keys", &M, &[METHOD, METHOD], Aggregation::Count), "listed twice"),
        (view("", &M, &[], Aggregation::Count), "printable ASCII"),
        (view("test/invalid/\u{7}", &M, &[], Aggregation::Count), "printable ASCII"),
    ];
    for (v, reason) in cases {
        let err = register(std::slice::from_ref(&v)).expect_err(v.name());
        assert!(err.to_string().contains(reason), "{}: {err}", v.name());
    }
}

#[test]
fn a_measure_name_means_one_definition() {
    static FIRST: Int64Measure = Int64Measure::new("test/measure_conflict", "first", "1");
    static SECOND: Int64Measure = Int64Measure::new("test/measure_conflict", "second", "By");
    register(&[view("test/measure_conflict/a", &FIRST, &[], Aggregation::Count)]).expect("valid");
    let err = register(&[view("test/measure_conflict/b", &SECOND, &[], Aggregation::Count)])
        .expect_err("conflicting measure");
    assert!(err.to_string().contains("test/measure_conflict"), "{err}");
    // Records of the conflicting measure are dropped rather than mixed into the first one's views.
    record(&[SECOND.m(1), FIRST.m(1)], &TagMap::new());
    assert_eq!(rows("test/measure_conflict/a"), vec![(vec![], AggregationData::Count(1))]);
}

#[test]
fn unregister_stops_collection_and_a_new_registration_starts_fresh() {
    static M: Int64Measure = Int64Measure::new("test/unregister", "n", "1");
    let v = view("test/unregister", &M, &[], Aggregation::Count);
    register(std::slice::from_ref(&v)).expect("valid");
    record(&[M.m(1)], &TagMap::new());
    let first_start = view_data("test/unregister").expect("registered").start;
    assert!(unregister("test/unregister"));
    assert!(!unregister("test/unregister"), "already gone");
    assert!(view_data("test/unregister").is_none());
    assert!(!registered_views().iter().any(|d| d.name == "test/unregister"));
    record(&[M.m(1)], &TagMap::new());

    register(&[v]).expect("valid");
    record(&[M.m(1)], &TagMap::new());
    let data = view_data("test/unregister").expect("registered");
    assert_eq!(data.rows[0].data, AggregationData::Count(1), "only the record after re-registration");
    assert!(data.start >= first_start);
}

#[test]
fn context_tags_fill_keys_the_record_does_not_set() {
    static M: Int64Measure = Int64Measure::new("test/context_tags", "n", "1");
    register(&[view("test/context_tags", &M, &[ROUTE, METHOD], Aggregation::Count)]).expect("valid");
    with_tags_sync(TagMap::new().with(ROUTE, "/users/{id}").with(METHOD, "CONTEXT"), || {
        record_with_tags(&[M.m(1)], &[(&METHOD, "GET")]);
        record(&[M.m(1)], &TagMap::new());
    });
    assert_eq!(
        rows("test/context_tags"),
        vec![
            (tags(&["/users/{id}", "CONTEXT"]), AggregationData::Count(1)),
            (tags(&["/users/{id}", "GET"]), AggregationData::Count(1)),
        ]
    );
}

#[test]
fn invalid_tag_values_are_recorded_fixed_and_counted() {
    static M: Int64Measure = Int64Measure::new("test/invalid_values", "n", "1");
    register(&[view("test/invalid_values", &M, &[ROUTE], Aggregation::Count)]).expect("valid");
    let before = health::invalid_tag_values();
    for _ in 0..3 {
        record_with_tags(&[M.m(1)], &[(&ROUTE, "/caf\u{e9}\n")]);
    }
    record_with_tags(&[M.m(1)], &[(&ROUTE, "/caf__")]);
    assert!(health::invalid_tag_values() >= before + 3);
    assert_eq!(rows("test/invalid_values"), vec![(tags(&["/caf__"]), AggregationData::Count(4))]);
}

#[test]
fn snapshot_lists_every_view_including_empty_ones() {
    static M: Int64Measure = Int64Measure::new("test/snapshot", "n", "1");
    register(&[view("test/snapshot", &M, &[], Aggregation::Count)]).expect("valid");
    let report = snapshot();
    let data = report.iter().find(|d| d.view.name == "test/snapshot").expect("listed");
    assert!(data.rows.is_empty());
    assert!(data.end >= data.start);
    assert_eq!(data.view.measure, M.descriptor());
}

struct Panics;

impl Exporter for Panics {
    fn name(&self) -> &'static str {
        "test-panics"
    }
    fn export_stats(&self, _: &StatsReport) {
        panic!("exporter bug");
    }
}

#[tokio::test(start_paused = true)]
async fn reporting_loop_reports_each_period_and_once_more_on_stop() {
    static M: Int64Measure = Int64Measure::new("test/reporting_loop", "n", "1");
    register(&[view("test/reporting_loop", &M, &[], Aggregation::Sum)]).expect("valid");
    let reports = Arc::new(InMemoryExporter::new());
    let exporters: Vec<Arc<dyn Exporter>> = vec![reports.clone(), Arc::new(Panics)];
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(reporting_loop(Duration::from_millis(50), exporters, async {
        let _ = stop_rx.await;
    }));
    let sum = |r: &StatsReport| {
        r.iter()
            .find(|d| d.view.name == "test/reporting_loop")
            .and_then(|d| d.rows.first())
            .map(|row| row.data.clone())
    };

    record(&[M.m(5)], &TagMap::new());
    tokio::time::sleep(Duration::from_millis(49)).await;
    assert!(reports.reports().is_empty(), "nothing before the first period");
    tokio::time::sleep(Duration::from_millis(2)).await;
    record(&[M.m(2)], &TagMap::new());
    tokio::time::sleep(Duration::from_millis(50)).await;
    {
        let got = reports.reports();
        assert_eq!(got.len(), 2);
        assert_eq!(sum(&got[0]), Some(AggregationData::SumInt64(5)));
        assert_eq!(sum(&got[1]), Some(AggregationData::SumInt64(7)), "cumulative");
    }
    record(&[M.m(1)], &TagMap::new());
    stop_tx.send(()).expect("loop running");
    task.await.expect("loop ends");
    let got = reports.reports();
    assert_eq!(got.len(), 3, "a last report on stop");
    assert_eq!(sum(&got[2]), Some(AggregationData::SumInt64(8)));
    // The panicking exporter did not stop the loop, and its failures went to the health view if registered.
    assert!(reports.view_data("test/reporting_loop").is_some());
}

/// Records `(route, status, latency)` through a test shape, as the layers record.
fn record_shape(shape: &'static record::Shape<2, 2>, route: &str, status: &str, latency: f64) {
    record::record_shaped(shape, [Value::Int(1), Value::Float(latency)], [route, status]);
}

#[test]
fn shaped_records_land_where_general_records_do_through_repeats_switches_and_new_views() {
    static N: Int64Measure = Int64Measure::new("test/shaped/n", "n", "1");
    static L: Float64Measure = Float64Measure::new("test/shaped/latency", "ms", "ms");
    static KEYS: [TagKey; 2] = [ROUTE, STATUS];
    static SHAPE: record::Shape<2, 2> = record::Shape::new(0, [&N.core, &L.core], &KEYS);
    register(&[
        view("test/shaped/count", &N, &[ROUTE, STATUS], Aggregation::Count),
        view("test/shaped/latency", &L, &[STATUS], Aggregation::distribution(&[10.0])),
    ])
    .expect("valid views");
    // Repeats take the shortcut; a switch of either value, or back, must not reuse the last cells.
    for (route, status) in [("/a", "200"), ("/a", "200"), ("/b", "200"), ("/a", "200"), ("/a", "500")] {
        record_shape(&SHAPE, route, status, 5.0);
    }
    // A non-finite value is dropped and counted by the general path, the finite one beside it recorded.
    let invalid_before = health::invalid_measurements();
    record_shape(&SHAPE, "/a", "500", f64::NAN);
    // At least: tests running beside this one count theirs too.
    assert!(health::invalid_measurements() > invalid_before, "the NaN is counted");
    // A view registered after the shortcut was made receives the next repeat.
    register(&[view("test/shaped/late", &N, &[ROUTE], Aggregation::Sum)]).expect("valid view");
    record_shape(&SHAPE, "/a", "500", 20.0);

    assert_eq!(
        rows("test/shaped/count"),
        vec![
            (tags(&["/a", "200"]), AggregationData::Count(3)),
            (tags(&["/a", "500"]), AggregationData::Count(3)),
            (tags(&["/b", "200"]), AggregationData::Count(1)),
        ]
    );
    let latency = rows("test/shaped/latency");
    let counts: Vec<(Vec<Option<String>>, i64, Vec<i64>)> = latency
        .iter()
        .map(|(t, d)| (t.clone(), distribution(d).count, distribution(d).bucket_counts.clone()))
        .collect();
    assert_eq!(counts, vec![(tags(&["200"]), 4, vec![4, 0]), (tags(&["500"]), 2, vec![1, 1])]);
    assert_eq!(rows("test/shaped/late"), vec![(tags(&["/a"]), AggregationData::SumInt64(1))]);
}

#[test]
fn shaped_records_split_by_context_tags_when_a_view_asks_for_them() {
    static N: Int64Measure = Int64Measure::new("test/shaped_context/n", "n", "1");
    static L: Float64Measure = Float64Measure::new("test/shaped_context/latency", "ms", "ms");
    static KEYS: [TagKey; 2] = [ROUTE, STATUS];
    static SHAPE: record::Shape<2, 2> = record::Shape::new(1, [&N.core, &L.core], &KEYS);
    register(&[view("test/shaped_context/by_method", &N, &[ROUTE, METHOD], Aggregation::Count)])
        .expect("valid view");
    // The shape's values repeat, the method from the context does not: each record needs its own row.
    for method in ["GET", "GET", "POST", "GET"] {
        with_tags_sync(TagMap::new().with(METHOD, method), || record_shape(&SHAPE, "/a", "200", 1.0));
    }
    record_shape(&SHAPE, "/a", "200", 1.0);
    assert_eq!(
        rows("test/shaped_context/by_method"),
        vec![
            (vec![Some("/a".to_owned()), None], AggregationData::Count(1)),
            (tags(&["/a", "GET"]), AggregationData::Count(3)),
            (tags(&["/a", "POST"]), AggregationData::Count(1)),
        ]
    );
}

#[test]
fn two_shapes_given_one_slot_keep_their_records_apart() {
    static A: Int64Measure = Int64Measure::new("test/shared_slot/a", "a", "1");
    static B: Int64Measure = Int64Measure::new("test/shared_slot/b", "b", "1");
    static LA: Float64Measure = Float64Measure::new("test/shared_slot/la", "ms", "ms");
    static LB: Float64Measure = Float64Measure::new("test/shared_slot/lb", "ms", "ms");
    static KEYS: [TagKey; 2] = [ROUTE, STATUS];
    static SHAPE_A: record::Shape<2, 2> = record::Shape::new(2, [&A.core, &LA.core], &KEYS);
    static SHAPE_B: record::Shape<2, 2> = record::Shape::new(2, [&B.core, &LB.core], &KEYS);
    register(&[
        view("test/shared_slot/a", &A, &[ROUTE], Aggregation::Count),
        view("test/shared_slot/b", &B, &[ROUTE], Aggregation::Count),
    ])
    .expect("valid views");
    // The same tag values through both shapes, interleaved and repeated: a shortcut made for one shape must
    // never write the other's records into its cells.
    for _ in 0..20 {
        record_shape(&SHAPE_A, "/a", "200", 1.0);
        record_shape(&SHAPE_A, "/a", "200", 1.0);
        record_shape(&SHAPE_B, "/a", "200", 1.0);
    }
    assert_eq!(rows("test/shared_slot/a"), vec![(tags(&["/a"]), AggregationData::Count(40))]);
    assert_eq!(rows("test/shared_slot/b"), vec![(tags(&["/a"]), AggregationData::Count(20))]);
}

#[test]
fn shaped_records_alternating_between_two_tag_sets_or_rotating_among_three_land_in_their_own_rows() {
    static N: Int64Measure = Int64Measure::new("test/shaped_ways/n", "n", "1");
    static L: Float64Measure = Float64Measure::new("test/shaped_ways/latency", "ms", "ms");
    static KEYS: [TagKey; 2] = [ROUTE, STATUS];
    static SHAPE: record::Shape<2, 2> = record::Shape::new(1, [&N.core, &L.core], &KEYS);
    register(&[
        view("test/shaped_ways/count", &N, &[ROUTE, STATUS], Aggregation::Count),
        view("test/shaped_ways/latency", &L, &[ROUTE], Aggregation::Sum),
    ])
    .expect("valid views");
    // Two tag sets in turn, as a pipe's two backend calls record: each set keeps a shortcut of its own.
    for _ in 0..20 {
        record_shape_static(&SHAPE, "/users", "200", 1.0);
        record_shape_static(&SHAPE, "/orders", "200", 2.0);
    }
    // Three in turn, more than the shortcuts hold: they are remade every few misses and never record one
    // set's values into another's cells.
    for _ in 0..20 {
        record_shape(&SHAPE, "/users", "200", 1.0);
        record_shape(&SHAPE, "/orders", "200", 2.0);
        record_shape(&SHAPE, "/orders", "503", 4.0);
    }
    assert_eq!(
        rows("test/shaped_ways/count"),
        vec![
            (tags(&["/orders", "200"]), AggregationData::Count(40)),
            (tags(&["/orders", "503"]), AggregationData::Count(20)),
            (tags(&["/users", "200"]), AggregationData::Count(40)),
        ]
    );
    assert_eq!(
        rows("test/shaped_ways/latency"),
        vec![
            (tags(&["/orders"]), AggregationData::SumFloat64(40.0 * 2.0 + 20.0 * 4.0)),
            (tags(&["/users"]), AggregationData::SumFloat64(40.0)),
        ]
    );
}

/// [`record_shape`] with `&'static str` tags, as the layers' annotated calls record.
fn record_shape_static(
    shape: &'static record::Shape<2, 2>,
    route: &'static str,
    status: &'static str,
    latency: f64,
) {
    record::record_shaped_static(shape, [Value::Int(1), Value::Float(latency)], [route, status]);
}

#[test]
fn static_records_match_by_text_wherever_it_lives_and_mix_with_borrowed_ones() {
    static N: Int64Measure = Int64Measure::new("test/shaped_static/n", "n", "1");
    static L: Float64Measure = Float64Measure::new("test/shaped_static/latency", "ms", "ms");
    static KEYS: [TagKey; 2] = [ROUTE, STATUS];
    static SHAPE: record::Shape<2, 2> = record::Shape::new(0, [&N.core, &L.core], &KEYS);
    register(&[
        view("test/shaped_static/count", &N, &[ROUTE, STATUS], Aggregation::Count),
        view("test/shaped_static/latency", &L, &[ROUTE], Aggregation::distribution(&[10.0])),
    ])
    .expect("valid views");
    // The same text at another address (the shortcut learns it), a prefix of it at the same address
    // (same start, shorter: another value), and borrowed values that make and reuse the shortcut.
    let elsewhere: &'static str = Box::leak(String::from("/a").into_boxed_str());
    let prefix: &'static str = &elsewhere[..1];
    let mut borrowed = String::from("/a");
    for _ in 0..3 {
        record_shape_static(&SHAPE, "/a", "200", 1.0);
        record_shape_static(&SHAPE, elsewhere, "200", 1.0);
        record_shape_static(&SHAPE, prefix, "200", 1.0);
        record_shape(&SHAPE, &borrowed, "200", 20.0);
        record_shape_static(&SHAPE, "/a", "200", 20.0);
    }
    // A borrowed buffer rewritten in place: same address and length, other bytes.
    borrowed.replace_range(.., "/b");
    record_shape(&SHAPE, &borrowed, "200", 1.0);
    record_shape_static(&SHAPE, "/a", "200", 1.0);

    assert_eq!(
        rows("test/shaped_static/count"),
        vec![
            (tags(&["/", "200"]), AggregationData::Count(3)),
            (tags(&["/a", "200"]), AggregationData::Count(13)),
            (tags(&["/b", "200"]), AggregationData::Count(1)),
        ]
    );
    let latency = rows("test/shaped_static/latency");
    let buckets: Vec<(Vec<Option<String>>, Vec<i64>)> =
        latency.iter().map(|(t, d)| (t.clone(), distribution(d).bucket_counts.clone())).collect();
    assert_eq!(
        buckets,
        vec![(tags(&["/"]), vec![3, 0]), (tags(&["/a"]), vec![7, 6]), (tags(&["/b"]), vec![1, 0])]
    );
}

#[test]
fn shortcut_records_into_fixed_rows_count_every_fix_and_long_values_still_record() {
    static N: Int64Measure = Int64Measure::new("test/shaped_fixed/n", "n", "1");
    static L: Float64Measure = Float64Measure::new("test/shaped_fixed/latency", "ms", "ms");
    static KEYS: [TagKey; 2] = [ROUTE, STATUS];
    static SHAPE: record::Shape<2, 2> = record::Shape::new(1, [&N.core, &L.core], &KEYS);
    register(&[
        view("test/shaped_fixed/count", &N, &[ROUTE], Aggregation::Count),
        view("test/shaped_fixed/latency", &L, &[ROUTE], Aggregation::distribution(&[10.0])),
    ])
    .expect("valid views");
    // An invalid value (fixed, one fix per view) repeated: the repeats take the shortcut and count too.
    let before = health::invalid_tag_values();
    for _ in 0..5 {
        record_shape_static(&SHAPE, "/caf\u{e9}", "200", 1.0);
    }
    assert!(health::invalid_tag_values() >= before + 10, "two fixed cells, five records");
    // A value longer than any kept one (the shortcut keeps room for valid values only) is cut and recorded.
    let long: &'static str = Box::leak("/x".repeat(200).into_boxed_str());
    for _ in 0..3 {
        record_shape_static(&SHAPE, long, "200", 1.0);
        record_shape(&SHAPE, long, "200", 1.0);
    }
    let cut = &long[..MAX_TAG_LEN];
    assert_eq!(
        rows("test/shaped_fixed/count"),
        vec![(tags(&["/caf_"]), AggregationData::Count(5)), (tags(&[cut]), AggregationData::Count(6))]
    );
}
