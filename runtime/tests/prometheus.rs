//! The Prometheus exporter over real HTTP: scrapes parsed by real exposition parsers (`openmetrics-parser`,
//! strict about escapes and histogram rules, and `prometheus-parse`, what many Rust tools use).

mod http_support;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime};

use http_support::{BackgroundRuntime, get, request};
use oclayer_runtime::Error;
use oclayer_runtime::config::PrometheusConfig;
use oclayer_runtime::export::{Exporter, PrometheusExporter, StatsReport};
use oclayer_runtime::stats::{
    Aggregation, AggregationData, DistributionData, MeasureDescriptor, MeasureKind, Row, ViewData,
    ViewDescriptor,
};
use openmetrics_parser::{
    MetricsExposition, OpenMetricsType, OpenMetricsValue, PrometheusType, PrometheusValue,
};

const LATENCY_MS: [f64; 34] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0, 65.0, 80.0, 100.0,
    130.0, 160.0, 200.0, 250.0, 300.0, 400.0, 500.0, 650.0, 800.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0,
    50000.0, 100000.0,
];
const SIZE_BYTES: [f64; 13] = [
    1024.0,
    2048.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// What Prometheus 2.x sends.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
    version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn view(
    name: &str,
    description: &str,
    unit: &str,
    aggregation: Aggregation,
    keys: &[&str],
    rows: Vec<Row>,
) -> ViewData {
    ViewData {
        view: Arc::new(ViewDescriptor {
            name: Cow::Owned(name.to_owned()),
            description: Cow::Owned(description.to_owned()),
            measure: MeasureDescriptor {
                name: Cow::Owned(format!("{name}/measure")),
                description: Cow::Borrowed(""),
                unit: Cow::Owned(unit.to_owned()),
                kind: MeasureKind::Float64,
            },
            tag_keys: keys.iter().map(|k| Cow::Owned(k.to_string())).collect(),
            aggregation,
        }),
        start: SystemTime::UNIX_EPOCH,
        end: SystemTime::now(),
        rows,
    }
}

fn row(tags: &[Option<&str>], data: AggregationData) -> Row {
    Row { tags: tags.iter().map(|t| t.map(Arc::from)).collect(), data }
}

/// A distribution with the given per-bucket counts (not cumulative) and sum.
fn distribution(bucket_counts: Vec<i64>, sum: f64) -> AggregationData {
    let count = bucket_counts.iter().sum();
    AggregationData::Distribution(DistributionData {
        count,
        sum,
        sum_of_squared_deviation: 0.0,
        min: 0.0,
        max: 0.0,
        bucket_counts,
    })
}

/// The views of a gateway that served a few requests, as the router layer records them.
fn gateway_report() -> StatsReport {
    let mut latency = vec![0; LATENCY_MS.len() + 1];
    latency[0] = 2; // < 1 ms
    latency[7] = 3; // [8, 10) ms
    latency[34] = 1; // >= 100 s
    let mut bytes = vec![0; SIZE_BYTES.len() + 1];
    bytes[1] = 4;
    vec![
        view(
            "opencensus.io/http/server/request_count",
            "Count of HTTP requests started",
            "1",
            Aggregation::Count,
            &["http_server_route", "http.method"],
            vec![
                row(&[Some("/users/{id}"), Some("GET")], AggregationData::Count(5)),
                row(&[Some("/orders"), Some("POST")], AggregationData::Count(1)),
            ],
        ),
        view(
            "opencensus.io/http/server/latency",
            "Latency distribution of HTTP requests",
            "ms",
            Aggregation::Distribution { bounds: Arc::from(&LATENCY_MS[..]) },
            &["http_server_route"],
            vec![row(&[Some("/users/{id}")], distribution(latency, 100_123.5))],
        ),
        view(
            "opencensus.io/http/server/response_bytes",
            "Size distribution of HTTP response body",
            "By",
            Aggregation::Distribution { bounds: Arc::from(&SIZE_BYTES[..]) },
            &[],
            vec![row(&[], distribution(bytes, 6000.0))],
        ),
        view(
            "oclayer.io/example/bytes_sum",
            "Bytes in total",
            "By",
            Aggregation::Sum,
            &["http.status"],
            vec![row(&[Some("200")], AggregationData::SumFloat64(1536.25))],
        ),
        view(
            "oclayer.io/example/queue_depth",
            "Items waiting",
            "1",
            Aggregation::LastValue,
            &[],
            vec![row(&[], AggregationData::LastValueInt64(-3))],
        ),
        view(
            "oclayer.io/pipe/request_count",
            "Pipe requests",
            "1",
            Aggregation::Count,
            &["endpoint"],
            vec![],
        ),
    ]
    .into()
}

fn start(
    config: PrometheusConfig,
    runtime: &BackgroundRuntime,
    report: StatsReport,
) -> Arc<PrometheusExporter> {
    PrometheusExporter::start_with_source(&config, runtime.handle(), move || Arc::clone(&report))
        .expect("the exporter starts on a free port")
}

fn local_config(namespace: &str) -> PrometheusConfig {
    PrometheusConfig::new(0).with_listen_address(IpAddr::V4(Ipv4Addr::LOCALHOST)).with_namespace(namespace)
}

fn parse_text(body: &str) -> MetricsExposition<PrometheusType, PrometheusValue> {
    openmetrics_parser::prometheus::parse_prometheus(body)
        .unwrap_or_else(|error| panic!("the scrape must parse: {error}\n{body}"))
}

fn parse_openmetrics(body: &str) -> MetricsExposition<OpenMetricsType, OpenMetricsValue> {
    openmetrics_parser::openmetrics::parse_openmetrics(body)
        .unwrap_or_else(|error| panic!("the scrape must parse as OpenMetrics: {error}\n{body}"))
}

/// Cumulative, ending at `+Inf` with `_count`: what makes a histogram usable by `histogram_quantile`.
fn check_histogram(name: &str, value: &openmetrics_parser::HistogramValue) {
    let bounds: Vec<f64> = value.buckets.iter().map(|b| b.upper_bound).collect();
    assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{name}: bounds must increase: {bounds:?}");
    assert_eq!(bounds.last(), Some(&f64::INFINITY), "{name}: the last bucket must be +Inf");
    let counts: Vec<f64> = value.buckets.iter().map(|b| b.count.as_f64()).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{name}: buckets must be cumulative: {counts:?}");
    assert_eq!(
        value.count.map(|c| c as f64),
        counts.last().copied(),
        "{name}: _count must equal the +Inf bucket"
    );
}

#[test]
fn a_scrape_is_valid_text_format_with_every_family_described() {
    let runtime = BackgroundRuntime::start();
    let exporter = start(local_config("krakend"), &runtime, gateway_report());

    let response = get(exporter.local_addr(), "/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some(TEXT));
    let exposition = parse_text(&response.body);

    let expected: BTreeMap<&str, (PrometheusType, &str)> = [
        (
            "krakend_opencensus_io_http_server_request_count_total",
            (PrometheusType::Counter, "Count of HTTP requests started"),
        ),
        (
            "krakend_opencensus_io_http_server_latency",
            (PrometheusType::Histogram, "Latency distribution of HTTP requests"),
        ),
        (
            "krakend_opencensus_io_http_server_response_bytes",
            (PrometheusType::Histogram, "Size distribution of HTTP response body"),
        ),
        ("krakend_oclayer_io_example_bytes_sum_total", (PrometheusType::Counter, "Bytes in total")),
        ("krakend_oclayer_io_example_queue_depth", (PrometheusType::Gauge, "Items waiting")),
    ]
    .into_iter()
    .collect();
    let found: BTreeSet<&str> = exposition.families.keys().map(String::as_str).collect();
    assert_eq!(found, expected.keys().copied().collect::<BTreeSet<_>>());
    for (name, (kind, help)) in &expected {
        let family = &exposition.families[*name];
        assert_eq!(&family.family_type, kind, "{name}: # TYPE");
        assert_eq!(family.help, *help, "{name}: # HELP");
    }
    for name in expected.keys() {
        assert!(response.body.contains(&format!("# HELP {name} ")), "{name} has no HELP line");
        assert!(response.body.contains(&format!("# TYPE {name} ")), "{name} has no TYPE line");
    }
    // A view without rows has no series, so no family (as in the Go exporter).
    assert!(!response.body.contains("pipe_request_count"), "{}", response.body);

    let requests = &exposition.families["krakend_opencensus_io_http_server_request_count_total"];
    let label_names: BTreeSet<&str> = requests.get_label_names().iter().map(String::as_str).collect();
    assert_eq!(label_names, BTreeSet::from(["http_server_route", "http_method"]));
    let mut counts = BTreeMap::new();
    for sample in requests.iter_samples() {
        let labels = sample.get_labelset().expect("labels");
        let PrometheusValue::Counter(counter) = &sample.value else { panic!("a counter sample") };
        let route = labels.get_label_value("http_server_route").expect("route").to_owned();
        counts.insert(
            (route, labels.get_label_value("http_method").expect("method").to_owned()),
            counter.value.as_f64(),
        );
    }
    assert_eq!(
        counts,
        BTreeMap::from([
            (("/orders".to_owned(), "POST".to_owned()), 1.0),
            (("/users/{id}".to_owned(), "GET".to_owned()), 5.0)
        ])
    );

    let latency = &exposition.families["krakend_opencensus_io_http_server_latency"];
    let sample = latency.iter_samples().next().expect("one latency row");
    let PrometheusValue::Histogram(histogram) = &sample.value else { panic!("a histogram sample") };
    check_histogram("latency", histogram);
    assert_eq!(histogram.buckets.len(), LATENCY_MS.len() + 1);
    assert_eq!(histogram.buckets[0].count.as_f64(), 2.0);
    assert_eq!(histogram.buckets[7].count.as_f64(), 5.0, "cumulative: 2 below 1 ms and 3 in [8, 10) ms");
    assert_eq!(histogram.count, Some(6));
    assert_eq!(histogram.sum.map(|s| s.as_f64()), Some(100_123.5));

    let bytes = &exposition.families["krakend_opencensus_io_http_server_response_bytes"];
    let PrometheusValue::Histogram(histogram) = &bytes.iter_samples().next().expect("one row").value else {
        panic!("a histogram sample")
    };
    check_histogram("response_bytes", histogram);
    // Integers without exponent, as Prometheus users read `le` values.
    assert!(
        response
            .body
            .contains("krakend_opencensus_io_http_server_response_bytes_bucket{le=\"4294967296\"} 4\n")
    );

    let gauge = &exposition.families["krakend_oclayer_io_example_queue_depth"];
    let PrometheusValue::Gauge(depth) = gauge.iter_samples().next().expect("one row").value else {
        panic!("a gauge")
    };
    assert_eq!(depth.as_f64(), -3.0);
    let sum = &exposition.families["krakend_oclayer_io_example_bytes_sum_total"];
    let PrometheusValue::Counter(total) = &sum.iter_samples().next().expect("one row").value else {
        panic!("a counter")
    };
    assert_eq!(total.value.as_f64(), 1536.25);

    // prometheus-parse, the other parser Rust tools use, reads the same values. (It splits labels on `}`,
    // so it skips the rows with route `/users/{id}`: checked on the unlabelled histogram.)
    let scrape =
        prometheus_parse::Scrape::parse(response.body.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    for name in expected.keys() {
        assert!(scrape.docs.contains_key(*name), "prometheus-parse finds no HELP for {name}");
    }
    let bytes = scrape
        .samples
        .iter()
        .find(|s| s.metric == "krakend_opencensus_io_http_server_response_bytes")
        .expect("the histogram");
    let prometheus_parse::Value::Histogram(buckets) = &bytes.value else { panic!("a histogram") };
    assert_eq!(buckets.len(), SIZE_BYTES.len() + 1);
    assert_eq!(buckets[1].count, 4.0);
    assert_eq!(buckets.last().map(|b| (b.less_than, b.count)), Some((f64::INFINITY, 4.0)));
    let count =
        scrape.samples.iter().find(|s| s.metric == "krakend_opencensus_io_http_server_response_bytes_count");
    assert_eq!(count.map(|s| &s.value), Some(&prometheus_parse::Value::Untyped(4.0)));
}

#[test]
fn hostile_label_values_and_help_are_escaped_and_read_back() {
    let hostile = [
        "quote\"inside",
        "back\\slash",
        "new\nline",
        "ünïcødé ✓ 日本語",
        "},{injected=\"1\"} 99\n# TYPE x counter",
        "le=\"1\",",
        "trailing\\",
        "",
    ];
    let rows = hostile
        .iter()
        .enumerate()
        .map(|(i, v)| row(&[Some(v)], AggregationData::Count(i as i64 + 1)))
        .collect();
    let help = "say \"hi\" \\ then\na new line";
    let report: StatsReport = vec![view("hostile", help, "1", Aggregation::Count, &["value"], rows)].into();
    let runtime = BackgroundRuntime::start();
    let exporter = start(local_config(""), &runtime, report);

    for accept in [None, Some(PROMETHEUS_ACCEPT)] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let response = request(exporter.local_addr(), "GET", "/metrics", &headers);
        assert_eq!(response.status, 200);
        let read_back: BTreeMap<String, f64> = if accept.is_none() {
            let exposition = parse_text(&response.body);
            let family = &exposition.families["hostile_total"];
            assert_eq!(family.help, help);
            family
                .iter_samples()
                .map(|s| {
                    let PrometheusValue::Counter(c) = &s.value else { panic!("a counter") };
                    (
                        s.get_labelset().expect("labels").get_label_value("value").expect("label").to_owned(),
                        c.value.as_f64(),
                    )
                })
                .collect()
        } else {
            let exposition = parse_openmetrics(&response.body);
            let family = &exposition.families["hostile"];
            assert_eq!(family.help, help);
            family
                .iter_samples()
                .map(|s| {
                    let OpenMetricsValue::Counter(c) = &s.value else { panic!("a counter") };
                    (
                        s.get_labelset().expect("labels").get_label_value("value").expect("label").to_owned(),
                        c.value.as_f64(),
                    )
                })
                .collect()
        };
        let fed: BTreeMap<String, f64> =
            hostile.iter().enumerate().map(|(i, v)| (v.to_string(), i as f64 + 1.0)).collect();
        assert_eq!(read_back, fed, "every value reads back as it was recorded");
    }
}

#[test]
fn openmetrics_when_the_scraper_asks_for_it() {
    let runtime = BackgroundRuntime::start();
    let exporter = start(local_config("krakend"), &runtime, gateway_report());
    let response = request(exporter.local_addr(), "GET", "/metrics", &[("Accept", PROMETHEUS_ACCEPT)]);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some(OPENMETRICS));
    assert!(response.body.ends_with("# EOF\n"));
    // The unit, where the name ends with it as OpenMetrics requires; sizes are recorded in bytes.
    let unit_line = "# UNIT krakend_opencensus_io_http_server_response_bytes bytes\n";
    assert!(response.body.contains(unit_line), "{}", response.body);
    assert_eq!(response.body.matches("# UNIT ").count(), 1, "no other name ends with its unit");
    // openmetrics-parser refuses units on histograms, which OpenMetrics 1.0 allows (only info and stateset
    // families must have none) and Prometheus reads; it checks everything else.
    let exposition = parse_openmetrics(&response.body.replace(unit_line, ""));

    // Counter families are named without `_total`; their samples carry it, so the series Prometheus stores
    // are the same in both formats.
    let requests = &exposition.families["krakend_opencensus_io_http_server_request_count"];
    assert_eq!(requests.family_type, OpenMetricsType::Counter);
    assert!(response.body.contains(
        "krakend_opencensus_io_http_server_request_count_total{http_server_route=\"/orders\",http_method=\"POST\"} 1\n"
    ));
    let latency = &exposition.families["krakend_opencensus_io_http_server_latency"];
    assert_eq!(latency.family_type, OpenMetricsType::Histogram);
    let OpenMetricsValue::Histogram(histogram) = &latency.iter_samples().next().expect("one row").value
    else {
        panic!("a histogram")
    };
    check_histogram("latency", histogram);
    assert!(response.body.contains("_bucket{http_server_route=\"/users/{id}\",le=\"1.0\"} 2\n"));
    assert!(exposition.families.values().all(|f| !f.help.is_empty()), "every family has HELP");
}

#[test]
fn legacy_names_are_the_go_exporters_in_every_case() {
    let runtime = BackgroundRuntime::start();
    let exporter = start(local_config("krakend").with_legacy_names(true), &runtime, gateway_report());
    // Even when OpenMetrics is preferred: it would put `_total` back on counter samples.
    for headers in [vec![], vec![("Accept", PROMETHEUS_ACCEPT)]] {
        let response = request(exporter.local_addr(), "GET", "/metrics", &headers);
        assert_eq!(response.header("content-type"), Some(TEXT));
        let exposition = parse_text(&response.body);
        let names: BTreeSet<&str> = exposition.families.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            BTreeSet::from([
                "krakend_opencensus_io_http_server_request_count",
                "krakend_opencensus_io_http_server_latency",
                "krakend_opencensus_io_http_server_response_bytes",
                "krakend_oclayer_io_example_bytes_sum",
                "krakend_oclayer_io_example_queue_depth",
            ])
        );
        assert_eq!(
            exposition.families["krakend_opencensus_io_http_server_request_count"].family_type,
            PrometheusType::Counter
        );
    }
}

