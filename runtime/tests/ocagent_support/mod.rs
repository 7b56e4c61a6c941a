//! Shared by the `ocagent_*` tests: spans with every field set, an exporter pointed at a loopback agent,
//! and helpers to read what the agent got.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oclayer_agent::{Agent, AgentHandle, ReceivedSpan, StreamKind, StreamRecord};
use oclayer_runtime::config::OcAgentConfig;
use oclayer_runtime::export::{OcAgentExporter, SpanBatch};
use oclayer_runtime::trace::{
    AttributeValue, Attributes, SpanContext, SpanData, SpanId, SpanKind, TraceId, TraceState,
};

/// Generous: waits end as soon as their condition holds, so this only matters when something is wrong.
pub const WAIT: Duration = Duration::from_secs(30);

/// A deadline for flush and shutdown, as generous as [`WAIT`].
pub fn deadline() -> Instant {
    Instant::now() + WAIT
}

/// A plain-text agent on a free loopback port.
pub async fn agent() -> AgentHandle {
    Agent::builder().start("127.0.0.1:0".parse().expect("address")).await.expect("agent starts")
}

/// An exporter config for `agent`: plain text, 100 ms reconnection, the given service name.
pub fn config_for(agent: &AgentHandle, service: &str) -> OcAgentConfig {
    OcAgentConfig::new()
        .with_address(agent.local_addr().to_string())
        .with_insecure(true)
        .with_service_name(service)
        .with_reconnection(Duration::from_millis(100))
}

/// Starts an exporter on the current runtime.
pub fn exporter(config: &OcAgentConfig) -> Arc<OcAgentExporter> {
    OcAgentExporter::start(config, &tokio::runtime::Handle::current()).expect("exporter starts")
}

/// A root server span named `name` with a fresh trace.
pub fn span(name: &str) -> SpanData {
    let start = SystemTime::now();
    let context = SpanContext {
        trace_id: TraceId::random(),
        span_id: SpanId::random(),
        sampled: true,
        tracestate: TraceState::EMPTY,
    };
    SpanData {
        attributes: Attributes {
            entries: vec![(Cow::Borrowed("http.method"), AttributeValue::from("GET"))],
            dropped: 0,
        },
        ..SpanData::new(context, name.to_owned(), SpanKind::Server, start, start + Duration::from_millis(3))
    }
}

/// `n` spans named `{prefix}-{i}`, as one batch.
pub fn batch(prefix: &str, n: usize) -> SpanBatch {
    (0..n).map(|i| span(&format!("{prefix}-{i}"))).collect::<Vec<_>>().into()
}

/// A fixed wall-clock time, so timestamps can be compared exactly.
pub fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

/// The span ids of `spans`, as the agent encodes them.
pub fn ids_of(spans: &[SpanData]) -> BTreeSet<Vec<u8>> {
    spans.iter().map(|s| s.context.span_id.0.to_vec()).collect()
}

/// The distinct span ids the agent received (a span written again after a broken stream counts once).
pub fn received_ids(spans: &[ReceivedSpan]) -> BTreeSet<Vec<u8>> {
    spans.iter().map(|s| s.span.span_id.clone()).collect()
}

/// Waits until the agent has received every span id in `wanted`, and returns what it received.
pub async fn wait_for_ids(agent: &AgentHandle, wanted: &BTreeSet<Vec<u8>>) -> Vec<ReceivedSpan> {
    let waited = agent
        .wait_until(&format!("{} distinct spans", wanted.len()), WAIT, |snapshot| {
            let got = received_ids(&snapshot.spans);
            wanted.iter().all(|id| got.contains(id))
        })
        .await;
    if let Err(timeout) = waited {
        let got = received_ids(&agent.spans());
        let missing = wanted.iter().filter(|id| !got.contains(*id)).count();
        panic!("{timeout}; {missing} of {} wanted spans missing", wanted.len());
    }
    agent.spans()
}

/// The export streams of `kind` that carried at least one message.
pub fn used_streams(agent: &AgentHandle, kind: StreamKind) -> Vec<StreamRecord> {
    agent.streams().into_iter().filter(|s| s.kind == kind && s.messages > 0).collect()
}

/// The service name on a stream's first message, if it carried a Node.
pub fn first_service(stream: &StreamRecord) -> Option<String> {
    stream.first_node.node().and_then(|n| n.service_info.as_ref()).map(|s| s.name.clone())
}

/// Polls `condition` until it holds; panics naming `what` after [`WAIT`]. For state the agent does not
/// record (the exporter's own counters).
pub async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let give_up = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < give_up, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
