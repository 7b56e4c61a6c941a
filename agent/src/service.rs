//! The gRPC side: `TraceService` (Export, Config) and `MetricsService` (Export) on the generated
//! tonic server stubs, plus the fault switches and the sampler push they obey.
//!
//! Each stream gets its own task that reads requests, records them and applies faults; the
//! handler returns at once with the response stream, as tonic expects of bidirectional calls.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use oclayer_proto::agent::common::v1::Node;
use oclayer_proto::agent::metrics::v1::metrics_service_server::MetricsService;
use oclayer_proto::agent::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use oclayer_proto::agent::trace::v1::trace_service_server::TraceService;
use oclayer_proto::agent::trace::v1::{
    CurrentLibraryConfig, ExportTraceServiceRequest, ExportTraceServiceResponse, UpdatedLibraryConfig,
};
use oclayer_proto::resource::v1::Resource;
use oclayer_proto::tonic::{self, Request, Response, Status, Streaming};
use oclayer_proto::trace::v1::TraceConfig;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};

use crate::record::{
    ReceivedConfig, ReceivedMetric, ReceivedSpan, Recorder, StreamId, StreamKind, StreamState, span_key,
};

/// State every stream handler shares with the [`AgentHandle`](crate::AgentHandle).
pub(crate) struct Shared {
    pub(crate) recorder: Recorder,
    pub(crate) faults: Faults,
    pub(crate) config: ConfigPush,
}

/// Fault switches, read on every message so that a change applies to open streams too.
pub(crate) struct Faults {
    /// Per [`StreamKind::index`]: end a stream with an error once it has this many messages;
    /// `u64::MAX` = never.
    fail_after: [AtomicU64; 3],
    /// Delay before each message is handled. A watch, so that messages already waiting pick up a
    /// change (a test that slowed the agent down for an hour can speed it up again).
    delay: watch::Sender<Duration>,
}

impl Faults {
    pub(crate) fn new() -> Self {
        Faults {
            fail_after: [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)],
            delay: watch::channel(Duration::ZERO).0,
        }
    }

    pub(crate) fn set_fail_after(&self, kind: StreamKind, messages: Option<u64>) {
        self.fail_after[kind.index()].store(messages.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn fail_after(&self, kind: StreamKind) -> Option<u64> {
        Some(self.fail_after[kind.index()].load(Ordering::Relaxed)).filter(|&n| n != u64::MAX)
    }

    pub(crate) fn set_delay(&self, delay: Duration) {
        self.delay.send_replace(delay);
    }

    fn is_slow(&self) -> bool {
        !self.delay.borrow().is_zero()
    }

    /// Sleeps for the configured delay; a new setting restarts the wait with the new value, and
    /// zero ends it.
    async fn wait_delay(&self) {
        let mut setting = self.delay.subscribe();
        loop {
            let delay = *setting.borrow_and_update();
            if delay.is_zero() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => return,
                changed = setting.changed() => if changed.is_err() { return },
            }
        }
    }
}

type ConfigSender = mpsc::UnboundedSender<Result<UpdatedLibraryConfig, Status>>;

/// The sampler config the agent wants libraries to use, and the open Config streams to push it to.
pub(crate) struct ConfigPush {
    inner: Mutex<ConfigPushState>,
}

struct ConfigPushState {
    current: Option<TraceConfig>,
    streams: BTreeMap<StreamId, ConfigSender>,
}

impl ConfigPush {
    pub(crate) fn new(initial: Option<TraceConfig>) -> Self {
        ConfigPush { inner: Mutex::new(ConfigPushState { current: initial, streams: BTreeMap::new() }) }
    }

    /// Adds a stream and sends it the current config, under one lock with [`push`](Self::push) so
    /// a stream never gets the same config twice or misses one.
    fn register(&self, stream: StreamId, sender: ConfigSender) {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = &state.current {
            let _ = sender.send(Ok(updated(current)));
        }
        state.streams.insert(stream, sender);
    }