#[test]
fn every_scrape_reads_a_fresh_snapshot() {
    let runtime = BackgroundRuntime::start();
    let recorded = Arc::new(AtomicI64::new(0));
    let source_count = Arc::clone(&recorded);
    let config = local_config("");
    let exporter = PrometheusExporter::start_with_source(&config, runtime.handle(), move || {
        let count = source_count.load(Ordering::SeqCst);
        vec![view(
            "hits",
            "Hits",
            "1",
            Aggregation::Count,
            &[],
            vec![row(&[], AggregationData::Count(count))],
        )]
        .into()
    })
    .expect("starts");
    let value = || {
        let exposition = parse_text(&get(exporter.local_addr(), "/metrics").body);
        let sample = exposition.families["hits_total"].iter_samples().next().map(|s| s.value.clone());
        let Some(PrometheusValue::Counter(counter)) = sample else { panic!("a counter") };
        counter.value.as_f64()
    };
    recorded.store(7, Ordering::SeqCst);
    assert_eq!(value(), 7.0);
    recorded.store(9, Ordering::SeqCst);
    assert_eq!(value(), 9.0);
}

#[test]
fn only_get_and_head_on_metrics() {
    let runtime = BackgroundRuntime::start();
    let exporter = start(local_config("krakend"), &runtime, gateway_report());
    let addr = exporter.local_addr();

    let full = get(addr, "/metrics");
    let head = request(addr, "HEAD", "/metrics", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some(TEXT));
    assert_eq!(head.header("content-length"), Some(full.body.len().to_string().as_str()));
    assert_eq!(head.body, "", "HEAD sends no body");

    assert_eq!(get(addr, "/metrics?debug=1").status, 200, "a query string is ignored");
    assert_eq!(get(addr, "/").status, 404);
    assert_eq!(get(addr, "/metrics/").status, 404);
    assert_eq!(get(addr, "/debug/tracez").status, 404);
    for method in ["POST", "PUT", "DELETE"] {
        let response = request(addr, method, "/metrics", &[("Content-Length", "0")]);
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("GET, HEAD"));
    }
}

#[test]
fn a_taken_port_fails_with_the_address_and_the_config_key() {
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    let port = taken.local_addr().expect("bound").port();
    let runtime = BackgroundRuntime::start();
    let config = PrometheusConfig::new(port).with_listen_address(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let error = PrometheusExporter::start_with_source(&config, runtime.handle(), || Vec::new().into())
        .expect_err("the port is taken");
    let Error::Listen { address, path, .. } = &error else { panic!("a Listen error, got {error:?}") };
    assert_eq!(*address, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    assert_eq!(path, r#"extra_config."telemetry/opencensus".exporters.prometheus.port"#);
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("exporters.prometheus.port"), "{message}");
}

#[test]
fn shutdown_frees_the_port() {
    let runtime = BackgroundRuntime::start();
    let exporter = start(local_config(""), &runtime, Vec::new().into());
    let addr = exporter.local_addr();
    assert_eq!(get(addr, "/metrics").status, 200);
    BackgroundRuntime::block_on_elsewhere(exporter.shutdown(Instant::now())).expect("shuts down");
    std::net::TcpListener::bind(addr).expect("the port is free again after shutdown");
}
