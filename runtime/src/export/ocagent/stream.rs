//! The export streams (`TraceService.Export`, `MetricsService.Export`): one task each, writing what its
//! queue holds and getting it confirmed.
//!
//! Agents never answer single messages, so the only proof that the agent read what we wrote is a clean end
//! of stream: we half-close, the agent reads to the end and answers OK. A task therefore ends its stream
//! regularly (the *rotation*) and opens the next one when there is more to send; each new stream opens with
//! the Node and the Resource. A stream ends:
//!
//! - after [`ROTATE_AGE`] since its first unconfirmed write, so nothing waits long for confirmation;
//! - when its unconfirmed items reach half the queue bound (at most [`MAX_ROTATE_ITEMS`]), so the queue
//!   always has room for new items next to those in flight;
//! - after `window` messages: the window halves after a broken stream and doubles after a clean one, so an
//!   agent that breaks streams after a few messages (a proxy's limit, a fault) still gets everything, a few
//!   messages per stream;
//! - when a flush or shutdown asks for confirmation.
//!
//! A stream that breaks, or that the agent ends before we did, has its unconfirmed items requeued; the task
//! then waits its backoff and tries again.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oclayer_proto::agent::common::v1::Node;
use oclayer_proto::agent::metrics::v1::ExportMetricsServiceRequest;
use oclayer_proto::agent::trace::v1::ExportTraceServiceResponse;
use oclayer_proto::prost::Message;
use oclayer_proto::resource::v1::Resource;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::backoff::Backoff;
use super::codec::EncodedCodec;
use super::delivery::{Chunk, ReportChunk, SpanChunk};
use super::transport::Transport;
use super::{Lane, Shared, convert_metrics, encode_span};
use crate::stats::health;

/// The longest a written item waits for its stream to be confirmed.
pub(super) const ROTATE_AGE: Duration = Duration::from_secs(5);
/// The most unconfirmed items one stream carries.
pub(super) const MAX_ROTATE_ITEMS: usize = 16 * 1024;
/// The most messages one stream carries, and the window's start.
const MAX_WINDOW: usize = 256;
/// How long the agent may take to answer our end of stream before the stream counts as broken.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages encoded ahead of what HTTP/2 flow control lets out.
const STREAM_BUFFER: usize = 4;
/// Target size of one message. gRPC servers refuse messages over 4 MiB by default; a single span or
/// metric larger than this still goes, alone.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// What differs between the trace and the metrics stream.
pub(super) trait Wire: Send + Sync + 'static {
    /// The queued item.
    type Chunk: Chunk + Send + 'static;
    /// The stream's request message.
    type Request: Message + Send + 'static;
    /// The RPC, for logs.
    const RPC: &'static str;
    /// The most items taken from the queue at once.
    const TAKE: usize;

    /// The lane this stream drains.
    fn lane(shared: &Shared) -> &Lane<Self::Chunk>;

    /// Converts `chunks` into requests of about [`MAX_MESSAGE_BYTES`] each, appended to `out`.
    fn requests(chunks: &[Self::Chunk], out: &mut Vec<Self::Request>);

    /// Makes `request` the first of a stream: it carries the Node and the Resource.
    fn identify(request: &mut Self::Request, node: &Node, resource: &Resource);

    /// Runs one stream call: sends what `requests` yields, and resolves with the call's final status.
    fn call(
        transport: &Transport,
        requests: ReceiverStream<Self::Request>,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send + 'static;
}

/// `TraceService.Export`, whose requests are encoded straight from the spans (see `encode_span.rs`).
pub(super) struct Traces;

/// The gRPC path of `TraceService.Export`.
const TRACE_EXPORT_PATH: &str = "/opencensus.proto.agent.trace.v1.TraceService/Export";
/// `ExportTraceServiceRequest.node` and `.resource`.
const REQUEST_NODE: u32 = 1;
const REQUEST_RESOURCE: u32 = 3;

impl Wire for Traces {
    type Chunk = SpanChunk;
    /// An encoded `ExportTraceServiceRequest`.
    type Request = Vec<u8>;
    const RPC: &'static str = "TraceService.Export";
    const TAKE: usize = 512;

