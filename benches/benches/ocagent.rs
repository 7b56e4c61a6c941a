//! The ocagent exporter's throughput: router-like spans encoded and streamed over gRPC to a receiver on
//! loopback. Target: 1 M spans/s.
//!
//! Each iteration hands 30 000 spans to the exporter in batches of 300 (the span pipeline's batch size) and
//! waits for `flush`, i.e. until the receiver has confirmed all of them (clean stream ends), so the time
//! covers encoding, HTTP/2, the receiver and the confirmations. The exporter runs on its own current-thread
//! runtime and thread, as under `init`; the receiver on another thread.
//!
//! - `ocagent/discard`: the receiver counts the spans of each request (a scan of the top-level protobuf
//!   fields) and discards them: the exporter's own throughput.
//! - `ocagent/discard_gzip`: the same with `enable_compression`.
//! - `ocagent/agent`: the receiver is `oclayer-agent` (without keeping records), which decodes every span
//!   into the generated types: what a real agent adds. On 2 cores its decoding competes with the exporter.
//! - `ocagent/outage` (a report, not a criterion measurement): the agent is unreachable while spans keep
//!   coming at 200 000 a second, fresh allocations each, for `OCAGENT_OUTAGE_SECS` seconds (default 20;
//!   the issue asks for 60). Prints the process's resident memory before, at its peak and at the end, and
//!   the spans dropped beyond the queue bound: memory must level off at the bound, not grow with the outage.
//!
//! After each case the bench prints the CPU time the exporter's thread and the agent's thread spent per
//! span (`CLOCK_THREAD_CPUTIME_ID`, over warm-up and samples): on a shared machine the wall clock counts
//! other processes too, while the exporter's CPU time per span is its own cost, and its inverse the rate
//! one core sustains.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use oclayer::config::OcAgentConfig;
use oclayer::export::{Exporter, OcAgentExporter, SpanBatch};
use oclayer::trace::{AttributeValue, Attributes, SpanContext, SpanData, SpanId, SpanKind, TraceId};
use oclayer_agent::Agent;
use oclayer_benches::thread_cpu_time;

const BATCH: usize = 300;
const BATCHES_PER_ITERATION: usize = 100;
const SPANS_PER_ITERATION: u64 = (BATCH * BATCHES_PER_ITERATION) as u64;

/// A router span as the layer records it: six HTTP attributes, a status.
fn router_span() -> SpanData {
    let start = SystemTime::now();
    let context = SpanContext {
        trace_id: TraceId::random(),
        span_id: SpanId::random(),
        sampled: true,
        ..Default::default()
    };
    SpanData {
        attributes: Attributes {
            entries: vec![
                ("http.method".into(), AttributeValue::from("GET")),
                ("http.path".into(), AttributeValue::from("/users/42")),
                ("http.url".into(), AttributeValue::from("http://gateway.internal/users/42?fields=name")),
                ("http.host".into(), AttributeValue::from("gateway.internal")),
                ("http.user_agent".into(), AttributeValue::from("curl/8.5.0")),
                ("http.status_code".into(), AttributeValue::Int(200)),
            ],
            dropped: 0,
        },
        child_span_count: 1,
        ..SpanData::new(context, "/users/{id}", SpanKind::Server, start, start + Duration::from_micros(1234))
    }
}

/// A runtime on its own thread, as the telemetry pipeline runs its exporters; dropped with its thread.
struct Background {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// The CPU time of this runtime's thread so far (a current-thread runtime runs its tasks there).
    fn cpu(&self) -> Duration {
        let task = self.handle.spawn(async { thread_cpu_time() });
        futures_block_on(&self.handle, task)
    }

    fn start(name: &str) -> Background {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let _ = stopped.await;
                });
            })
            .expect("thread");
        Background { handle, stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits for `task` from outside its runtime (a plain thread).
fn futures_block_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    task: tokio::task::JoinHandle<T>,
) -> T {
    let (send, receive) = std::sync::mpsc::channel();
    handle.spawn(async move {
        let _ = send.send(task.await);
    });
    receive.recv().expect("the runtime runs").expect("the task does not panic")
}

/// Where the spans go.
enum Receiver {
    /// Counts and discards.
    Discard,
    /// `oclayer-agent`, decoding and counting.
    Agent,
}

