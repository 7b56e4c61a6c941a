//! The `oclayer-agent` binary as a user runs it: flags, printed trees and tables, JSON lines, and a
//! clean exit on Ctrl-C (SIGINT).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use oclayer_proto::agent::common::v1::{Node, ServiceInfo};
use oclayer_proto::agent::metrics::v1::metrics_service_client::MetricsServiceClient;
use oclayer_proto::agent::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use oclayer_proto::agent::trace::v1::trace_service_client::TraceServiceClient;
use oclayer_proto::agent::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use oclayer_proto::metrics::v1::{
    LabelKey, LabelValue, Metric, MetricDescriptor, Point, TimeSeries, metric_descriptor, point,
};
use oclayer_proto::prost_types::Timestamp;
use oclayer_proto::trace::v1::span::SpanKind;
use oclayer_proto::trace::v1::{Span, TruncatableString};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(15);
const BIN: &str = env!("CARGO_BIN_EXE_oclayer-agent");

#[tokio::test]
async fn bad_flags_exit_2_with_a_reason_and_the_usage() {
    for (args, reason) in [
        (&["--bogus"][..], "unknown option `--bogus`"),
        (&["--listen", "not-an-address"][..], "--listen `not-an-address` is not a HOST:PORT address"),
        (&["--json-out"][..], "--json-out needs a value"),
    ] {
        let output = Command::new(BIN).args(args).output().await.expect("binary runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(reason) && stderr.contains("usage: oclayer-agent"), "{args:?}: {stderr}");
    }
    let help = Command::new(BIN).arg("--help").output().await.expect("binary runs");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--json-out FILE"));
}

#[tokio::test]
async fn a_busy_port_exits_1_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let output = Command::new(BIN).args(["--listen", &addr]).output().await.expect("binary runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
}

/// A running binary with its output streams.
struct Running {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    // Kept open so the agent never blocks on a full stderr pipe.
    _stderr: Lines<BufReader<ChildStderr>>,
    endpoint: String,
}

async fn run(extra: &[&str]) -> Running {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = stderr.next_line().await.expect("readable stderr") {
            if let Some(rest) = line.strip_prefix("oclayer-agent: listening on ") {
                return rest.split_whitespace().next().expect("address follows").to_owned();
            }
        }
        panic!("the binary exited without saying where it listens");
    })
    .await
    .expect("the binary reports its address");
    Running { child, stdout, _stderr: stderr, endpoint: format!("http://{addr}") }
}

fn node() -> Node {
    Node { service_info: Some(ServiceInfo { name: "gateway".into() }), ..Node::default() }
}

