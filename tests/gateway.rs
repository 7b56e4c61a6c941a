//! The demo gateway of `examples/gateway/`, end to end.
//!
//! The first test includes the example's modules and runs the demo in-process: requests through the
//! gateway, then, from the embedded agent, one trace per request (router → pipe → one backend per upstream
//! call → the upstream's own span) and the three layers' views. The second runs the built example with
//! `--serve` and stops it with SIGTERM.

// The example's modules, as `examples/gateway/main.rs` declares them. Not every item is used here (the
// printing, the flag parser's entry point), hence `dead_code`.
#[allow(dead_code)]
#[path = "../examples/gateway/backend.rs"]
mod backend;
#[allow(dead_code)]
#[path = "../examples/gateway/cli.rs"]
mod cli;
#[allow(dead_code)]
#[path = "../examples/gateway/demo.rs"]
mod demo;
#[allow(dead_code)]
#[path = "../examples/gateway/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "../examples/gateway/routes.rs"]
mod routes;
#[allow(dead_code)]
#[path = "../examples/gateway/setup.rs"]
mod setup;
#[allow(dead_code)]
#[path = "../examples/gateway/summary.rs"]
mod summary;
#[allow(dead_code)]
#[path = "../examples/gateway/upstream.rs"]
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;

use oclayer::layer::{self, Layer};
use oclayer_agent::ReceivedSpan;
use oclayer_agent::render::attribute_text;
use oclayer_proto::metrics::v1::point;
use oclayer_proto::trace::v1::span::SpanKind;

/// The users the test asks for; each is asked for on both endpoints.
const USERS: std::ops::RangeInclusive<u64> = 1..=6;

fn attribute(span: &ReceivedSpan, key: &str) -> Option<String> {
    span.span.attributes.as_ref()?.attribute_map.get(key).map(attribute_text)
}

fn children<'a>(spans: &'a [ReceivedSpan], parent: &ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.span.parent_span_id == parent.span.span_id).collect()
}