    fn unregister(&self, stream: StreamId) {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).streams.remove(&stream);
    }

    /// Makes `config` current and sends it down every open Config stream; returns how many got it.
    pub(crate) fn push(&self, config: TraceConfig) -> usize {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let message = updated(&config);
        state.current = Some(config);
        state.streams.retain(|_, sender| sender.send(Ok(message.clone())).is_ok());
        state.streams.len()
    }
}

fn updated(config: &TraceConfig) -> UpdatedLibraryConfig {
    // The node is only meaningful when one stream configures several applications; ours do not.
    UpdatedLibraryConfig { node: None, config: Some(*config) }
}

/// Reads `incoming` until it ends, the transport breaks or a fault ends it, handing each message
/// to `on_message` after the configured delay. Returns how the stream ended and how many messages
/// it carried.
async fn drive<M>(
    shared: &Shared,
    id: StreamId,
    kind: StreamKind,
    mut incoming: Streaming<M>,
    mut on_message: impl FnMut(M),
) -> (StreamState, u64) {
    let mut count = 0u64;
    if shared.faults.fail_after(kind) == Some(0) {
        return (StreamState::Failed, 0);
    }
    loop {
        match incoming.message().await {
            Ok(Some(message)) => {
                if shared.faults.is_slow() {
                    // Not reading meanwhile lets HTTP/2 flow control push back on the sender, as a
                    // slow agent would. The record shows the message as held until then.
                    shared.recorder.held(id, true);
                    shared.faults.wait_delay().await;
                    shared.recorder.held(id, false);
                }
                count += 1;
                on_message(message);
                if shared.faults.fail_after(kind).is_some_and(|limit| count >= limit) {
                    return (StreamState::Failed, count);
                }
            }
            Ok(None) => return (StreamState::Closed, count),
            Err(status) => {
                let reason = format!("{:?}: {}", status.code(), status.message());
                return (StreamState::Broken(reason), count);
            }
        }
    }
}

fn injected_failure(count: u64) -> Status {
    Status::unavailable(format!("oclayer-agent: stream ended on purpose after {count} messages (fail_after)"))
}

/// The node and resource in effect on one export stream: each request may replace them, and
/// spans or metrics without their own resource inherit the stream's.
#[derive(Default)]
struct StreamContext {
    node: Option<Node>,
    resource: Option<Resource>,
}

impl StreamContext {
    fn update(&mut self, node: Option<Node>, resource: Option<Resource>) {
        if node.is_some() {
            self.node = node;
        }
        if resource.is_some() {
            self.resource = resource;
        }
    }
}

/// `opencensus.proto.agent.trace.v1.TraceService`.
pub(crate) struct TraceReceiver {
    pub(crate) shared: Arc<Shared>,
    pub(crate) generation: u64,
}

#[tonic::async_trait]
impl TraceService for TraceReceiver {
    type ConfigStream = UnboundedReceiverStream<Result<UpdatedLibraryConfig, Status>>;
    type ExportStream = ReceiverStream<Result<ExportTraceServiceResponse, Status>>;

    async fn config(
        &self,
        request: Request<Streaming<CurrentLibraryConfig>>,
    ) -> Result<Response<Self::ConfigStream>, Status> {
        let kind = StreamKind::TraceConfig;
        let shared = Arc::clone(&self.shared);
        let id = shared.recorder.open_stream(kind, self.generation, request.metadata());
        let (sender, receiver) = mpsc::unbounded_channel();
        shared.config.register(id, sender.clone());
        let incoming = request.into_inner();
        tokio::spawn(async move {
            let mut node = None;
            let (state, count) = drive(&shared, id, kind, incoming, |message: CurrentLibraryConfig| {
                shared.recorder.message(id, kind, message.node.as_ref());
                if message.node.is_some() {
                    node = message.node;
                }
                shared.recorder.library_config(ReceivedConfig {
                    config: message.config,
                    node: node.clone(),
                    stream: id,
                });
            })
            .await;
            shared.config.unregister(id);
            // Record before answering, so a client that sees the end also sees it recorded.
            shared.recorder.end_stream(id, state.clone());
            if state == StreamState::Failed {
                let _ = sender.send(Err(injected_failure(count)));
            }
        });
        Ok(Response::new(UnboundedReceiverStream::new(receiver)))
    }