    fn lane(shared: &Shared) -> &Lane<SpanChunk> {
        &shared.spans
    }

    fn requests(chunks: &[SpanChunk], out: &mut Vec<Vec<u8>>) {
        let spans = chunks.iter().map(|chunk| chunk.spans().len()).sum::<usize>();
        // About what a router span takes; the buffer grows if the spans are bigger.
        let mut current = Vec::with_capacity((spans * 320).min(MAX_MESSAGE_BYTES));
        for data in chunks.iter().flat_map(SpanChunk::spans) {
            encode_span::push_span(&mut current, data);
            if current.len() >= MAX_MESSAGE_BYTES {
                out.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            out.push(current);
        }
    }

    fn identify(request: &mut Vec<u8>, node: &Node, resource: &Resource) {
        // Field order does not matter on the wire; the Node goes first for readers of hex dumps.
        let mut identity = Vec::with_capacity(node.encoded_len() + resource.encoded_len() + 8);
        oclayer_proto::prost::encoding::message::encode(REQUEST_NODE, node, &mut identity);
        oclayer_proto::prost::encoding::message::encode(REQUEST_RESOURCE, resource, &mut identity);
        request.splice(0..0, identity);
    }

    fn call(
        transport: &Transport,
        requests: ReceiverStream<Vec<u8>>,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send + 'static {
        let mut grpc = transport.grpc();
        let request = transport.request(requests);
        async move {
            grpc.ready().await.map_err(|e| {
                tonic::Status::unavailable(format!("the connection to the agent is not ready: {e}"))
            })?;
            let path = http::uri::PathAndQuery::from_static(TRACE_EXPORT_PATH);
            let codec = EncodedCodec::<ExportTraceServiceResponse>::default();
            let mut responses = grpc.streaming(request, path, codec).await?.into_inner();
            while responses.message().await?.is_some() {}
            Ok(())
        }
    }
}

/// `MetricsService.Export`.
pub(super) struct Metrics;

impl Wire for Metrics {
    type Chunk = ReportChunk;
    type Request = ExportMetricsServiceRequest;
    const RPC: &'static str = "MetricsService.Export";
    const TAKE: usize = 1;

    fn lane(shared: &Shared) -> &Lane<ReportChunk> {
        &shared.reports
    }

    fn requests(chunks: &[ReportChunk], out: &mut Vec<ExportMetricsServiceRequest>) {
        for chunk in chunks {
            let mut current = ExportMetricsServiceRequest::default();
            let mut size = 0;
            for view in chunk.report.iter() {
                let metric = convert_metrics::metric(view);
                let metric_size = metric.encoded_len();
                if size + metric_size > MAX_MESSAGE_BYTES && !current.metrics.is_empty() {
                    out.push(std::mem::take(&mut current));
                    size = 0;
                }
                size += metric_size;
                current.metrics.push(metric);
            }
            // An empty report (no views registered) still goes: it is the proof of life the agent sees.
            out.push(current);
        }
    }

    fn identify(request: &mut ExportMetricsServiceRequest, node: &Node, resource: &Resource) {
        request.node = Some(node.clone());
        request.resource = Some(resource.clone());
    }

