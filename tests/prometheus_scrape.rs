//! Prometheus through the facade, as a gateway uses it: `init` with a `prometheus` exporter serves
//! `/metrics`, what the router layer records shows up in the next scrape, a taken port fails `init` with
//! an error naming the address and the setting, and shutdown frees the port.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use oclayer::Config;
use oclayer::config::PrometheusConfig;
use openmetrics_parser::{OpenMetricsValue, PrometheusValue};

fn config(port: u16) -> Config {
    let prometheus = PrometheusConfig::new(port)
        .with_listen_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .with_namespace("krakend");
    Config::builder().prometheus(prometheus).build().expect("a valid config")
}

/// A port nobody listens on right now (the config refuses port 0, so the test picks one).
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    listener.local_addr().expect("bound").port()
}

/// `GET /metrics` over a plain socket; returns the content type and the body.
fn scrape(addr: SocketAddr, accept: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("the exporter accepts connections");
    // A safety net so a broken server fails the test instead of hanging it; nothing is timed.
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout set");
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("request written");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a UTF-8 response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let content_type = head
        .lines()
        .find_map(|line| line.strip_prefix("content-type: ").or_else(|| line.strip_prefix("Content-Type: ")))
        .expect("a content type");
    (content_type.to_owned(), body.to_owned())
}

#[tokio::test]
async fn init_serves_what_the_router_layer_records() {
    // A taken port fails `init` itself, naming the address and the setting to change.
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    let taken_port = taken.local_addr().expect("bound").port();
    let error = oclayer::init(config(taken_port)).expect_err("the port is taken");
    let message = error.to_string();
    assert!(matches!(error, oclayer::Error::Listen { .. }), "{error:?}");
    assert!(message.contains(&format!("127.0.0.1:{taken_port}")), "{message}");
    assert!(message.contains("exporters.prometheus.port"), "{message}");
    drop(taken);

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let telemetry = oclayer::init(config(addr.port())).expect("the pipeline starts");
    oclayer::layer::record_router("/users/{id}", "GET", 200, 120, 2048, Duration::from_millis(12));
    oclayer::layer::record_router("/users/{id}", "GET", 200, 80, 1024, Duration::from_millis(3));
    oclayer::layer::record_router("/users/{id}", "GET", 404, 0, 10, Duration::from_micros(500));

    let (content_type, body) = scrape(addr, "text/plain");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let exposition = openmetrics_parser::prometheus::parse_prometheus(&body)
        .unwrap_or_else(|error| panic!("the scrape parses: {error}\n{body}"));

    let requests = &exposition.families["krakend_opencensus_io_http_server_request_count_total"];
    let mut by_status: Vec<(String, String, String, f64)> = requests
        .iter_samples()
        .map(|sample| {
            let labels = sample.get_labelset().expect("labels");
            let label =
                |name: &str| labels.get_label_value(name).expect("every row has every label").to_owned();
            let PrometheusValue::Counter(counter) = &sample.value else { panic!("a counter") };
            (label("http_server_route"), label("http_method"), label("http_status"), counter.value.as_f64())
        })
        .collect();
    by_status.sort_by(|a, b| a.2.cmp(&b.2));
    let route = || "/users/{id}".to_owned();
    assert_eq!(
        by_status,
        vec![
            (route(), "GET".to_owned(), "200".to_owned(), 2.0),
            (route(), "GET".to_owned(), "404".to_owned(), 1.0)
        ]
    );

    let latency = &exposition.families["krakend_opencensus_io_http_server_latency"];
    let ok = latency
        .iter_samples()
        .find(|s| s.get_labelset().expect("labels").get_label_value("http_status") == Some("200"))
        .expect("the 200 row");
    let PrometheusValue::Histogram(histogram) = &ok.value else { panic!("a histogram") };
    assert_eq!(histogram.count, Some(2));
    assert_eq!(histogram.sum.map(|s| s.as_f64()), Some(15.0));
    let below =
        |bound: f64| histogram.buckets.iter().find(|b| b.upper_bound == bound).map(|b| b.count.as_f64());
    assert_eq!(below(3.0), Some(0.0), "3 ms is not below 3 ms");
    assert_eq!(below(4.0), Some(1.0));
    assert_eq!(below(13.0), Some(2.0));
    assert_eq!(below(f64::INFINITY), Some(2.0));

    // What Prometheus itself asks for: OpenMetrics, with the same series.
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
        version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (content_type, body) = scrape(addr, prometheus_accept);
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(body.ends_with("# EOF\n"));
    // openmetrics-parser refuses `# UNIT` on histograms, which OpenMetrics allows: checked apart.
    assert!(body.contains("# UNIT krakend_opencensus_io_http_server_response_bytes bytes\n"));
    let without_units: String =
        body.lines().filter(|l| !l.starts_with("# UNIT ")).map(|l| format!("{l}\n")).collect();
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&without_units)
        .unwrap_or_else(|error| panic!("the scrape parses as OpenMetrics: {error}\n{body}"));
    let requests = &exposition.families["krakend_opencensus_io_http_server_request_count"];
    let total: f64 = requests
        .iter_samples()
        .map(|s| match &s.value {
            OpenMetricsValue::Counter(counter) => counter.value.as_f64(),
            other => panic!("a counter, not {other:?}"),
        })
        .sum();
    assert_eq!(total, 3.0);

    telemetry.shutdown().await.expect("the pipeline shuts down");
    TcpListener::bind(addr).expect("the port is free again after shutdown");
}
