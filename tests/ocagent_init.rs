//! The ocagent exporter through the facade, as a gateway uses it: `init` with an `ocagent` exporter, annotated
//! handlers, and `shutdown` on a current-thread runtime; the agent receives the trace tree and the views.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use oclayer::Config;
use oclayer::config::OcAgentConfig;
use oclayer::trace_layer;
use oclayer_agent::{Agent, StreamKind};
use oclayer_proto::metrics::v1::point;
use oclayer_proto::trace::v1::span::SpanKind;

const WAIT: Duration = Duration::from_secs(30);

#[trace_layer(router, route = "/users/{id}")]
async fn users(req: Request<()>) -> Response<String> {
    let mut upstream = Request::builder().uri("http://users.internal/users").body(()).expect("request");
    let status = fetch_user(&mut upstream).await;
    Response::builder().status(status).body(format!("user {}", req.uri().path())).expect("response")
}

#[trace_layer(backend, name = "users-api")]
async fn fetch_user(req: &mut Request<()>) -> StatusCode {
    // The backend layer injects the trace context into the outgoing request.
    assert!(req.headers().contains_key("traceparent"));
    StatusCode::OK
}

#[tokio::test(flavor = "current_thread")]
async fn init_exports_traces_and_stats_and_shutdown_delivers_them() {
    let agent = Agent::builder().start("127.0.0.1:0".parse().expect("address")).await.expect("agent");
    let config = Config::builder()
        .sample_rate(100)
        .reporting_period(Duration::from_secs(60))
        .ocagent(
            OcAgentConfig::new()
                .with_address(agent.local_addr().to_string())
                .with_insecure(true)
                .with_service_name("gateway")
                .with_reconnection(Duration::from_millis(100))
                .with_enable_compression(true),
        )
        .build()
        .expect("a valid config");
    let telemetry = oclayer::init(config).expect("the pipeline starts");
    assert!(telemetry.exporters().iter().any(|e| e.name() == "ocagent"));

    for id in 1..=5 {
        let request = Request::builder().uri(format!("/users/{id}")).body(()).expect("request");
        assert_eq!(users(request).await.status(), StatusCode::OK);
    }
    // Straight to shutdown on this single thread: the spans and the last stats report are still queued.
    telemetry.shutdown_with_timeout(WAIT).await.expect("shutdown delivers everything");

    let spans = agent.spans();
    assert_eq!(spans.len(), 10, "5 router and 5 backend spans: {spans:#?}");
    let servers: Vec<_> = spans.iter().filter(|s| s.span.kind == SpanKind::Server as i32).collect();
    let clients: Vec<_> = spans.iter().filter(|s| s.span.kind == SpanKind::Client as i32).collect();
    assert_eq!((servers.len(), clients.len()), (5, 5));
    for server in &servers {
        assert_eq!(server.name(), "/users/{id}");
        assert!(server.span.parent_span_id.is_empty(), "router spans are roots here");
        assert_eq!(server.service_name(), Some("gateway"));
        let child = clients
            .iter()
            .find(|c| c.span.parent_span_id == server.span.span_id)
            .unwrap_or_else(|| panic!("no backend child of {server:?}"));
        assert_eq!(child.span.trace_id, server.span.trace_id);
        assert_eq!(child.span.same_process_as_parent_span, Some(true));
        assert_eq!(server.span.child_span_count, Some(1));
    }

    // The last report carries the router views.
    let metrics = agent.metrics();
    let request_count =
        metrics.iter().rev().find(|m| m.name() == "opencensus.io/http/server/request_count").unwrap_or_else(
            || panic!("no request_count in {:?}", metrics.iter().map(|m| m.name()).collect::<Vec<_>>()),
        );
    let total: i64 = request_count
        .metric
        .timeseries
        .iter()
        .filter_map(|series| match series.points.first().and_then(|p| p.value.as_ref()) {
            Some(point::Value::Int64Value(n)) => Some(*n),
            _ => None,
        })
        .sum();
    assert_eq!(total, 5);
    for stream in agent.streams().iter().filter(|s| s.kind != StreamKind::TraceConfig && s.messages > 0) {
        assert_eq!(stream.compression.as_deref(), Some("gzip"));
        assert!(stream.first_node.node().is_some(), "{stream:?}");
    }
    agent.shutdown().await;
}