    fn call(
        transport: &Transport,
        requests: ReceiverStream<ExportMetricsServiceRequest>,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send + 'static {
        let mut client = transport.metrics_client();
        let request = transport.request(requests);
        async move {
            let mut responses = client.export(request).await?.into_inner();
            while responses.message().await?.is_some() {}
            Ok(())
        }
    }
}

/// How one stream went.
enum Outcome {
    /// The agent confirmed everything written (possibly nothing).
    Confirmed,
    /// The stream broke, or the agent ended it first; `written` messages had been handed to it.
    Failed { error: String, written: usize },
    /// The exporter is stopping.
    Stopped,
}

/// Why the writing side of a stream stopped.
enum FeedEnd {
    /// Time to end the stream and have it confirmed.
    Close,
    /// The call dropped its request stream: it is ending on its own.
    CallEnded,
}

/// The stream task of `W`: until stopped, opens a stream whenever there is something to send, and keeps
/// the delivery promise described in the module docs.
pub(super) async fn run<W: Wire>(shared: Arc<Shared>) {
    let lane = W::lane(&shared);
    let mut backoff = Backoff::new(shared.reconnection);
    let mut window = MAX_WINDOW;
    let mut failing_since: Option<Instant> = None;
    let mut last_warning: Option<Instant> = None;
    loop {
        if !wait_for_work(&shared, lane).await {
            return;
        }
        match session::<W>(&shared, lane, window).await {
            Outcome::Confirmed => {
                // The error goes before the waiters wake: a flush that returns sees the recovery.
                let recovered = failing_since.take();
                if recovered.is_some() {
                    shared.set_last_error(None);
                }
                let confirmed = lane.with_queue(|queue| queue.confirm());
                lane.delivered.fetch_add(confirmed as u64, Ordering::Relaxed);
                shared.progress.notify_waiters();
                window = (window * 2).min(MAX_WINDOW);
                backoff.reset();
                if let Some(since) = recovered {
                    tracing::info!(
                        rpc = W::RPC,
                        agent = shared.transport.target(),
                        after = ?since.elapsed(),
                        "ocagent exporter: delivering again"
                    );
                }
            }
            Outcome::Failed { error, written } => {
                let requeued = lane.with_queue(|queue| queue.requeue());
                health::record_export_error(super::NAME);
                if written > 0 {
                    window = (written / 2).max(1);
                }
                let delay = backoff.next_delay();
                let now = Instant::now();
                failing_since.get_or_insert(now);
                // The first failure of a run is a warning; while it lasts, one warning a minute.
                if last_warning.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60))
                    || backoff.failures() == 1
                {
                    last_warning = Some(now);
                    tracing::warn!(
                        rpc = W::RPC,
                        agent = shared.transport.target(),
                        %error,
                        kept = requeued,
                        retry_in = ?delay,
                        "ocagent exporter: stream failed; what it carried stays queued"
                    );
                } else {
                    tracing::debug!(rpc = W::RPC, %error, retry_in = ?delay, "ocagent exporter: stream failed again");
                }
                shared.set_last_error(Some(with_hint(error)));
                if !pause(&shared, delay).await {
                    return;
                }
            }
            Outcome::Stopped => {
                lane.with_queue(|queue| queue.requeue());
                return;
            }
        }
    }
}

/// Waits until the lane has items to write. `false`: stop (stop requested, or closing with nothing left).
async fn wait_for_work<C: Chunk>(shared: &Shared, lane: &Lane<C>) -> bool {
    loop {
        let woken = lane.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if shared.stop.is_cancelled() {
            return false;
        }
        if lane.with_queue(|queue| queue.pending_len()) > 0 {
            return true;
        }
        if shared.closing.is_cancelled() {
            return false;
        }
        tokio::select! {
            () = &mut woken => {}
            () = shared.closing.cancelled() => {}
            () = shared.stop.cancelled() => return false,
        }
    }
}

/// Sleeps `delay` before the next attempt. Shutdown cuts a running sleep short once, for a last attempt;
/// `false` when the exporter stops.
async fn pause(shared: &Shared, delay: Duration) -> bool {
    let closing_already = shared.closing.is_cancelled();
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = shared.closing.cancelled(), if !closing_already => true,
        () = shared.stop.cancelled() => false,
    }
}

