//! What the agent received, kept in memory: streams, spans, metrics and library configs.
//!
//! The recorder is shared by every stream handler. Its lock is held only to copy data in or out,
//! never across an `.await`, so a slow test reader cannot stall the gRPC handlers.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use oclayer_proto::agent::common::v1::Node;
use oclayer_proto::metrics::v1::Metric;
use oclayer_proto::resource::v1::Resource;
use oclayer_proto::tonic::metadata::MetadataMap;
use oclayer_proto::trace::v1::{Span, TraceConfig};
use tokio::sync::{broadcast, watch};

/// Identifies one gRPC stream; ids count up from 1 in the order streams were opened, across
/// restarts of the same agent.
pub type StreamId = u64;

/// The three streaming calls of the OpenCensus agent protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKind {
    /// `TraceService.Export`: span batches.
    TraceExport,
    /// `MetricsService.Export`: metric batches.
    MetricsExport,
    /// `TraceService.Config`: the library's current config up, sampler updates down.
    TraceConfig,
}

impl StreamKind {
    /// Every kind, in a fixed order.
    pub const ALL: [StreamKind; 3] =
        [StreamKind::TraceExport, StreamKind::MetricsExport, StreamKind::TraceConfig];

    /// The gRPC method path of this kind of stream.
    pub fn method(self) -> &'static str {
        match self {
            StreamKind::TraceExport => "/opencensus.proto.agent.trace.v1.TraceService/Export",
            StreamKind::MetricsExport => "/opencensus.proto.agent.metrics.v1.MetricsService/Export",
            StreamKind::TraceConfig => "/opencensus.proto.agent.trace.v1.TraceService/Config",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            StreamKind::TraceExport => 0,
            StreamKind::MetricsExport => 1,
            StreamKind::TraceConfig => 2,
        }
    }
}

impl std::fmt::Display for StreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamKind::TraceExport => "trace export",
            StreamKind::MetricsExport => "metrics export",
            StreamKind::TraceConfig => "trace config",
        })
    }
}

/// What the first message of a stream said about the sender. The protocol requires a `Node` on the
/// first message of every stream; a stream that opens without one is recorded as [`Missing`].
///
/// [`Missing`]: NodeOnFirstMessage::Missing
#[derive(Debug, Clone, PartialEq)]
pub enum NodeOnFirstMessage {
    /// No message has arrived on the stream yet.
    Pending,
    /// The first message carried this node.
    Sent(Node),
    /// The first message had no node: a protocol violation by the sender.
    Missing,
}

impl NodeOnFirstMessage {
    /// The node, when the first message carried one.
    pub fn node(&self) -> Option<&Node> {
        match self {
            NodeOnFirstMessage::Sent(node) => Some(node),
            NodeOnFirstMessage::Pending | NodeOnFirstMessage::Missing => None,
        }
    }
}

/// How a stream ended, or that it has not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// Still open.
    Open,
    /// The client closed its side cleanly; the agent answered with status OK.
    Closed,
    /// The agent ended it on purpose (see [`AgentHandle::fail_after`](crate::AgentHandle::fail_after)).
    Failed,
    /// The transport broke or the client cancelled; the text says how.
    Broken(String),
}

/// One gRPC stream as the agent saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    /// The stream's id.
    pub id: StreamId,
    /// Which call it is.
    pub kind: StreamKind,
    /// Which run of the server accepted it: 0 for the first start, +1 on each
    /// [`restart`](crate::AgentHandle::restart).
    pub generation: u64,
    /// The request metadata (HTTP/2 headers) in arrival order, names lower-case; values that are
    /// not valid UTF-8 are shown lossily.
    pub headers: Vec<(String, String)>,
    /// The message encoding the client declared (`grpc-encoding`), such as `gzip`; `None` when it
    /// sends uncompressed messages.
    pub compression: Option<String>,
    /// The node on the first message.
    pub first_node: NodeOnFirstMessage,
    /// Messages received and recorded so far.
    pub messages: u64,
    /// Messages that arrived but are held back by [`slow_down`](crate::AgentHandle::slow_down);
    /// they are recorded (and counted in `messages`) once the delay is over.
    pub held: u64,
    /// Whether, and how, the stream ended.
    pub state: StreamState,
}

impl StreamRecord {
    /// The first value of request header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// A span with the context it arrived in.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The span as decoded.
    pub span: Span,
    /// The node in effect on its stream: the latest one sent on the stream up to this span.
    pub node: Option<Node>,
    /// The span's own resource, or else the latest request-level resource on its stream.
    pub resource: Option<Resource>,
    /// The stream it came on.
    pub stream: StreamId,
}

