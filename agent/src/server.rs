//! Starting, killing and restarting the receiver, and the handle tests drive it through.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use oclayer_proto::agent::common::v1::Node;
use oclayer_proto::agent::metrics::v1::metrics_service_server::MetricsServiceServer;
use oclayer_proto::agent::trace::v1::trace_service_server::TraceServiceServer;
use oclayer_proto::tonic::codec::CompressionEncoding;
use oclayer_proto::tonic::transport::server::{Connected, TcpConnectInfo};
use oclayer_proto::tonic::transport::{Identity, Server, ServerTlsConfig};
use oclayer_proto::trace::v1::TraceConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::record::{
    AgentEvent, NodeOnFirstMessage, ReceivedConfig, ReceivedMetric, ReceivedSpan, Recorder, Snapshot,
    SpanTally, StreamKind, StreamRecord, StreamState, WaitTimeout,
};
use crate::service::{ConfigPush, Faults, MetricsReceiver, Shared, TraceReceiver};

/// How long [`AgentHandle::kill`] waits for the server task to wind down after breaking its
/// connections; it only has to notice closed sockets, so this is generous.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Events kept for a subscriber that falls behind before it starts losing them.
const DEFAULT_EVENT_CAPACITY: usize = 4096;

/// Starting or restarting the receiver failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The listening socket could not be set up.
    #[error("oclayer-agent: cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// The TLS certificate or key was not accepted.
    #[error(
        "oclayer-agent: the TLS identity was rejected: {0} (expected a PEM certificate chain and the PEM private key that matches it)"
    )]
    Tls(String),
}

/// The receiver: an OpenCensus agent that records what exporters send. Start one with
/// [`Agent::builder`].
#[derive(Debug)]
pub struct Agent;

impl Agent {
    /// A builder with the defaults: plain-text gRPC, everything recorded, no sampler to push.
    pub fn builder() -> AgentBuilder {
        AgentBuilder {
            tls: None,
            keep_records: true,
            sampler: None,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            tally_spans: false,
        }
    }
}

/// Configures an [`Agent`] before it starts.
#[derive(Debug, Clone)]
pub struct AgentBuilder {
    tls: Option<(Vec<u8>, Vec<u8>)>,
    keep_records: bool,
    sampler: Option<TraceConfig>,
    event_capacity: usize,
    tally_spans: bool,
}

impl AgentBuilder {
    /// Serves TLS with this identity: a PEM certificate chain and its PEM private key (for
    /// example from `rcgen`). Clients then connect with `https://`.
    pub fn tls_pem(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.tls = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Whether to keep spans, metrics and library configs in memory (default true). A long-running
    /// agent that only forwards to [`AgentHandle::subscribe`] turns this off so memory stays flat;
    /// stream records are kept either way.
    pub fn keep_records(mut self, keep: bool) -> Self {
        self.keep_records = keep;
        self
    }

    /// A trace config to send down every Config stream as soon as it opens, as if
    /// [`AgentHandle::push_sampler`] had been called before any library connected.
    pub fn sampler(mut self, config: TraceConfig) -> Self {
        self.sampler = Some(config);
        self
    }

    /// Whether to count distinct spans, and distinct spans on streams that ended cleanly (default
    /// false); see [`AgentHandle::span_tally`]. Costs about 16 bytes per distinct span, kept or not: it
    /// is for runs that must account for every span sent, where a span written again after a broken
    /// stream must count once.
    pub fn tally_spans(mut self, tally: bool) -> Self {
        self.tally_spans = tally;
        self
    }

    /// How many events a subscriber ([`AgentHandle::subscribe`]) may fall behind before it loses
    /// some (default 4096).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Binds `addr` (port 0 picks a free port; see [`AgentHandle::local_addr`]) and starts serving
    /// `TraceService` and `MetricsService`.
    pub async fn start(self, addr: SocketAddr) -> Result<AgentHandle, AgentError> {
        let tls = self
            .tls
            .as_ref()
            .map(|(cert, key)| ServerTlsConfig::new().identity(Identity::from_pem(cert, key)));
        let shared = Arc::new(Shared {
            recorder: Recorder::new(self.keep_records, self.event_capacity, self.tally_spans),
            faults: Faults::new(),
            config: ConfigPush::new(self.sampler),
        });
        let running = serve(&shared, addr, tls.clone(), 0).await?;
        let addr = running.addr;
        Ok(AgentHandle { shared, addr, tls, running: Mutex::new(Some(running)), generation: Mutex::new(0) })
    }
}

/// One run of the server: the task, and the token that breaks its connections.
struct Running {
    addr: SocketAddr,
    kill: CancellationToken,
    task: JoinHandle<()>,
}

async fn serve(
    shared: &Arc<Shared>,
    addr: SocketAddr,
    tls: Option<ServerTlsConfig>,
    generation: u64,
) -> Result<Running, AgentError> {
    let listener = bind(addr).map_err(|source| AgentError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| AgentError::Bind { addr, source })?;

    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(|e| AgentError::Tls(e.to_string()))?;
    }
    let trace = TraceServiceServer::new(TraceReceiver { shared: Arc::clone(shared), generation })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let metrics = MetricsServiceServer::new(MetricsReceiver { shared: Arc::clone(shared), generation })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let router = builder.add_service(trace).add_service(metrics);