/// One stream: open, write, end, and learn whether the agent confirmed it.
async fn session<W: Wire>(shared: &Shared, lane: &Lane<W::Chunk>, window: usize) -> Outcome {
    let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
    let call = W::call(&shared.transport, ReceiverStream::new(receiver));
    tokio::pin!(call);
    let written = AtomicUsize::new(0);
    let feed = feed::<W>(shared, lane, window, sender, &written);
    tokio::pin!(feed);

    let early = tokio::select! {
        biased;
        () = shared.stop.cancelled() => return Outcome::Stopped,
        result = &mut call => Some(result),
        end = &mut feed => match end {
            FeedEnd::Close => None,
            FeedEnd::CallEnded => Some(wait_for_end(shared, call.as_mut()).await),
        },
    };
    let result = match early {
        Some(Ok(())) if lane.with_queue(|queue| queue.in_flight_len()) > 0 => {
            Err("the agent ended the stream before the exporter did; what it may not have read is sent again"
                .to_owned())
        }
        Some(result) => result.map_err(|status| describe(&status)),
        // The feed has ended and dropped its sender: the agent sees the end of stream and answers.
        None => wait_for_end(shared, call.as_mut()).await.map_err(|status| describe(&status)),
    };
    if shared.stop.is_cancelled() && result.is_err() {
        return Outcome::Stopped;
    }
    match result {
        Ok(()) => Outcome::Confirmed,
        Err(error) => Outcome::Failed { error, written: written.load(Ordering::Relaxed) },
    }
}

/// The call's final status, or a timeout error after [`CLOSE_TIMEOUT`], or cancelled when stopping.
async fn wait_for_end(
    shared: &Shared,
    call: std::pin::Pin<&mut impl Future<Output = Result<(), tonic::Status>>>,
) -> Result<(), tonic::Status> {
    tokio::select! {
        result = tokio::time::timeout(CLOSE_TIMEOUT, call) => result.unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(format!(
                "the agent did not answer the end of the stream within {CLOSE_TIMEOUT:?}"
            )))
        }),
        () = shared.stop.cancelled() => Err(tonic::Status::cancelled("the exporter is stopping")),
    }
}

/// Writes queued items to the stream until it is time to end it (see the module docs).
async fn feed<W: Wire>(
    shared: &Shared,
    lane: &Lane<W::Chunk>,
    window: usize,
    sender: mpsc::Sender<W::Request>,
    written: &AtomicUsize,
) -> FeedEnd {
    let rotate_items = (lane.with_queue(|queue| queue.capacity()) / 2).clamp(1, MAX_ROTATE_ITEMS);
    let mut identified = false;
    let mut first_write: Option<Instant> = None;
    let mut requests = Vec::new();
    loop {
        let woken = lane.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();

        let in_flight = lane.with_queue(|queue| queue.in_flight_len());
        if in_flight > 0 && (written.load(Ordering::Relaxed) >= window || in_flight >= rotate_items) {
            return FeedEnd::Close;
        }
        // Never more in flight than `rotate_items`: that keeps the other half of the bound for new items.
        let chunks = lane.with_queue(|queue| queue.take(W::TAKE.min(rotate_items - in_flight)));
        if !chunks.is_empty() {
            W::requests(&chunks, &mut requests);
            for mut request in requests.drain(..) {
                if !identified {
                    W::identify(&mut request, &shared.node, &shared.resource);
                    identified = true;
                }
                if sender.send(request).await.is_err() {
                    return FeedEnd::CallEnded;
                }
                written.fetch_add(1, Ordering::Relaxed);
            }
            first_write.get_or_insert_with(Instant::now);
            continue;
        }

        // Nothing to write now: end the stream if asked to, else wait for items or the rotation age.
        match first_write {
            Some(first) => {
                if shared.closing.is_cancelled() || lane.flush_waiting() {
                    return FeedEnd::Close;
                }
                tokio::select! {
                    () = &mut woken => {}
                    () = tokio::time::sleep_until(first + ROTATE_AGE) => return FeedEnd::Close,
                    () = shared.closing.cancelled() => {}
                }
            }
            None => {
                if shared.closing.is_cancelled() {
                    return FeedEnd::Close;
                }
                tokio::select! {
                    () = &mut woken => {}
                    () = shared.closing.cancelled() => {}
                }
            }
        }
    }
}