impl ReceivedSpan {
    /// The span's name, or "" when it has none.
    pub fn name(&self) -> &str {
        self.span.name.as_ref().map_or("", |name| name.value.as_str())
    }

    /// The trace id as lower-case hex.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id as lower-case hex.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span id as lower-case hex, `None` for a root span (empty parent id).
    pub fn parent_span_id_hex(&self) -> Option<String> {
        (!self.span.parent_span_id.is_empty()).then(|| hex(&self.span.parent_span_id))
    }

    /// The service name from the node, when there is one.
    pub fn service_name(&self) -> Option<&str> {
        service_name(self.node.as_ref())
    }
}

/// A metric with the context it arrived in.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMetric {
    /// The metric as decoded.
    pub metric: Metric,
    /// The node in effect on its stream.
    pub node: Option<Node>,
    /// The metric's own resource, or else the latest request-level resource on its stream.
    pub resource: Option<Resource>,
    /// The stream it came on.
    pub stream: StreamId,
}

impl ReceivedMetric {
    /// The metric's name (from its descriptor), or "" when it has none.
    pub fn name(&self) -> &str {
        self.metric.metric_descriptor.as_ref().map_or("", |d| d.name.as_str())
    }
}

/// A `CurrentLibraryConfig` a library sent on a Config stream: its config at start, and its answer
/// after applying each sampler the agent pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedConfig {
    /// The config the library says it applies.
    pub config: Option<TraceConfig>,
    /// The node in effect on the stream.
    pub node: Option<Node>,
    /// The stream it came on.
    pub stream: StreamId,
}

/// Something the agent received, as delivered to subscribers of
/// [`AgentHandle::subscribe`](crate::AgentHandle::subscribe).
#[derive(Debug, Clone)]
pub enum AgentEvent {
    /// A stream was opened.
    StreamOpened(StreamRecord),
    /// The first message of a stream arrived; `node` is what it carried.
    FirstMessage {
        /// The stream.
        stream: StreamId,
        /// Its kind.
        kind: StreamKind,
        /// The node on the first message, `None` when it had none.
        node: Option<Node>,
    },
    /// One export request's spans.
    Spans(Vec<ReceivedSpan>),
    /// One export request's metrics.
    Metrics(Vec<ReceivedMetric>),
    /// A library reported its config.
    LibraryConfig(ReceivedConfig),
    /// A stream ended.
    StreamEnded {
        /// The stream.
        stream: StreamId,
        /// How it ended.
        state: StreamState,
    },
}

/// Waiting for the record to reach some state took longer than allowed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("oclayer-agent: waited {waited:?} for {wanted}, but had {seen}")]
pub struct WaitTimeout {
    /// What was awaited, in words ("10 spans").
    pub wanted: String,
    /// What there was when the time ran out, in words ("7 spans").
    pub seen: String,
    /// How long the wait lasted.
    pub waited: Duration,
}

/// Everything recorded so far, for [`AgentHandle::wait_until`](crate::AgentHandle::wait_until).
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Every stream ever opened, in opening order.
    pub streams: Vec<StreamRecord>,
    /// Every span received, in arrival order.
    pub spans: Vec<ReceivedSpan>,
    /// Every metric received, in arrival order.
    pub metrics: Vec<ReceivedMetric>,
    /// Every library config received, in arrival order.
    pub library_configs: Vec<ReceivedConfig>,
    /// How many spans arrived since the start, kept or not (see
    /// [`AgentBuilder::keep_records`](crate::AgentBuilder::keep_records)); [`clear`](crate::AgentHandle::clear)
    /// leaves it alone.
    pub spans_received: u64,
    /// How many metrics arrived since the start, kept or not.
    pub metrics_received: u64,
}

/// Distinct spans received, for runs that must account for every span a library sent (see
/// [`AgentBuilder::tally_spans`](crate::AgentBuilder::tally_spans)). A span is identified by its trace
/// and span ids, folded into 64 bits: two different spans count as one only if their folded ids collide,
/// which for random ids is about one chance in 10^7 among a million spans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanTally {
    /// Distinct spans received on any stream, including streams that broke afterwards.
    pub distinct: u64,
    /// Distinct spans received on streams that ended cleanly (the client half-closed and the agent answered
    /// OK): what a client that waits for a clean end counts as delivered.
    pub confirmed: u64,
}

/// Per folded span id: bit 0 seen, bit 1 seen on a cleanly ended stream.
#[derive(Default)]
struct IdTally {
    flags: HashMap<u64, u8>,
    confirmed: u64,
}

const SEEN: u8 = 1;
const CONFIRMED: u8 = 2;