    let kill = CancellationToken::new();
    let connection_kill = kill.clone();
    let incoming = TcpListenerStream::new(listener).map(move |accepted| {
        accepted.map(|stream| {
            // Small export batches should leave at once rather than wait for Nagle.
            let _ = stream.set_nodelay(true);
            KillableIo::new(stream, &connection_kill)
        })
    });
    let shutdown = kill.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        // The only errors left once the listener is bound are per-connection, and tonic logs and
        // drops those itself; nothing useful remains to report here.
        let _ = router.serve_with_incoming_shutdown(incoming, shutdown).await;
    });
    Ok(Running { addr: local, kill, task })
}

fn bind(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // Lets a restart bind the same port while connections of the killed run sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A TCP connection that fails every read and write once the run it belongs to is killed, so
/// that killing the agent breaks live streams the way a crashed agent would (tonic's own shutdown
/// would wait for them to finish).
struct KillableIo {
    inner: TcpStream,
    // One wait per direction: each keeps only the last waker it was polled with, and reads and
    // writes may be polled from different tasks.
    read_killed: Pin<Box<WaitForCancellationFutureOwned>>,
    write_killed: Pin<Box<WaitForCancellationFutureOwned>>,
    killed: bool,
}

impl KillableIo {
    fn new(inner: TcpStream, kill: &CancellationToken) -> Self {
        KillableIo {
            inner,
            read_killed: Box::pin(kill.clone().cancelled_owned()),
            write_killed: Box::pin(kill.clone().cancelled_owned()),
            killed: false,
        }
    }

    fn check(
        killed: &mut bool,
        wait: &mut Pin<Box<WaitForCancellationFutureOwned>>,
        cx: &mut Context<'_>,
    ) -> bool {
        if !*killed && wait.as_mut().poll(cx).is_ready() {
            *killed = true;
        }
        *killed
    }
}

fn killed_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "oclayer-agent was killed")
}

impl AsyncRead for KillableIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if KillableIo::check(&mut this.killed, &mut this.read_killed, cx) {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if KillableIo::check(&mut this.killed, &mut this.write_killed, cx) {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for KillableIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

/// A running (or killed, restartable) agent. Dropping it stops the server.
pub struct AgentHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: Option<ServerTlsConfig>,
    running: Mutex<Option<Running>>,
    generation: Mutex<u64>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl AgentHandle {
    /// The address the agent listens on (with the real port when started on port 0). It stays the
    /// same across [`restart`](Self::restart)s.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL a client connects to: `http://` or, with TLS, `https://` plus the address.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Whether the server is currently accepting connections.
    pub fn is_running(&self) -> bool {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// Stops the agent as a crash would: closes the listening socket and breaks every open
    /// connection, so clients see their streams fail. The record is kept; [`restart`](Self::restart)
    /// serves again on the same address. Does nothing when already killed.
    pub async fn kill(&self) {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(running) = running {
            running.kill.cancel();
            let abort = running.task.abort_handle();
            if tokio::time::timeout(KILL_GRACE, running.task).await.is_err() {
                abort.abort();
            }
        }
    }

    /// Serves again on the same address after a [`kill`](Self::kill) (killing first if it is
    /// still running). Streams accepted from now on carry the next
    /// [`generation`](StreamRecord::generation).
    pub async fn restart(&self) -> Result<(), AgentError> {
        self.kill().await;
        let generation = {
            let mut generation = self.generation.lock().unwrap_or_else(PoisonError::into_inner);
            *generation += 1;
            *generation
        };
        let running = serve(&self.shared, self.addr, self.tls.clone(), generation).await?;
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) = Some(running);
        Ok(())
    }

    /// Stops the agent for good (as [`kill`](Self::kill) does) and waits until it has let go of
    /// its port.
    pub async fn shutdown(self) {
        self.kill().await;
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.recorder.read(|s| s.spans.clone())
    }

    /// Every metric received so far, in arrival order.
    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        self.shared.recorder.read(|s| s.metrics.clone())
    }