fn span(id: u8, parent: Option<u8>, name: &str, kind: SpanKind) -> Span {
    Span {
        trace_id: vec![0x42; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: Some(TruncatableString { value: name.into(), truncated_byte_count: 0 }),
        kind: kind as i32,
        start_time: Some(Timestamp { seconds: 1_700_000_000, nanos: 0 }),
        end_time: Some(Timestamp { seconds: 1_700_000_000, nanos: 1_000_000 * i32::from(id) }),
        ..Span::default()
    }
}

fn metric() -> Metric {
    Metric {
        metric_descriptor: Some(MetricDescriptor {
            name: "requests".into(),
            description: "Requests served".into(),
            unit: "1".into(),
            r#type: metric_descriptor::Type::CumulativeInt64 as i32,
            label_keys: vec![LabelKey { key: "route".into(), description: String::new() }],
        }),
        timeseries: vec![TimeSeries {
            start_timestamp: Some(Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            label_values: vec![LabelValue { value: "/users".into(), has_value: true }],
            points: vec![Point { timestamp: None, value: Some(point::Value::Int64Value(7)) }],
        }],
        resource: None,
    }
}

/// Open client streams; dropping this closes them.
struct Streams {
    _traces: (
        TraceServiceClient<Channel>,
        mpsc::Sender<ExportTraceServiceRequest>,
        Streaming<ExportTraceServiceResponse>,
    ),
    _metrics: (
        MetricsServiceClient<Channel>,
        mpsc::Sender<ExportMetricsServiceRequest>,
        Streaming<ExportMetricsServiceResponse>,
    ),
}

/// Sends a root span with one child (child first, as exporters do), and one metric.
async fn send(endpoint: &str) -> Streams {
    let mut traces = TraceServiceClient::connect(endpoint.to_owned()).await.expect("connects");
    let (span_tx, span_rx) = mpsc::channel(4);
    let span_responses =
        traces.export(ReceiverStream::new(span_rx)).await.expect("trace stream opens").into_inner();
    span_tx
        .send(ExportTraceServiceRequest {
            node: Some(node()),
            spans: vec![
                span(2, Some(1), "backend-/users", SpanKind::Client),
                span(1, None, "/users", SpanKind::Server),
            ],
            resource: None,
        })
        .await
        .expect("stream open");

    let mut metrics = MetricsServiceClient::connect(endpoint.to_owned()).await.expect("connects");
    let (metric_tx, metric_rx) = mpsc::channel(4);
    let metric_responses =
        metrics.export(ReceiverStream::new(metric_rx)).await.expect("metrics stream opens").into_inner();
    metric_tx
        .send(ExportMetricsServiceRequest { node: Some(node()), metrics: vec![metric()], resource: None })
        .await
        .expect("stream open");
    Streams { _traces: (traces, span_tx, span_responses), _metrics: (metrics, metric_tx, metric_responses) }
}

async fn interrupt_and_expect_clean_exit(mut child: Child) {
    let pid = child.id().expect("still running").to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status().await.expect("kill runs");
    assert!(sent.success());
    let status =
        tokio::time::timeout(WAIT, child.wait()).await.expect("exits after Ctrl-C").expect("waitable");
    assert!(status.success(), "Ctrl-C must exit 0, got {status}");
}

#[cfg(unix)]
#[tokio::test]
async fn prints_trace_trees_and_metric_tables() {
    let mut running = run(&[]).await;
    let _streams = send(&running.endpoint).await;

    let mut printed = Vec::new();
    let expected = [
        "trace 42424242424242424242424242424242 · 2 spans · service gateway",
        "/users  [server]  1.000 ms  OK",
        "└─ backend-/users  [client]  2.000 ms  OK",
        "requests  CUMULATIVE_INT64  unit 1  Requests served",
        "  route   value",
        "  /users  7",
    ];
    tokio::time::timeout(WAIT, async {
        while !expected.iter().all(|line| printed.iter().any(|p: &String| p == line)) {
            match running.stdout.next_line().await.expect("readable stdout") {
                Some(line) => printed.push(line),
                None => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("expected lines not printed; got {printed:#?}"));
    for line in expected {
        assert!(printed.iter().any(|p| p == line), "missing {line:?} in {printed:#?}");
    }
    interrupt_and_expect_clean_exit(running.child).await;
}

#[cfg(unix)]
#[tokio::test]
async fn writes_json_lines_with_json_out() {
    let path: PathBuf = std::env::temp_dir().join(format!("oclayer-agent-test-{}.jsonl", std::process::id()));
    let running = run(&["--json-out", path.to_str().expect("utf-8 temp path")]).await;
    let _streams = send(&running.endpoint).await;

    let lines = tokio::time::timeout(WAIT, async {
        loop {
            let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
            let lines: Vec<serde_json::Value> =
                text.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
            if lines.len() >= 3 {
                return lines;
            }
            // Polling a file has no change notification; a short pause between reads.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("three records are written");
    let _ = std::fs::remove_file(&path);

    let spans: Vec<&serde_json::Value> = lines.iter().filter(|l| l["record"] == "span").collect();
    let metrics: Vec<&serde_json::Value> = lines.iter().filter(|l| l["record"] == "metric").collect();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0]["name"], "backend-/users");
    assert_eq!(spans[0]["parent_span_id"], "0101010101010101");
    assert_eq!(spans[1]["kind"], "SERVER");
    assert_eq!(spans[1]["node"]["service_name"], "gateway");
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0]["name"], "requests");
    assert_eq!(metrics[0]["timeseries"][0]["points"][0]["value"]["int64"], 7);
    interrupt_and_expect_clean_exit(running.child).await;
}