/// A status as one line: code, message and the chain of causes (a refused connection, a certificate
/// error), without repeating what the message already says. Response metadata is left out.
pub(super) fn describe(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Adds what to do about the errors that are usually a setup problem.
fn with_hint(error: String) -> String {
    let hint = if error.contains("certificate") {
        "; the agent's TLS certificate is not trusted: trust its CA with \
         `ca_file` in the ocagent config (OcAgentConfig::with_ca_certificate_pem in Rust), or set `insecure` if the \
         agent speaks plain text"
    } else if error.contains("Connection refused") {
        "; is the agent running and listening on this address?"
    } else {
        ""
    };
    error + hint
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;
    use std::time::{SystemTime, UNIX_EPOCH};

    use oclayer_proto::agent::trace::v1::ExportTraceServiceRequest;

    use super::*;
    use crate::export::SpanBatch;
    use crate::trace::{AttributeValue, Attributes, SpanContext, SpanData, SpanId, SpanKind, TraceId};

    fn span_with_attribute_bytes(bytes: usize) -> SpanData {
        let context =
            SpanContext { trace_id: TraceId([1; 16]), span_id: SpanId([2; 8]), ..SpanContext::default() };
        SpanData {
            attributes: Attributes {
                entries: vec![(Cow::Borrowed("body"), AttributeValue::String(Cow::Owned("x".repeat(bytes))))],
                dropped: 0,
            },
            ..SpanData::new(context, "s", SpanKind::Server, UNIX_EPOCH, SystemTime::now())
        }
    }

    fn decode(request: &[u8]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(request).expect("an encoded request")
    }

    #[test]
    fn large_batches_are_split_into_messages_near_the_size_target() {
        let batch: SpanBatch = Arc::from(vec![span_with_attribute_bytes(100 * 1024); 25]);
        let chunk = SpanChunk { range: 0..batch.len(), batch, seq: 0 };
        let mut out = Vec::new();
        Traces::requests(&[chunk], &mut out);
        assert!(out.len() >= 3, "2.5 MB of spans in 1 MiB messages: {}", out.len());
        assert_eq!(out.iter().map(|r| decode(r).spans.len()).sum::<usize>(), 25);
        assert!(out.iter().all(|r| r.len() <= MAX_MESSAGE_BYTES + 101 * 1024), "at most one span over");
        assert!(
            out.iter().all(|r| decode(r).node.is_none()),
            "only the stream's first message is identified"
        );
    }

    #[test]
    fn a_span_over_the_target_goes_alone() {
        let batch: SpanBatch = Arc::from(vec![span_with_attribute_bytes(2 * MAX_MESSAGE_BYTES); 2]);
        let chunk = SpanChunk { range: 0..2, batch, seq: 0 };
        let mut out = Vec::new();
        Traces::requests(&[chunk], &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn the_first_message_of_a_stream_carries_node_and_resource() {
        let batch: SpanBatch = Arc::from(vec![span_with_attribute_bytes(10); 3]);
        let mut out = Vec::new();
        Traces::requests(&[SpanChunk { range: 0..3, batch, seq: 0 }], &mut out);
        let node = super::super::node::node("svc", "host");
        let resource = super::super::node::resource_for_tests();
        Traces::identify(&mut out[0], &node, &resource);
        let request = decode(&out[0]);
        assert_eq!(request.node, Some(node));
        assert_eq!(request.resource, Some(resource));
        assert_eq!(request.spans.len(), 3);
    }

    #[test]
    fn an_empty_report_still_makes_a_message() {
        let chunk = ReportChunk { report: Arc::from(Vec::new()), seq: 0 };
        let mut out = Vec::new();
        Metrics::requests(&[chunk], &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].metrics.is_empty());
    }

    #[test]
    fn statuses_are_described_with_their_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let mut status = tonic::Status::unavailable("transport error");
        status.set_source(Arc::new(io));
        let text = describe(&status);
        assert_eq!(text, "Unavailable: transport error: connection refused");
        assert!(
            with_hint("Unavailable: invalid peer certificate: UnknownIssuer".into())
                .contains("with_ca_certificate_pem")
        );
        assert!(
            with_hint("tcp connect error: Connection refused (os error 111)".into())
                .contains("is the agent running")
        );
        assert_eq!(with_hint("Internal: boom".into()), "Internal: boom");
    }
}
