//! The `/debug` pages over real HTTP: what they show, how they link, and that nothing recorded by the
//! application can inject markup.

mod http_support;

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http_support::{BackgroundRuntime, get, request};
use oclayer_runtime::Error;
use oclayer_runtime::config::ZPagesConfig;
use oclayer_runtime::export::{Exporter, SpanBatch, StatsReport, ZPagesExporter};
use oclayer_runtime::stats::{
    Aggregation, AggregationData, DistributionData, MeasureDescriptor, MeasureKind, Row, ViewData,
    ViewDescriptor,
};
use oclayer_runtime::trace::{
    AttributeValue, Attributes, Parent, Sampler, SpanBuilder, SpanContext, SpanData, SpanId, SpanKind,
    Status, StatusCode, TimeEvent, TimeEventKind, TraceId, TraceState,
};

const HOSTILE: &str = "<script>alert(\"x\")</script>";

fn start(runtime: &BackgroundRuntime, report: StatsReport) -> Arc<ZPagesExporter> {
    let config = ZPagesConfig::new(0).with_listen_address(IpAddr::V4(Ipv4Addr::LOCALHOST));
    ZPagesExporter::start_with_source(&config, runtime.handle(), move || Arc::clone(&report))
        .expect("the pages start on a free port")
}

fn span(name: &str, micros: u64, code: StatusCode, seed: u8) -> SpanData {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_210_096);
    SpanData {
        context: SpanContext {
            trace_id: TraceId([seed; 16]),
            span_id: SpanId([seed.wrapping_add(1); 8]),
            sampled: true,
            tracestate: TraceState::default(),
        },
        parent_span_id: Some(SpanId([0xab; 8])),
        name: Cow::Owned(name.to_owned()),
        kind: SpanKind::Server,
        start_time: start,
        end_time: start + Duration::from_micros(micros),
        attributes: Attributes {
            entries: vec![
                (Cow::Borrowed("http.method"), AttributeValue::String(Cow::Borrowed("GET"))),
                (
                    Cow::Borrowed("http.status_code"),
                    AttributeValue::Int(if code == StatusCode::Ok { 200 } else { 503 }),
                ),
                (
                    Cow::Borrowed("note"),
                    AttributeValue::String(Cow::Borrowed("<img src=x onerror=alert(1)>")),
                ),
            ],
            dropped: 2,
        },
        time_events: vec![TimeEvent {
            time: start + Duration::from_micros(micros / 2),
            kind: TimeEventKind::Annotation {
                description: Cow::Borrowed("cache miss <b>"),
                attributes: Attributes {
                    entries: vec![(Cow::Borrowed("key"), AttributeValue::Bool(true))],
                    dropped: 0,
                },
            },
        }],
        dropped_annotations: 0,
        dropped_message_events: 0,
        links: Vec::new(),
        dropped_links: 0,
        status: Status {
            code,
            message: if code == StatusCode::Ok {
                Cow::Borrowed("")
            } else {
                Cow::Borrowed("upstream down & out")
            },
        },
        same_process_as_parent_span: Some(false),
        child_span_count: 2,
    }
}

fn export(exporter: &ZPagesExporter, spans: Vec<SpanData>) {
    let batch: SpanBatch = spans.into();
    exporter.export_spans(&batch);
}

fn html(addr: SocketAddr, target: &str) -> String {
    let response = get(addr, target);
    assert_eq!(response.status, 200, "{target}: {}", response.body);
    assert_eq!(response.header("content-type"), Some("text/html; charset=utf-8"));
    response.body
}

/// The text of the row of `name` in the summary table.
fn summary_row<'a>(page: &'a str, escaped_name: &str) -> &'a str {
    let start = page
        .find(&format!("<tr><td>{escaped_name}</td>"))
        .unwrap_or_else(|| panic!("no row for {escaped_name}"));
    let end = page[start..].find("</tr>").expect("the row ends") + start;
    &page[start..end]
}