fn streamed(c: &mut Criterion, name: &str, receiver: Receiver, compression: bool) {
    let agent_thread = Background::start("agent");
    let (address, received): (std::net::SocketAddr, Box<dyn Fn() -> u64>) = match receiver {
        Receiver::Discard => {
            let (address, spans) =
                futures_block_on(&agent_thread.handle, agent_thread.handle.spawn(discard::serve()));
            (address, Box::new(move || spans.load(std::sync::atomic::Ordering::Relaxed)))
        }
        Receiver::Agent => {
            let start = Agent::builder().keep_records(false).start("127.0.0.1:0".parse().expect("address"));
            let agent =
                futures_block_on(&agent_thread.handle, agent_thread.handle.spawn(start)).expect("agent");
            (agent.local_addr(), Box::new(move || agent.span_count()))
        }
    };
    let exporter_thread = Background::start("oclayer-export");
    let config = OcAgentConfig::new()
        .with_address(address.to_string())
        .with_insecure(true)
        .with_service_name("bench")
        .with_enable_compression(compression);
    let exporter: Arc<OcAgentExporter> =
        OcAgentExporter::start(&config, &exporter_thread.handle).expect("exporter");
    let batches: Vec<SpanBatch> = (0..BATCHES_PER_ITERATION)
        .map(|_| (0..BATCH).map(|_| router_span()).collect::<Vec<_>>().into())
        .collect();
    // Awaits flush from this thread; the work happens on the exporter's and the agent's threads.
    let waiter = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");

    let mut group = c.benchmark_group("ocagent");
    group.throughput(Throughput::Elements(SPANS_PER_ITERATION));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(15));
    let (exporter_cpu, agent_cpu, delivered) =
        (exporter_thread.cpu(), agent_thread.cpu(), exporter.delivered_spans());
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for batch in &batches {
                    exporter.export_spans(batch);
                }
                waiter
                    .block_on(exporter.flush(Instant::now() + Duration::from_secs(60)))
                    .expect("the agent confirms everything");
            }
            start.elapsed()
        });
    });
    group.finish();
    let spans = (exporter.delivered_spans() - delivered) as f64;
    if spans == 0.0 {
        // Filtered out on the command line.
        return;
    }
    let per_span = |cpu: Duration| cpu.as_nanos() as f64 / spans;
    let exporter_ns = per_span(exporter_thread.cpu() - exporter_cpu);
    println!(
        "ocagent/{name}: exporter thread {exporter_ns:.0} ns CPU per span ({:.2} M spans/s per core), \
         agent thread {:.0} ns per span",
        1e3 / exporter_ns,
        per_span(agent_thread.cpu() - agent_cpu),
    );

    assert_eq!(exporter.dropped_spans(), 0, "the bench never overflows the queue");
    assert_eq!(received(), exporter.delivered_spans(), "every confirmed span was received once");
    waiter.block_on(exporter.shutdown(Instant::now() + Duration::from_secs(10))).expect("shutdown");
}

fn ocagent(c: &mut Criterion) {
    streamed(c, "discard", Receiver::Discard, false);
    streamed(c, "discard_gzip", Receiver::Discard, true);
    streamed(c, "agent", Receiver::Agent, false);
    outage();
}

/// Resident set size of this process, from `/proc/self/statm` (pages).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page as u64
}

/// See the module docs. Runs when no filter is given or the filter names it.
fn outage() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "ocagent/outage".contains(f.as_str())) {
        return;
    }
    let seconds: u64 = std::env::var("OCAGENT_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    // A port nobody listens on: every connection attempt is refused, as with a crashed agent.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = dead.local_addr().expect("bound");
    drop(dead);

    let exporter_thread = Background::start("oclayer-export");
    let config = OcAgentConfig::new()
        .with_address(address.to_string())
        .with_insecure(true)
        .with_reconnection(Duration::from_millis(100));
    let exporter = OcAgentExporter::start(&config, &exporter_thread.handle).expect("exporter");

    let before = rss_bytes();
    let mut peak = before;
    let start = Instant::now();
    let mut produced = 0u64;
    // Resident memory at each tenth of the run: it must level off, not climb.
    let mut series = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        // 200 000 spans a second, in batches of 300 every 1.5 ms.
        let batch: SpanBatch = (0..BATCH).map(|_| router_span()).collect::<Vec<_>>().into();
        exporter.export_spans(&batch);
        produced += BATCH as u64;
        let due = start + Duration::from_micros(produced * 5);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if produced.is_multiple_of(BATCH as u64 * 64) {
            let now = rss_bytes();
            peak = peak.max(now);
            if start.elapsed() >= Duration::from_secs(seconds) * (series.len() as u32 + 1) / 10 {
                series.push(format!("{:.0}", now as f64 / 1048576.0));
            }
        }
    }
    let end = rss_bytes();
    println!(
        "ocagent/outage: {seconds} s with the agent down, {produced} spans produced, {} dropped beyond the bound \
         of {} ({} queued); resident memory {:.1} MiB before, {:.1} MiB peak, {:.1} MiB at the end; by tenths of the run (MiB): {}",
        exporter.dropped_spans(),
        config.max_queued_spans,
        exporter.queued_spans(),
        before as f64 / 1048576.0,
        peak.max(end) as f64 / 1048576.0,
        end as f64 / 1048576.0,
        series.join(" "),
    );
    assert_eq!(
        exporter.dropped_spans() + exporter.queued_spans() as u64,
        produced,
        "every span is accounted for"
    );
}