    /// Every `CurrentLibraryConfig` received on Config streams: the config libraries start with,
    /// and their answers after applying a pushed sampler.
    pub fn library_configs(&self) -> Vec<ReceivedConfig> {
        self.shared.recorder.read(|s| s.library_configs.clone())
    }

    /// Every stream ever opened, in opening order, with its headers, first node and state.
    pub fn streams(&self) -> Vec<StreamRecord> {
        self.shared.recorder.read(|s| s.streams.clone())
    }

    /// The node each stream's first message carried, for the streams that have received one, in
    /// opening order; `None` marks a stream whose first message had no node.
    pub fn nodes(&self) -> Vec<Option<Node>> {
        self.shared.recorder.read(|s| {
            s.streams
                .iter()
                .filter_map(|r| match &r.first_node {
                    NodeOnFirstMessage::Pending => None,
                    NodeOnFirstMessage::Sent(node) => Some(Some(node.clone())),
                    NodeOnFirstMessage::Missing => Some(None),
                })
                .collect()
        })
    }

    /// How many spans arrived since the start, including those not kept (see
    /// [`AgentBuilder::keep_records`]) and those forgotten by [`clear`](Self::clear).
    pub fn span_count(&self) -> u64 {
        self.shared.recorder.read(|s| s.spans_received)
    }

    /// How many metrics arrived since the start, kept or not.
    pub fn metric_count(&self) -> u64 {
        self.shared.recorder.read(|s| s.metrics_received)
    }

    /// Distinct spans received so far, on any stream and on cleanly ended streams, when the builder
    /// asked for [`tally_spans`](AgentBuilder::tally_spans); `None` otherwise. Unlike
    /// [`span_count`](Self::span_count), a span sent again after a broken stream counts once.
    pub fn span_tally(&self) -> Option<SpanTally> {
        self.shared.recorder.span_tally()
    }

    /// Waits until [`span_count`](Self::span_count) reaches `n` and returns it; works with
    /// `keep_records(false)`, for high-volume runs that only count.
    pub async fn wait_for_span_count(&self, n: u64, timeout: Duration) -> Result<u64, WaitTimeout> {
        self.shared
            .recorder
            .wait_until(
                timeout,
                || format!("{n} spans received"),
                |s| (s.spans_received >= n).then_some(s.spans_received),
                |s| format!("{} spans received", s.spans_received),
            )
            .await
    }

    /// How many streams of `kind` were opened so far.
    pub fn stream_count(&self, kind: StreamKind) -> usize {
        self.shared.recorder.read(|s| s.streams.iter().filter(|r| r.kind == kind).count())
    }

    /// How many streams of `kind` are open now.
    pub fn open_stream_count(&self, kind: StreamKind) -> usize {
        self.shared
            .recorder
            .read(|s| s.streams.iter().filter(|r| r.kind == kind && r.state == StreamState::Open).count())
    }

    /// A copy of the whole record.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.recorder.snapshot()
    }

    /// Forgets the spans, metrics and library configs received so far (stream records and the
    /// [`span_count`](Self::span_count) / [`metric_count`](Self::metric_count) totals stay), to start
    /// a new phase of a test.
    pub fn clear(&self) {
        self.shared.recorder.clear();
    }