#[test]
fn tracez_counts_by_latency_bucket_and_errors_and_links_to_samples() {
    let runtime = BackgroundRuntime::start();
    let exporter = start(&runtime, Vec::new().into());
    export(
        &exporter,
        vec![
            span("/users/{id}", 5, StatusCode::Ok, 1),           // [0, 10µs)
            span("/users/{id}", 2_500, StatusCode::Ok, 2),       // [1ms, 10ms)
            span("/users/{id}", 3_000, StatusCode::Ok, 3),       // [1ms, 10ms)
            span("/users/{id}", 200_000_000, StatusCode::Ok, 4), // [100s, ∞)
            span("/users/{id}", 7, StatusCode::Unavailable, 5),
            span("backend-/orders", 150_000, StatusCode::Ok, 6),
        ],
    );
    let page = html(exporter.local_addr(), "/debug/tracez");
    for label in [
        "&gt;0s",
        "&gt;10µs",
        "&gt;100µs",
        "&gt;1ms",
        "&gt;10ms",
        "&gt;100ms",
        "&gt;1s",
        "&gt;10s",
        "&gt;100s",
    ] {
        assert!(page.contains(&format!("<th>{label}</th>")), "no column {label}");
    }
    let row = summary_row(&page, "/users/{id}");
    let cells: Vec<&str> = row.split("<td").skip(1).collect();
    assert_eq!(cells.len(), 1 + 1 + 9 + 1, "name, running, 9 buckets, errors: {row}");
    let link = |selector: &str, count: u64| {
        format!("<a href=\"tracez?zspanname=%2Fusers%2F%7Bid%7D&amp;{selector}\">{count}</a>")
    };
    assert!(cells[2].contains(&link("ztype=1&amp;zlatencybucket=0", 1)), "{row}");
    assert!(cells[3].contains(">0<"), "{row}");
    assert!(cells[5].contains(&link("ztype=1&amp;zlatencybucket=3", 2)), "{row}");
    assert!(cells[10].contains(&link("ztype=1&amp;zlatencybucket=8", 1)), "{row}");
    assert!(cells[11].contains(&link("ztype=2", 1)), "{row}");
    assert!(summary_row(&page, "backend-/orders").contains("zlatencybucket=5\">1</a>"));
    // Without a source of running spans, the page says so instead of showing zeros.
    assert!(cells[1].contains("not tracked"), "{row}");
    assert!(page.contains("Running spans are not tracked"));
}

#[test]
fn samples_show_ids_times_attributes_annotations_and_status() {
    let runtime = BackgroundRuntime::start();
    let exporter = start(&runtime, Vec::new().into());
    let spans = (0..7u8).map(|i| span("/users/{id}", 2_000 + u64::from(i), StatusCode::Ok, 10 + i)).collect();
    export(&exporter, spans);
    export(&exporter, vec![span("/users/{id}", 40, StatusCode::Unavailable, 99)]);
    let addr = exporter.local_addr();

    let page = html(addr, "/debug/tracez?zspanname=%2Fusers%2F%7Bid%7D&ztype=1&zlatencybucket=3");
    assert!(page.contains("<h2>/users/{id}: latency &gt;1ms</h2>"), "{page}");
    // The 5 most recent of 7, newest first.
    assert_eq!(page.matches("<th>Trace ID</th>").count(), 5);
    let newest = TraceId([16; 16]).to_string();
    let oldest_kept = TraceId([12; 16]).to_string();
    let dropped = TraceId([11; 16]).to_string();
    assert!(page.find(&newest).expect("newest kept") < page.find(&oldest_kept).expect("fifth kept"));
    assert!(!page.contains(&dropped), "older samples are replaced");
    assert!(page.contains("<code>abababababababab</code> (remote)"), "the remote parent");
    assert!(page.contains("2024-02-29T12:34:56.000000Z"), "the start time");
    assert!(page.contains("2.006ms"), "the duration");
    assert!(page.contains("http.method=&quot;GET&quot;, http.status_code=200"), "attributes");
    assert!(page.contains("(2 dropped)"), "dropped attributes are counted");
    assert!(page.contains("+1.003ms cache miss &lt;b&gt; (key=true)"), "the annotation at its offset");
    assert!(page.contains("<tr><th>Kind</th><td>server</td></tr>"));
    assert!(page.contains("<tr><th>Children</th><td>2</td></tr>"));

    let errors = html(addr, "/debug/tracez?zspanname=%2Fusers%2F%7Bid%7D&ztype=2");
    assert_eq!(errors.matches("<th>Trace ID</th>").count(), 1);
    assert!(errors.contains("UNAVAILABLE: upstream down &amp; out"), "{errors}");

    let empty_bucket = html(addr, "/debug/tracez?zspanname=%2Fusers%2F%7Bid%7D&ztype=1&zlatencybucket=0");
    assert!(empty_bucket.contains("No samples."));
    let unknown = html(addr, "/debug/tracez?zspanname=nope&ztype=2");
    assert!(unknown.contains("No span named nope has been seen."));
}

