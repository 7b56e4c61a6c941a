//! `Telemetry::shutdown` under every combination of the caller's runtime (multi-thread, current-thread) and
//! the agent's state (up, down, hanging in gRPC, hanging in TCP): it returns within its deadline, and says
//! exactly what it could not deliver.
//!
//! "Within its deadline" is checked without timing the call: the pipeline answers a shutdown that overran
//! its deadline (plus one second) with a "got no answer" error, so an `Undelivered` answer is one the
//! exporter gave at its deadline. A hard limit far beyond the deadline only keeps a hung shutdown from
//! hanging the test run.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use oclayer::config::OcAgentConfig;
use oclayer::{Config, Error, trace_layer};
use oclayer_agent::{Agent, AgentHandle, StreamKind};
use tokio::net::TcpListener;

/// One pipeline per process: the tests of this file take turns.
static ONE_PIPELINE: Mutex<()> = Mutex::new(());

/// Spans each test makes.
const SPANS: u64 = 25;
/// The shutdown deadline under test.
const DEADLINE: Duration = Duration::from_secs(1);
/// Past this, the shutdown is taken as hung and the test fails instead of waiting forever.
const HUNG_AFTER: Duration = Duration::from_secs(30);

#[trace_layer(router, route = "/work")]
fn handle(n: u64) -> u64 {
    n * 2
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AgentState {
    /// Running and reading.
    Up,
    /// Killed before the pipeline starts: connections are refused.
    Down,
    /// Accepts streams but never reads a message (HTTP/2 flow control then stalls the exporter).
    HangingGrpc,
    /// Accepts TCP connections and never answers, not even the HTTP/2 handshake.
    HangingTcp,
}

#[derive(Clone, Copy, Debug)]
enum Flavor {
    MultiThread,
    CurrentThread,
}

fn runtime(flavor: Flavor) -> tokio::runtime::Runtime {
    let mut builder = match flavor {
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all().build().expect("a tokio runtime")
}

fn config(address: String) -> Config {
    Config::builder()
        .sample_rate(100)
        // No periodic report during the test: the only report is the last one, at shutdown.
        .reporting_period(Duration::from_secs(3600))
        .ocagent(
            OcAgentConfig::new()
                .with_address(address)
                .with_insecure(true)
                .with_service_name("shutdown-test")
                .with_reconnection(Duration::from_millis(50)),
        )
        .build()
        .expect("a valid config")
}

/// A TCP listener that accepts connections and holds them without a byte in either direction.
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (address, task)
}

fn shutdown_case(flavor: Flavor, state: AgentState) {
    let _turn = ONE_PIPELINE.lock().unwrap_or_else(PoisonError::into_inner);
    runtime(flavor).block_on(async move {
        let agent: AgentHandle =
            Agent::builder().start("127.0.0.1:0".parse().expect("address")).await.expect("agent starts");
        let mut hole = None;
        let address = match state {
            AgentState::HangingTcp => {
                let (address, task) = black_hole().await;
                hole = Some(task);
                address
            }
            _ => agent.local_addr().to_string(),
        };
        match state {
            AgentState::Down => agent.kill().await,
            AgentState::HangingGrpc => agent.slow_down(Duration::from_secs(3600)),
            AgentState::Up | AgentState::HangingTcp => {}
        }

        let telemetry = oclayer::init(config(address)).expect("the pipeline starts");
        for n in 0..SPANS {
            assert_eq!(handle(n), n * 2);
        }
        if state == AgentState::HangingGrpc {
            // Make sure the exporter got as far as the hang: a stream open, its first message held.
            telemetry
                .flush_with_timeout(Duration::from_millis(10))
                .await
                .expect_err("the agent reads nothing");
            agent
                .wait_until("a held trace message", HUNG_AFTER, |snapshot| {
                    snapshot.streams.iter().any(|s| s.kind == StreamKind::TraceExport && s.held > 0)
                })
                .await
                .expect("the agent holds the first message");
        }

        let result =
            tokio::time::timeout(HUNG_AFTER, telemetry.shutdown_with_timeout(DEADLINE)).await.unwrap_or_else(
                |_| panic!("{flavor:?} / {state:?}: shutdown still running after {HUNG_AFTER:?}"),
            );
        match state {
            AgentState::Up => {
                result.unwrap_or_else(|e| panic!("{flavor:?} / {state:?}: {e}"));
                assert_eq!(agent.span_count(), SPANS, "every span delivered, once");
                assert!(agent.metric_count() > 0, "the last stats report delivered");
            }
            _ => match result {
                Err(Error::Undelivered { exporter, spans, reports, last_error, .. }) => {
                    assert_eq!(exporter, "ocagent");
                    assert_eq!(spans, SPANS, "{flavor:?} / {state:?}: every span is reported undelivered");
                    assert_eq!(reports, 1, "{flavor:?} / {state:?}: the last stats report is undelivered");
                    if state == AgentState::Down {
                        assert!(
                            last_error.as_deref().is_some_and(|e| e.contains("Unavailable")),
                            "the cause is named: {last_error:?}"
                        );
                    }
                    assert_eq!(agent.span_count(), 0, "nothing reached the agent");
                }
                other => {
                    panic!("{flavor:?} / {state:?}: expected Undelivered within the deadline, got {other:?}")
                }
            },
        }
        // The pipeline is gone: a new one starts.
        let again = oclayer::init(config("127.0.0.1:1".into())).expect("init after shutdown");
        drop(again);
        if let Some(hole) = hole {
            hole.abort();
        }
        agent.shutdown().await;
    });
}

#[test]
fn multi_thread_agent_up() {
    shutdown_case(Flavor::MultiThread, AgentState::Up);
}

#[test]
fn multi_thread_agent_down() {
    shutdown_case(Flavor::MultiThread, AgentState::Down);
}

#[test]
fn multi_thread_agent_hanging_in_grpc() {
    shutdown_case(Flavor::MultiThread, AgentState::HangingGrpc);
}

#[test]
fn multi_thread_agent_hanging_in_tcp() {
    shutdown_case(Flavor::MultiThread, AgentState::HangingTcp);
}

#[test]
fn current_thread_agent_up() {
    shutdown_case(Flavor::CurrentThread, AgentState::Up);
}

#[test]
fn current_thread_agent_down() {
    shutdown_case(Flavor::CurrentThread, AgentState::Down);
}

#[test]
fn current_thread_agent_hanging_in_grpc() {
    shutdown_case(Flavor::CurrentThread, AgentState::HangingGrpc);
}

#[test]
fn current_thread_agent_hanging_in_tcp() {
    shutdown_case(Flavor::CurrentThread, AgentState::HangingTcp);
}