    /// Waits until at least `n` spans have arrived and returns all of them.
    pub async fn wait_for_spans(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>, WaitTimeout> {
        self.shared
            .recorder
            .wait_until(
                timeout,
                || format!("{n} spans"),
                |s| (s.spans.len() >= n).then(|| s.spans.clone()),
                |s| format!("{} spans", s.spans.len()),
            )
            .await
    }

    /// Waits until at least `n` metrics have arrived and returns all of them.
    pub async fn wait_for_metrics(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedMetric>, WaitTimeout> {
        self.shared
            .recorder
            .wait_until(
                timeout,
                || format!("{n} metrics"),
                |s| (s.metrics.len() >= n).then(|| s.metrics.clone()),
                |s| format!("{} metrics", s.metrics.len()),
            )
            .await
    }

    /// Waits until at least `n` library configs have arrived and returns all of them.
    pub async fn wait_for_library_configs(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedConfig>, WaitTimeout> {
        self.shared
            .recorder
            .wait_until(
                timeout,
                || format!("{n} library configs"),
                |s| (s.library_configs.len() >= n).then(|| s.library_configs.clone()),
                |s| format!("{} library configs", s.library_configs.len()),
            )
            .await
    }

    /// Waits until at least `n` streams of `kind` are open at the same time.
    pub async fn wait_for_open_streams(
        &self,
        kind: StreamKind,
        n: usize,
        timeout: Duration,
    ) -> Result<(), WaitTimeout> {
        let open = move |s: &Snapshot| {
            s.streams.iter().filter(|r| r.kind == kind && r.state == StreamState::Open).count()
        };
        self.shared
            .recorder
            .wait_until(
                timeout,
                || format!("{n} open {kind} streams"),
                |s| (open(s) >= n).then_some(()),
                |s| format!("{} open {kind} streams", open(s)),
            )
            .await
    }

    /// Waits until `condition` holds for the record; `what` names it in the timeout error.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&Snapshot) -> bool,
    ) -> Result<(), WaitTimeout> {
        self.shared
            .recorder
            .wait_until(timeout, || what.to_owned(), |s| condition(s).then_some(()), Snapshot::summary)
            .await
    }

    /// Makes `config` the agent's sampler and sends it (as `UpdatedLibraryConfig`) down every open
    /// Config stream; streams opened later get it when they open. Returns how many open streams it
    /// was sent to. Libraries answer with a `CurrentLibraryConfig`, see
    /// [`library_configs`](Self::library_configs). [`crate::sampler`] builds the configs.
    pub fn push_sampler(&self, config: TraceConfig) -> usize {
        self.shared.config.push(config)
    }

    /// From now on, ends every stream of `kind` with status `UNAVAILABLE` once it has carried
    /// `messages` messages (which are recorded); streams already past that end on their next
    /// message, and `0` refuses new streams before any message. Lasts until
    /// [`stop_failing`](Self::stop_failing).
    pub fn fail_after(&self, kind: StreamKind, messages: u64) {
        self.shared.faults.set_fail_after(kind, Some(messages));
    }

    /// Undoes [`fail_after`](Self::fail_after) for `kind`.
    pub fn stop_failing(&self, kind: StreamKind) {
        self.shared.faults.set_fail_after(kind, None);
    }

    /// Waits `per_message` before handling each message on every stream (and meanwhile reads
    /// nothing, so HTTP/2 flow control pushes back on senders). A message being held shows in
    /// [`StreamRecord::held`]. A new setting applies to held messages too; `Duration::ZERO`
    /// releases them and restores full speed.
    pub fn slow_down(&self, per_message: Duration) {
        self.shared.faults.set_delay(per_message);
    }

    /// Every event from now on, in order. A subscriber that falls more than the builder's
    /// [`event_capacity`](AgentBuilder::event_capacity) behind loses the oldest and is told how
    /// many (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.shared.recorder.subscribe()
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        if let Some(running) = self.running.lock().unwrap_or_else(PoisonError::into_inner).take() {
            // Breaking the connections ends the server task on its own; nobody is left to await it.
            running.kill.cancel();
        }
    }
}