/// The sum over all series of the last point of the latest report of `view`, for count views.
fn count_of(metrics: &[oclayer_agent::ReceivedMetric], view: &str) -> i64 {
    let latest = metrics.iter().rev().find(|m| m.name() == view).unwrap_or_else(|| panic!("no {view}"));
    latest
        .metric
        .timeseries
        .iter()
        .filter_map(|series| match series.points.last()?.value {
            Some(point::Value::Int64Value(n)) => Some(n),
            _ => None,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_one_trace_from_the_router_to_the_upstreams() {
    let mut options = cli::Options::new();
    options.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    options.listen_explicit = true;
    options.prometheus_port =
        Some(setup::free_port(SocketAddr::from(([127, 0, 0, 1], 0))).expect("a free port for /metrics"));
    let demo = demo::Demo::start(&options).await.expect("the demo starts");
    let agent_address = demo.agent.as_ref().expect("the embedded agent").local_addr();
    assert_eq!(demo.agent_address, agent_address.to_string());

    let client = backend::client();
    let mut sent = Vec::new();
    for id in USERS {
        for path in [format!("/users/{id}"), format!("/users/{id}/orders")] {
            let status = load::get(&client, demo.gateway, &path).await.expect("the gateway answers");
            sent.push((path, status));
        }
    }
    let stopped = demo.stop().await;
    stopped.shutdown.expect("telemetry flushed everything to the agent");
    let agent = stopped.agent.expect("the embedded agent");
    let spans = agent.spans();
    let metrics = agent.metrics();

    // Every view of the three layers arrived, and the counts are the gateway's requests (the upstreams
    // record spans only).
    for layer in Layer::ALL {
        for view in layer::views(layer) {
            assert!(metrics.iter().any(|m| m.name() == view.name()), "view {} did not arrive", view.name());
        }
    }
    let requests = sent.len() as i64;
    assert_eq!(count_of(&metrics, "opencensus.io/http/server/request_count"), requests);
    assert_eq!(count_of(&metrics, "oclayer.io/pipe/request_count"), requests);
    assert_eq!(count_of(&metrics, "opencensus.io/http/client/completed_count"), requests / 2 * 3);
    assert!(summary::latency_rows(&metrics).is_some_and(|table| table.contains("/users/{id}/orders")));

    // One router span of the gateway per request (the upstreams' spans are router spans too, named after
    // their service), each the root of its own trace.
    let routers: HashMap<String, &ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name() == "/users/{id}" || s.name() == "/users/{id}/orders")
        .map(|s| (attribute(s, "http.path").expect("the router span has http.path"), s))
        .collect();
    assert_eq!(routers.len(), sent.len(), "gateway router spans: {:?}", routers.keys().collect::<Vec<_>>());
    for (path, status) in &sent {
        let router = routers.get(path).unwrap_or_else(|| panic!("no router span for {path}"));
        assert_eq!(router.span.kind, SpanKind::Server as i32);
        assert_eq!(router.parent_span_id_hex(), None, "{path}: the router span starts the trace");
        let trace = router.trace_id_hex();
        let orders = path.ends_with("/orders");
        assert_eq!(router.name(), if orders { "/users/{id}/orders" } else { "/users/{id}" });
        assert_eq!(attribute(router, "http.status_code"), Some(status.to_string()), "{path}");

        // One pipe child, with one backend child per upstream call.
        let pipes = children(&spans, router);
        assert_eq!(pipes.len(), 1, "{path}: children of the router span");
        let pipe = pipes[0];
        assert_eq!(pipe.name(), format!("pipe-{}", router.name()));
        let mut backends: Vec<&str> = children(&spans, pipe).iter().map(|s| s.name()).collect();
        backends.sort_unstable();
        let expected: &[&str] = if orders {
            &["backend-/orders/by-user/{id}", "backend-/users/{id}"]
        } else {
            &["backend-/users/{id}"]
        };
        assert_eq!(backends, expected, "{path}: children of the pipe span");

        // Each backend call reached its upstream with the trace context: the upstream's span is the
        // backend span's child, in the same trace.
        for backend in children(&spans, pipe) {
            assert_eq!(backend.span.kind, SpanKind::Client as i32);
            let upstream = children(&spans, backend);
            assert_eq!(upstream.len(), 1, "{path}: the upstream span under {}", backend.name());
            let service = if backend.name().contains("orders") { "orders" } else { "users" };
            assert!(upstream[0].name().starts_with(&format!("{service}-service ")), "{}", upstream[0].name());
            assert_eq!(upstream[0].span.kind, SpanKind::Server as i32);
            for span in [pipe, backend, upstream[0]] {
                assert_eq!(span.trace_id_hex(), trace, "{path}: {} is in another trace", span.name());
            }
        }
    }
}

/// `--serve` stops on SIGTERM: it flushes, prints what the agent received and exits 0.
#[cfg(unix)]
#[test]
fn serve_exits_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    let binary = example_binary();
    let prometheus = setup::free_port(SocketAddr::from(([127, 0, 0, 1], 0))).expect("a free port");
    let mut child = Command::new(&binary)
        .args(["--serve", "--listen", "127.0.0.1:0", "--prometheus-port", &prometheus.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let pid = child.id().to_string();

    // A stuck child must not hang the test run: past a generous limit it is killed, and the reads below
    // then end and fail with what it printed.
    let (done, watchdog) = mpsc::channel::<()>();
    let watchdog_pid = pid.clone();
    let watchdog = std::thread::spawn(move || {
        if watchdog.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = Command::new("kill").args(["-KILL", &watchdog_pid]).status();
        }
    });

    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut printed = String::new();
    let mut gateway = None;
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("reading the demo's output") == 0 {
            let mut stderr = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
            panic!("the demo ended before serving:\n{printed}\nstderr:\n{stderr}");
        }
        printed.push_str(&line);
        if let Some(rest) = line.trim().strip_prefix("gateway") {
            gateway = rest
                .trim()
                .strip_prefix("http://")
                .and_then(|a| a.split_whitespace().next())
                .map(str::to_owned);
        }
        if line.starts_with("serving until") {
            break;
        }
    }
    let gateway = gateway.unwrap_or_else(|| panic!("no gateway address in:\n{printed}"));

    // One request, so there is a trace to print.
    let mut connection = std::net::TcpStream::connect(&gateway).expect("the gateway accepts connections");
    write!(connection, "GET /users/3/orders HTTP/1.1\r\nHost: {gateway}\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    connection.read_to_string(&mut answer).expect("the gateway answers");
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");

    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("running kill");
    assert!(killed.success(), "kill -TERM {pid} failed");
    stdout.read_to_string(&mut printed).expect("reading the demo's output");
    let status = child.wait().expect("waiting for the demo");
    let _ = done.send(());
    let _ = watchdog.join();
    let mut stderr = String::new();
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));

    assert!(status.success(), "exit status {status}\nstdout:\n{printed}\nstderr:\n{stderr}");
    assert!(printed.contains("SIGTERM received: stopping, flushing telemetry"), "{printed}");
    assert!(printed.contains("trace ") && printed.contains("/users/{id}/orders  [server]"), "{printed}");
    assert!(printed.trim_end().ends_with("telemetry flushed and shut down"), "{printed}");
}

/// The example's binary beside this test's (`target/<profile>/examples/gateway`), built if needed.
///
/// `cargo test` builds examples before it runs tests, so the binary is normally there and current. When
/// only this test was built (`cargo test --test gateway`), the binary may be missing, or older than the
/// demo's sources after an edit: it is built then. Changes elsewhere (the runtime) are not watched, since
/// building the example alone resolves features differently from a workspace build and recompiles the
/// crates it shares with the tests.
#[cfg(unix)]
fn example_binary() -> std::path::PathBuf {
    use std::path::Path;
    use std::time::SystemTime;

    let test = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/gateway-<hash> -> target/<profile>
    let profile_dir =
        test.parent().and_then(|deps| deps.parent()).expect("the test runs from target/<profile>/deps");
    let binary = profile_dir.join("examples").join(format!("gateway{}", std::env::consts::EXE_SUFFIX));
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join("gateway");
    let newest_source = std::fs::read_dir(&sources)
        .expect("examples/gateway/ is readable")
        .filter_map(|entry| modified(&entry.ok()?.path()))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if modified(&binary).is_none_or(|built| built < newest_source) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.current_dir(env!("CARGO_MANIFEST_DIR")).args(["build", "--example", "gateway"]);
        if let Some(target_dir) = profile_dir.parent() {
            build.arg("--target-dir").arg(target_dir);
        }
        if profile_dir.file_name().is_some_and(|name| name == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build --example gateway");
        assert!(status.success(), "cargo build --example gateway failed");
    }
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build --example gateway`",
        binary.display()
    );
    binary
}