#[test]
fn hostile_names_and_values_are_escaped() {
    let runtime = BackgroundRuntime::start();
    let view = ViewData {
        view: Arc::new(ViewDescriptor {
            name: Cow::Borrowed("view<script>"),
            description: Cow::Borrowed(HOSTILE),
            measure: MeasureDescriptor {
                name: Cow::Borrowed("m"),
                description: Cow::Borrowed(""),
                unit: Cow::Borrowed("1"),
                kind: MeasureKind::Int64,
            },
            tag_keys: vec![Cow::Borrowed("key\"><script>")],
            aggregation: Aggregation::Count,
        }),
        start: SystemTime::UNIX_EPOCH,
        end: SystemTime::UNIX_EPOCH,
        rows: vec![Row { tags: vec![Some(Arc::from(HOSTILE))], data: AggregationData::Count(1) }],
    };
    let exporter = start(&runtime, vec![view].into());
    export(&exporter, vec![span(HOSTILE, 20, StatusCode::Ok, 1), span(HOSTILE, 20, StatusCode::Unknown, 2)]);
    let addr = exporter.local_addr();

    let escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;";
    let summary = html(addr, "/debug/tracez");
    let samples = html(
        addr,
        "/debug/tracez?zspanname=%3Cscript%3Ealert(%22x%22)%3C%2Fscript%3E&ztype=1&zlatencybucket=1",
    );
    let statsz = html(addr, "/debug/statsz");
    for (page_name, page) in [("summary", &summary), ("samples", &samples), ("statsz", &statsz)] {
        assert!(
            !page.contains("<script") && !page.contains("<img"),
            "{page_name} page lets markup through:\n{page}"
        );
        assert!(page.contains(escaped), "{page_name} page shows the escaped text:\n{page}");
    }
    // The link from the summary carries the name percent-encoded, then HTML-escaped.
    assert!(
        summary
            .contains("href=\"tracez?zspanname=%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E&amp;ztype=2\"")
    );
    assert!(samples.contains("note=&quot;&lt;img src=x onerror=alert(1)&gt;&quot;"));
    assert!(statsz.contains("<th>key&quot;&gt;&lt;script&gt;</th>"));
    // Even a missed escape could not run: the pages forbid scripts.
    let response = get(addr, "/debug/tracez");
    assert_eq!(
        response.header("content-security-policy"),
        Some("default-src 'none'; style-src 'unsafe-inline'")
    );
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn statsz_lists_views_and_their_rows() {
    let runtime = BackgroundRuntime::start();
    let latency = ViewData {
        view: Arc::new(ViewDescriptor {
            name: Cow::Borrowed("opencensus.io/http/server/latency"),
            description: Cow::Borrowed("Latency distribution of HTTP requests"),
            measure: MeasureDescriptor {
                name: Cow::Borrowed("opencensus.io/http/server/latency"),
                description: Cow::Borrowed(""),
                unit: Cow::Borrowed("ms"),
                kind: MeasureKind::Float64,
            },
            tag_keys: vec![Cow::Borrowed("http_server_route"), Cow::Borrowed("http.method")],
            aggregation: Aggregation::Distribution { bounds: Arc::from(vec![1.0, 10.0]) },
        }),
        start: SystemTime::UNIX_EPOCH,
        end: SystemTime::UNIX_EPOCH,
        rows: vec![Row {
            tags: vec![Some(Arc::from("/users/{id}")), None],
            data: AggregationData::Distribution(DistributionData {
                count: 4,
                sum: 30.0,
                sum_of_squared_deviation: 0.0,
                min: 0.5,
                max: 20.0,
                bucket_counts: vec![1, 0, 3],
            }),
        }],
    };
    let mut idle = latency.clone();
    idle.view = Arc::new(ViewDescriptor {
        name: Cow::Borrowed("oclayer.io/pipe/latency"),
        ..(*latency.view).clone()
    });
    idle.rows.clear();
    let exporter = start(&runtime, vec![latency, idle].into());

    let page = html(exporter.local_addr(), "/debug/statsz");
    assert!(page.contains("<h2 id=\"view-0\">oclayer.io/pipe/latency</h2>"), "views are sorted by name");
    assert!(page.contains("<h2 id=\"view-1\">opencensus.io/http/server/latency</h2>"));
    assert!(page.contains("<a href=\"#view-1\">opencensus.io/http/server/latency</a>"));
    assert!(page.contains("No data recorded yet."));
    assert!(page.contains("<th>http_server_route</th><th>http.method</th><th>Count</th>"));
    assert!(
        page.contains(
            "<td>/users/{id}</td><td class=\"muted\">unset</td><td class=\"n\">4</td><td class=\"n\">7.5</td>\
         <td class=\"n\">0.5</td><td class=\"n\">20</td><td class=\"n\">30</td><td>&lt;1: 1, &ge;10: 3</td>"
        ),
        "{page}"
    );
    assert!(page.contains("unit ms"));
}

#[test]
fn running_spans_are_shown_when_the_tracing_core_counts_them() {
    let runtime = BackgroundRuntime::start();
    let exporter = start(&runtime, Vec::new().into());
    assert!(exporter.set_running_spans(|| vec![("/slow".to_owned(), 3)]));
    assert!(!exporter.set_running_spans(Vec::new), "only the first source is kept");
    export(&exporter, vec![span("/fast", 20, StatusCode::Ok, 1)]);
    let addr = exporter.local_addr();

    let page = html(addr, "/debug/tracez");
    assert!(summary_row(&page, "/slow").contains("<a href=\"tracez?zspanname=%2Fslow&amp;ztype=0\">3</a>"));
    assert!(summary_row(&page, "/fast").contains("<td class=\"n muted\">0</td>"));
    assert!(!page.contains("not tracked"));
    assert!(html(addr, "/debug/tracez?zspanname=%2Fslow&ztype=0").contains("<p>3 running."));
}

#[test]
fn started_pages_count_the_running_sampled_spans_of_the_process() {
    let runtime = BackgroundRuntime::start();
    let config = ZPagesConfig::new(0).with_listen_address(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let exporter = ZPagesExporter::start(&config, runtime.handle()).expect("the pages start on a free port");
    assert!(!exporter.set_running_spans(Vec::new), "start already gave the pages the tracing core's counts");
    let addr = exporter.local_addr();
    let sampled =
        |name: &'static str| SpanBuilder::new(name).parent(Parent::Root).sampler(Sampler::AlwaysOn).start();

    let span = sampled("zpages-running <live>");
    let unsampled =
        SpanBuilder::new("zpages-unsampled").parent(Parent::Root).sampler(Sampler::AlwaysOff).start();
    let page = html(addr, "/debug/tracez");
    assert!(!page.contains("not tracked"), "{page}");
    assert!(
        summary_row(&page, "zpages-running &lt;live&gt;")
            .contains("<a href=\"tracez?zspanname=zpages-running%20%3Clive%3E&amp;ztype=0\">1</a>"),
        "{page}"
    );
    assert!(!page.contains("zpages-unsampled"), "unsampled spans are not counted: {page}");
    assert!(
        html(addr, "/debug/tracez?zspanname=zpages-running%20%3Clive%3E&ztype=0").contains("<p>1 running.")
    );

    span.end();
    unsampled.end();
    // Nothing exports the ended span to these pages, so with no running span its name has no row left.
    let page = html(addr, "/debug/tracez");
    assert!(!page.contains("zpages-running"), "{page}");
    assert!(
        html(addr, "/debug/tracez?zspanname=zpages-running%20%3Clive%3E&ztype=0").contains("<p>0 running.")
    );
}

#[test]
fn malformed_queries_are_bad_requests_that_say_why() {
    let runtime = BackgroundRuntime::start();
    let exporter = start(&runtime, Vec::new().into());
    let addr = exporter.local_addr();
    for (target, reason) in [
        (
            "/debug/tracez?zspanname=a&ztype=7",
            "ztype must be 0 (running), 1 (latency) or 2 (errors), not &quot;7&quot;",
        ),
        (
            "/debug/tracez?zspanname=a",
            "ztype must be 0 (running), 1 (latency) or 2 (errors), not &quot;&quot;",
        ),
        (
            "/debug/tracez?zspanname=a&ztype=1&zlatencybucket=9",
            "zlatencybucket must be a latency bucket from 0 to 8",
        ),
        ("/debug/tracez?zspanname=a&ztype=1", "zlatencybucket must be a latency bucket from 0 to 8"),
        ("/debug/tracez?zspanname=a&ztype=1&zlatencybucket=%3Cx%3E", "not &quot;&lt;x&gt;&quot;"),
    ] {
        let response = get(addr, target);
        assert_eq!(response.status, 400, "{target}");
        assert!(response.body.contains(reason), "{target}: {}", response.body);
    }
}

#[test]
fn routes_methods_and_head() {
    let runtime = BackgroundRuntime::start();
    let exporter = start(&runtime, Vec::new().into());
    let addr = exporter.local_addr();
    for index in ["/debug", "/debug/"] {
        let page = html(addr, index);
        assert!(
            page.contains("<a href=\"/debug/tracez\">tracez</a>")
                && page.contains("<a href=\"/debug/statsz\">")
        );
    }
    assert!(html(addr, "/debug/statsz").contains("No view is registered."));
    assert!(html(addr, "/debug/tracez").contains("No sampled span has been seen yet."));
    for missing in ["/", "/metrics", "/debug/rpcz", "/debug/tracez/x"] {
        assert_eq!(get(addr, missing).status, 404, "{missing}");
    }
    let post = request(addr, "POST", "/debug/tracez", &[("Content-Length", "0")]);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let full = get(addr, "/debug/statsz");
    let head = request(addr, "HEAD", "/debug/statsz", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(full.body.len().to_string().as_str()));
    assert_eq!(head.body, "");
}

#[test]
fn a_taken_port_fails_with_the_address_and_the_config_key() {
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    let port = taken.local_addr().expect("bound").port();
    let runtime = BackgroundRuntime::start();
    let config = ZPagesConfig::new(port).with_listen_address(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let error = ZPagesExporter::start_with_source(&config, runtime.handle(), || Vec::new().into())
        .expect_err("the port is taken");
    let Error::Listen { address, path, .. } = &error else { panic!("a Listen error, got {error:?}") };
    assert_eq!(*address, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    assert_eq!(path, r#"extra_config."telemetry/opencensus".exporters.zpages.port"#);
}

#[test]
fn shutdown_frees_the_port() {
    let runtime = BackgroundRuntime::start();
    let exporter = start(&runtime, Vec::new().into());
    let addr = exporter.local_addr();
    assert_eq!(get(addr, "/debug").status, 200);
    BackgroundRuntime::block_on_elsewhere(exporter.shutdown(Instant::now())).expect("shuts down");
    std::net::TcpListener::bind(addr).expect("the port is free again after shutdown");
}