/// The 64-bit key [`SpanTally`] counts a span under.
pub(crate) fn span_key(span: &Span) -> u64 {
    let word = |bytes: &[u8]| {
        let mut buf = [0u8; 8];
        let n = bytes.len().min(8);
        buf[..n].copy_from_slice(&bytes[..n]);
        u64::from_le_bytes(buf)
    };
    let trace = &span.trace_id;
    let high = word(trace.get(8..).unwrap_or_default());
    word(&span.span_id) ^ word(trace).rotate_left(21) ^ high.rotate_left(42)
}

/// The shared in-memory record. `keep` false turns it into a pass-through for subscribers (the
/// binary), so that a long-running agent does not grow without bound.
pub(crate) struct Recorder {
    state: Mutex<Snapshot>,
    next_id: Mutex<StreamId>,
    version: watch::Sender<u64>,
    events: broadcast::Sender<AgentEvent>,
    keep: bool,
    /// `Some` when distinct spans are tallied.
    tally: Option<Mutex<IdTally>>,
}

impl Recorder {
    pub(crate) fn new(keep: bool, event_capacity: usize, tally: bool) -> Self {
        let (events, _) = broadcast::channel(event_capacity.max(1));
        Recorder {
            state: Mutex::new(Snapshot::default()),
            next_id: Mutex::new(1),
            version: watch::channel(0).0,
            events,
            keep,
            tally: tally.then(|| Mutex::new(IdTally::default())),
        }
    }

    /// Whether distinct spans are tallied.
    pub(crate) fn tallies(&self) -> bool {
        self.tally.is_some()
    }

    /// Notes spans (by [`span_key`]) as received.
    pub(crate) fn tally_seen(&self, keys: &[u64]) {
        if let Some(tally) = &self.tally {
            let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
            for key in keys {
                *tally.flags.entry(*key).or_default() |= SEEN;
            }
        }
    }

    /// Notes spans (by [`span_key`]) as received on a stream that ended cleanly.
    pub(crate) fn tally_confirmed(&self, keys: &[u64]) {
        if let Some(tally) = &self.tally {
            let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
            let IdTally { flags, confirmed } = &mut *tally;
            for key in keys {
                let flag = flags.entry(*key).or_default();
                if *flag & CONFIRMED == 0 {
                    *confirmed += 1;
                }
                *flag |= SEEN | CONFIRMED;
            }
        }
    }

    pub(crate) fn span_tally(&self) -> Option<SpanTally> {
        let tally = self.tally.as_ref()?.lock().unwrap_or_else(PoisonError::into_inner);
        Some(SpanTally { distinct: tally.flags.len() as u64, confirmed: tally.confirmed })
    }