    async fn export(
        &self,
        request: Request<Streaming<ExportTraceServiceRequest>>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let kind = StreamKind::TraceExport;
        let shared = Arc::clone(&self.shared);
        let id = shared.recorder.open_stream(kind, self.generation, request.metadata());
        // The agent never acknowledges batches (neither does the reference agent); the response
        // stream only carries the final status.
        let (sender, receiver) = mpsc::channel(1);
        let incoming = request.into_inner();
        tokio::spawn(async move {
            let mut context = StreamContext::default();
            // The stream's span keys, when tallying: confirmed only if the stream ends cleanly.
            let mut keys = Vec::new();
            let (state, count) = drive(&shared, id, kind, incoming, |message: ExportTraceServiceRequest| {
                shared.recorder.message(id, kind, message.node.as_ref());
                if shared.recorder.tallies() {
                    let start = keys.len();
                    keys.extend(message.spans.iter().map(span_key));
                    shared.recorder.tally_seen(&keys[start..]);
                }
                context.update(message.node, message.resource);
                if !shared.recorder.wants_records() {
                    shared.recorder.count_only(message.spans.len(), 0);
                    return;
                }
                let spans = message
                    .spans
                    .into_iter()
                    .map(|span| ReceivedSpan {
                        resource: span.resource.clone().or_else(|| context.resource.clone()),
                        node: context.node.clone(),
                        stream: id,
                        span,
                    })
                    .collect();
                shared.recorder.spans(spans);
            })
            .await;
            if state == StreamState::Closed {
                shared.recorder.tally_confirmed(&keys);
            }
            shared.recorder.end_stream(id, state.clone());
            if state == StreamState::Failed {
                let _ = sender.send(Err(injected_failure(count))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

/// `opencensus.proto.agent.metrics.v1.MetricsService`.
pub(crate) struct MetricsReceiver {
    pub(crate) shared: Arc<Shared>,
    pub(crate) generation: u64,
}

#[tonic::async_trait]
impl MetricsService for MetricsReceiver {
    type ExportStream = ReceiverStream<Result<ExportMetricsServiceResponse, Status>>;

    async fn export(
        &self,
        request: Request<Streaming<ExportMetricsServiceRequest>>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let kind = StreamKind::MetricsExport;
        let shared = Arc::clone(&self.shared);
        let id = shared.recorder.open_stream(kind, self.generation, request.metadata());
        let (sender, receiver) = mpsc::channel(1);
        let incoming = request.into_inner();
        tokio::spawn(async move {
            let mut context = StreamContext::default();
            let (state, count) =
                drive(&shared, id, kind, incoming, |message: ExportMetricsServiceRequest| {
                    shared.recorder.message(id, kind, message.node.as_ref());
                    context.update(message.node, message.resource);
                    if !shared.recorder.wants_records() {
                        shared.recorder.count_only(0, message.metrics.len());
                        return;
                    }
                    let metrics = message
                        .metrics
                        .into_iter()
                        .map(|metric| ReceivedMetric {
                            resource: metric.resource.clone().or_else(|| context.resource.clone()),
                            node: context.node.clone(),
                            stream: id,
                            metric,
                        })
                        .collect();
                    shared.recorder.metrics(metrics);
                })
                .await;
            shared.recorder.end_stream(id, state.clone());
            if state == StreamState::Failed {
                let _ = sender.send(Err(injected_failure(count))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}