/// A `TraceService.Export` receiver that counts spans without decoding them; every other RPC is
/// `UNIMPLEMENTED` (the exporter then stops asking for sampler configs).
mod discard {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use bytes::Buf;
    use oclayer_proto::agent::trace::v1::ExportTraceServiceResponse;
    use oclayer_proto::prost::encoding::decode_varint;
    use oclayer_proto::tonic::body::Body;
    use oclayer_proto::tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use oclayer_proto::tonic::codegen::tokio_stream::StreamExt as _;
    use oclayer_proto::tonic::codegen::tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
    use oclayer_proto::tonic::codegen::{BoxFuture, Context, Poll, Service, http};
    use oclayer_proto::tonic::server::{Grpc, NamedService, StreamingService};
    use oclayer_proto::tonic::transport::Server;
    use oclayer_proto::tonic::{Request, Response, Status, Streaming};

    const EXPORT: &str = "/opencensus.proto.agent.trace.v1.TraceService/Export";

    /// Binds a free loopback port and serves there; returns the address and the span counter.
    pub async fn serve() -> (SocketAddr, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let address = listener.local_addr().expect("bound");
        let spans = Arc::new(AtomicU64::new(0));
        let service = Discard { spans: Arc::clone(&spans) };
        // Answers (window updates, trailers) are small: send them at once rather than wait for Nagle.
        let incoming = TcpListenerStream::new(listener).map(|accepted| {
            accepted.inspect(|stream| {
                let _ = stream.set_nodelay(true);
            })
        });
        tokio::spawn(Server::builder().add_service(service).serve_with_incoming(incoming));
        (address, spans)
    }

    /// The number of `spans` (field 2) in an encoded `ExportTraceServiceRequest`, skipping everything.
    fn count_spans(mut buf: &[u8]) -> Result<u64, Status> {
        let malformed = |_| Status::invalid_argument("not a protobuf message");
        let mut spans = 0;
        while !buf.is_empty() {
            let key = decode_varint(&mut buf).map_err(malformed)?;
            let skip = match key & 7 {
                0 => {
                    decode_varint(&mut buf).map_err(malformed)?;
                    0
                }
                1 => 8,
                2 => {
                    spans += u64::from(key >> 3 == 2);
                    decode_varint(&mut buf).map_err(malformed)? as usize
                }
                5 => 4,
                _ => return Err(Status::invalid_argument("unknown wire type")),
            };
            if skip > buf.len() {
                return Err(Status::invalid_argument("truncated field"));
            }
            buf = &buf[skip..];
        }
        Ok(spans)
    }

    /// Decodes a request into its span count; encodes the (empty) responses.
    struct SpanCount;

    impl Codec for SpanCount {
        type Encode = ExportTraceServiceResponse;
        type Decode = u64;
        type Encoder = SpanCount;
        type Decoder = SpanCount;

        fn encoder(&mut self) -> SpanCount {
            SpanCount
        }

        fn decoder(&mut self) -> SpanCount {
            SpanCount
        }
    }

    impl Encoder for SpanCount {
        type Item = ExportTraceServiceResponse;
        type Error = Status;

        /// The response has no fields: nothing to write.
        fn encode(&mut self, _item: Self::Item, _dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            Ok(())
        }
    }

    impl Decoder for SpanCount {
        type Item = u64;
        type Error = Status;

        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<u64>, Status> {
            let message = src.copy_to_bytes(src.remaining());
            count_spans(&message).map(Some)
        }
    }

    /// Reads each export stream to its end, adding up the spans; the response stream ends after it.
    struct CountStream {
        spans: Arc<AtomicU64>,
    }

    impl StreamingService<u64> for CountStream {
        type Response = ExportTraceServiceResponse;
        type ResponseStream = ReceiverStream<Result<ExportTraceServiceResponse, Status>>;
        type Future = std::future::Ready<Result<Response<Self::ResponseStream>, Status>>;

        fn call(&mut self, request: Request<Streaming<u64>>) -> Self::Future {
            let (done, responses) = tokio::sync::mpsc::channel(1);
            let spans = Arc::clone(&self.spans);
            let mut requests = request.into_inner();
            tokio::spawn(async move {
                loop {
                    match requests.message().await {
                        Ok(Some(count)) => {
                            spans.fetch_add(count, Ordering::Relaxed);
                        }
                        Ok(None) => break,
                        Err(status) => {
                            let _ = done.send(Err(status)).await;
                            break;
                        }
                    }
                }
            });
            std::future::ready(Ok(Response::new(ReceiverStream::new(responses))))
        }
    }

    #[derive(Clone)]
    struct Discard {
        spans: Arc<AtomicU64>,
    }

    impl NamedService for Discard {
        const NAME: &'static str = "opencensus.proto.agent.trace.v1.TraceService";
    }

    impl Service<http::Request<Body>> for Discard {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            if request.uri().path() != EXPORT {
                return Box::pin(async { Ok(Status::unimplemented("only TraceService.Export").into_http()) });
            }
            let service = CountStream { spans: Arc::clone(&self.spans) };
            Box::pin(async move {
                let mut grpc = Grpc::new(SpanCount).accept_compressed(CompressionEncoding::Gzip);
                Ok(grpc.streaming(service, request).await)
            })
        }
    }
}

criterion_group!(benches, ocagent);
criterion_main!(benches);