    fn state(&self) -> MutexGuard<'_, Snapshot> {
        // A handler that panicked mid-update leaves at worst a partial record; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn emit(&self, event: AgentEvent) {
        // No subscriber is the normal case in tests; nothing to do then.
        let _ = self.events.send(event);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.events.subscribe()
    }

    pub(crate) fn open_stream(&self, kind: StreamKind, generation: u64, metadata: &MetadataMap) -> StreamId {
        let id = {
            let mut next = self.next_id.lock().unwrap_or_else(PoisonError::into_inner);
            let id = *next;
            *next += 1;
            id
        };
        let headers: Vec<(String, String)> = metadata
            .clone()
            .into_headers()
            .iter()
            .map(|(name, value)| {
                (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
            })
            .collect();
        let compression = headers
            .iter()
            .find(|(name, _)| name == "grpc-encoding")
            .map(|(_, value)| value.clone())
            .filter(|value| value != "identity");
        let record = StreamRecord {
            id,
            kind,
            generation,
            headers,
            compression,
            first_node: NodeOnFirstMessage::Pending,
            messages: 0,
            held: 0,
            state: StreamState::Open,
        };
        // Streams are always kept (they are few), even without `keep`, so that counts work.
        self.state().streams.push(record.clone());
        self.changed();
        self.emit(AgentEvent::StreamOpened(record));
        id
    }

    /// Counts a message on `stream`; on the first one, records which node it carried.
    pub(crate) fn message(&self, stream: StreamId, kind: StreamKind, node: Option<&Node>) {
        let first = {
            let mut state = self.state();
            let Some(record) = state.streams.iter_mut().find(|r| r.id == stream) else { return };
            record.messages += 1;
            if record.first_node == NodeOnFirstMessage::Pending {
                record.first_node = match node {
                    Some(node) => NodeOnFirstMessage::Sent(node.clone()),
                    None => NodeOnFirstMessage::Missing,
                };
                true
            } else {
                false
            }
        };
        self.changed();
        if first {
            self.emit(AgentEvent::FirstMessage { stream, kind, node: node.cloned() });
        }
    }

    /// Notes that a message on `stream` starts (`true`) or stops (`false`) being held back.
    pub(crate) fn held(&self, stream: StreamId, holding: bool) {
        {
            let mut state = self.state();
            if let Some(record) = state.streams.iter_mut().find(|r| r.id == stream) {
                record.held = if holding { record.held + 1 } else { record.held.saturating_sub(1) };
            }
        }
        self.changed();
    }

    /// Whether anyone looks at individual records. When nobody does (a benchmark sink), handlers
    /// only count, saving a copy of the node and resource per span.
    pub(crate) fn wants_records(&self) -> bool {
        self.keep || self.events.receiver_count() > 0
    }

    /// Counts records that nobody wants to see one by one.
    pub(crate) fn count_only(&self, spans: usize, metrics: usize) {
        if spans == 0 && metrics == 0 {
            return;
        }
        {
            let mut state = self.state();
            state.spans_received += spans as u64;
            state.metrics_received += metrics as u64;
        }
        self.changed();
    }

    pub(crate) fn spans(&self, spans: Vec<ReceivedSpan>) {
        if spans.is_empty() {
            return;
        }
        {
            let mut state = self.state();
            state.spans_received += spans.len() as u64;
            if self.keep {
                state.spans.extend(spans.iter().cloned());
            }
        }
        self.changed();
        self.emit(AgentEvent::Spans(spans));
    }

    pub(crate) fn metrics(&self, metrics: Vec<ReceivedMetric>) {
        if metrics.is_empty() {
            return;
        }
        {
            let mut state = self.state();
            state.metrics_received += metrics.len() as u64;
            if self.keep {
                state.metrics.extend(metrics.iter().cloned());
            }
        }
        self.changed();
        self.emit(AgentEvent::Metrics(metrics));
    }

    pub(crate) fn library_config(&self, config: ReceivedConfig) {
        if self.keep {
            self.state().library_configs.push(config.clone());
        }
        self.changed();
        self.emit(AgentEvent::LibraryConfig(config));
    }

    pub(crate) fn end_stream(&self, stream: StreamId, end: StreamState) {
        {
            let mut state = self.state();
            if let Some(record) = state.streams.iter_mut().find(|r| r.id == stream) {
                record.state = end.clone();
            }
        }
        self.changed();
        self.emit(AgentEvent::StreamEnded { stream, state: end });
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        self.state().clone()
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> T {
        f(&self.state())
    }

    pub(crate) fn clear(&self) {
        let mut state = self.state();
        state.spans.clear();
        state.metrics.clear();
        state.library_configs.clear();
        drop(state);
        self.changed();
    }

    /// Waits until `done` holds for the record, or `timeout` passes; `seen` describes how far it
    /// got, for the error message.
    pub(crate) async fn wait_until<T>(
        &self,
        timeout: Duration,
        wanted: impl FnOnce() -> String,
        mut done: impl FnMut(&Snapshot) -> Option<T>,
        seen: impl Fn(&Snapshot) -> String,
    ) -> Result<T, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut version = self.version.subscribe();
        loop {
            // Mark the current version seen before looking, so that a change made after the look
            // wakes the wait below instead of being missed.
            version.borrow_and_update();
            if let Some(found) = done(&self.state()) {
                return Ok(found);
            }
            let woke = tokio::time::timeout_at(deadline, version.changed()).await;
            if !matches!(woke, Ok(Ok(()))) {
                // Time is up (or the recorder is gone, which cannot happen while `self` lives).
                if let Some(found) = done(&self.state()) {
                    return Ok(found);
                }
                return Err(WaitTimeout { wanted: wanted(), seen: seen(&self.state()), waited: timeout });
            }
        }
    }
}

impl Snapshot {
    /// A one-line summary, for messages: "3 streams (2 open), 10 spans, 4 metrics, 1 library configs"
    /// (span and metric numbers count everything received).
    pub fn summary(&self) -> String {
        let open = self.streams.iter().filter(|r| r.state == StreamState::Open).count();
        format!(
            "{} streams ({open} open), {} spans, {} metrics, {} library configs",
            self.streams.len(),
            self.spans_received,
            self.metrics_received,
            self.library_configs.len()
        )
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The service name a node declares, if any.
pub fn service_name(node: Option<&Node>) -> Option<&str> {
    node.and_then(|n| n.service_info.as_ref()).map(|s| s.name.as_str()).filter(|name| !name.is_empty())
}
