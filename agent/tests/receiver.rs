//! The receiver over real gRPC on loopback: generated tonic client stubs (and, once, raw
//! hand-encoded bytes) on one side, the agent on the other.

use std::time::Duration;

use bytes::{Buf, BufMut};
use oclayer_agent::{Agent, AgentHandle, NodeOnFirstMessage, StreamKind, StreamState, render, sampler};
use oclayer_proto::agent::common::v1::library_info::Language;
use oclayer_proto::agent::common::v1::{LibraryInfo, Node, ProcessIdentifier, ServiceInfo};
use oclayer_proto::agent::metrics::v1::metrics_service_client::MetricsServiceClient;
use oclayer_proto::agent::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use oclayer_proto::agent::trace::v1::trace_service_client::TraceServiceClient;
use oclayer_proto::agent::trace::v1::{
    CurrentLibraryConfig, ExportTraceServiceRequest, ExportTraceServiceResponse, UpdatedLibraryConfig,
};
use oclayer_proto::metrics::v1::distribution_value::{Bucket, BucketOptions, bucket_options};
use oclayer_proto::metrics::v1::{
    DistributionValue, LabelKey, LabelValue, Metric, MetricDescriptor, Point, TimeSeries, metric_descriptor,
    point,
};
use oclayer_proto::prost_types::Timestamp;
use oclayer_proto::resource::v1::Resource;
use oclayer_proto::trace::v1::span::SpanKind;
use oclayer_proto::trace::v1::{Span, TruncatableString};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status, Streaming};

/// Upper bound for every wait: far above what loopback needs, so only a real failure hits it.
const WAIT: Duration = Duration::from_secs(10);

async fn start() -> AgentHandle {
    Agent::builder().start("127.0.0.1:0".parse().expect("valid address")).await.expect("agent starts")
}

async fn channel(agent: &AgentHandle) -> Channel {
    Endpoint::from_shared(agent.endpoint()).expect("valid endpoint").connect().await.expect("connects")
}

fn node(service: &str) -> Node {
    Node {
        identifier: Some(ProcessIdentifier {
            host_name: "test-host".into(),
            pid: 4242,
            start_timestamp: Some(Timestamp { seconds: 1_700_000_000, nanos: 0 }),
        }),
        library_info: Some(LibraryInfo {
            language: Language::Unspecified as i32,
            exporter_version: "0.1.0".into(),
            core_library_version: "0.1.0".into(),
        }),
        service_info: Some(ServiceInfo { name: service.into() }),
        attributes: [("language".to_owned(), "rust".to_owned())].into_iter().collect(),
    }
}

fn span(id: u8, parent: Option<u8>, name: &str) -> Span {
    Span {
        trace_id: vec![0xab; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: Some(TruncatableString { value: name.into(), truncated_byte_count: 0 }),
        kind: SpanKind::Server as i32,
        start_time: Some(Timestamp { seconds: 1_700_000_000, nanos: 0 }),
        end_time: Some(Timestamp { seconds: 1_700_000_000, nanos: 2_000_000 }),
        ..Span::default()
    }
}

fn resource(kind: &str) -> Resource {
    Resource { r#type: kind.into(), labels: [("host".to_owned(), "h1".to_owned())].into_iter().collect() }
}

/// An open client Export stream: requests go in through `requests`, the agent's answer (only ever
/// a final status) comes out of `responses`.
struct TraceStream {
    requests: mpsc::Sender<ExportTraceServiceRequest>,
    responses: Streaming<ExportTraceServiceResponse>,
}

impl TraceStream {
    async fn open(client: &mut TraceServiceClient<Channel>) -> Self {
        Self::open_with(client, Request::new(())).await
    }

    /// Opens the stream with the metadata of `template`.
    async fn open_with(client: &mut TraceServiceClient<Channel>, template: Request<()>) -> Self {
        let (requests, receiver) = mpsc::channel(16);
        let mut request = Request::new(ReceiverStream::new(receiver));
        *request.metadata_mut() = template.metadata().clone();
        let responses = client.export(request).await.expect("export stream opens").into_inner();
        TraceStream { requests, responses }
    }

    async fn send(&self, request: ExportTraceServiceRequest) {
        self.requests.send(request).await.expect("stream is open");
    }
}

#[tokio::test]
async fn records_spans_with_the_node_and_resource_of_their_stream() {
    let agent = start().await;
    let mut client = TraceServiceClient::new(channel(&agent).await);
    let stream = TraceStream::open(&mut client).await;

    let mut own_resource = span(3, Some(1), "with its own resource");
    own_resource.resource = Some(resource("container"));
    stream
        .send(ExportTraceServiceRequest {
            node: Some(node("gateway")),
            spans: vec![span(1, None, "root"), span(2, Some(1), "child")],
            resource: Some(resource("host")),
        })
        .await;
    // Later messages carry no node and no resource: both stay in effect for the stream.
    stream.send(ExportTraceServiceRequest { node: None, spans: vec![own_resource], resource: None }).await;

    let spans = agent.wait_for_spans(3, WAIT).await.expect("all spans arrive");
    assert_eq!(
        spans.iter().map(|s| s.name()).collect::<Vec<_>>(),
        ["root", "child", "with its own resource"]
    );
    assert!(spans.iter().all(|s| s.node == Some(node("gateway"))), "every span carries the stream's node");
    assert_eq!(spans[0].resource, Some(resource("host")));
    assert_eq!(spans[1].resource, Some(resource("host")));
    assert_eq!(spans[2].resource, Some(resource("container")), "a span's own resource wins");
    assert_eq!(spans[1].parent_span_id_hex().as_deref(), Some("0101010101010101"));
    assert_eq!(spans[0].parent_span_id_hex(), None);

    let streams = agent.streams();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].kind, StreamKind::TraceExport);
    assert_eq!(streams[0].first_node, NodeOnFirstMessage::Sent(node("gateway")));
    assert_eq!(streams[0].messages, 2);
    assert_eq!(streams[0].generation, 0);

    // Closing the client side ends the stream cleanly.
    drop(stream.requests);
    let mut responses = stream.responses;
    assert!(responses.message().await.expect("clean end").is_none());
    agent
        .wait_until("the stream to be closed", WAIT, |s| s.streams[0].state == StreamState::Closed)
        .await
        .expect("stream closes");
    agent.shutdown().await;
}

#[tokio::test]
async fn records_the_node_of_each_streams_first_message() {
    let agent = start().await;
    let channel = channel(&agent).await;
    let mut traces = TraceServiceClient::new(channel.clone());
    let mut metrics = MetricsServiceClient::new(channel);

    let first = TraceStream::open(&mut traces).await;
    first.send(ExportTraceServiceRequest { node: Some(node("a")), ..Default::default() }).await;
    agent
        .wait_until("stream 1's first message", WAIT, |s| s.streams[0].messages == 1)
        .await
        .expect("arrives");

    // A metrics stream whose first message has no node: recorded as missing.
    let (metric_requests, receiver) = mpsc::channel(4);
    let _metric_responses: Streaming<ExportMetricsServiceResponse> =
        metrics.export(ReceiverStream::new(receiver)).await.expect("metrics stream opens").into_inner();
    metric_requests.send(ExportMetricsServiceRequest::default()).await.expect("open");
    agent
        .wait_until("stream 2's first message", WAIT, |s| s.streams.len() == 2 && s.streams[1].messages == 1)
        .await
        .expect("arrives");

    // A node sent later on a stream applies to what follows, but the first one is what counts
    // for the protocol rule.
    let third = TraceStream::open(&mut traces).await;
    third
        .send(ExportTraceServiceRequest {
            node: Some(node("b")),
            spans: vec![span(1, None, "early")],
            ..Default::default()
        })
        .await;
    third
        .send(ExportTraceServiceRequest {
            node: Some(node("c")),
            spans: vec![span(2, None, "late")],
            ..Default::default()
        })
        .await;

    let spans = agent.wait_for_spans(2, WAIT).await.expect("spans arrive");
    assert_eq!(spans[0].service_name(), Some("b"));
    assert_eq!(spans[1].service_name(), Some("c"));
    assert_eq!(agent.nodes(), vec![Some(node("a")), None, Some(node("b"))]);
    assert_eq!(agent.streams()[1].first_node, NodeOnFirstMessage::Missing);
    assert_eq!(agent.stream_count(StreamKind::TraceExport), 2);
    assert_eq!(agent.stream_count(StreamKind::MetricsExport), 1);
    assert_eq!(agent.open_stream_count(StreamKind::TraceExport), 2);
    agent.shutdown().await;
}

/// Passes pre-encoded protobuf bytes through gRPC untouched, so the agent decodes exactly the
/// bytes written in the test.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

fn bytes_of(groups: &[&str]) -> Vec<u8> {
    let hex: String = groups.concat().chars().filter(|c| !c.is_whitespace()).collect();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("valid hex")).collect()
}

/// An export request as opencensus-go's exporter writes it (Go language, a string and an int
/// attribute, an empty status for OK), encoded by hand from the published field numbers:
/// tag = (field << 3) | wire type, then a length for wire type 2.
#[tokio::test]
async fn decodes_a_hand_encoded_request_as_upstream_clients_send_it() {
    let request = bytes_of(&[
        "0a 2f",                                        // 1 node: LEN 47
        "  0a 0e",                                      //   1 identifier: LEN 14
        "    0a 02 6831",                               //     1 host_name "h1"
        "    10 07",                                    //     2 pid 7
        "    1a 06 08 80e2cfaa06",                      //     3 start_timestamp { seconds 1700000000 }
        "  12 12",                                      //   2 library_info: LEN 18
        "    08 04",                                    //     1 language GO_LANG
        "    12 06 302e31332e30",                       //     2 exporter_version "0.13.0"
        "    1a 06 302e32322e35",                       //     3 core_library_version "0.22.5"
        "  1a 09 0a 07 6b72616b656e64",                 //   3 service_info { name "krakend" }
        "12 72",                                        // 2 spans: LEN 114
        "  0a 10 4bf92f3577b34da6a3ce929d0e0e4736",     //  1 trace_id
        "  12 08 00f067aa0ba902b7",                     //   2 span_id
        "  22 08 0a 06 2f7573657273",                   //   4 name "/users"
        "  2a 06 08 80e2cfaa06",                        //   5 start_time { seconds 1700000000 }
        "  32 0b 08 80e2cfaa06 10 a0f8fa05",            //   6 end_time { +0 s, nanos 12500000 }
        "  3a 31",                                      //   7 attributes: LEN 49
        "    0a 16",                                    //     1 entry: LEN 22
        "      0a 0b 687474702e6d6574686f64",           //       1 key "http.method"
        "      12 07 0a 05 0a 03 474554",               //       2 value { string_value "GET" }
        "    0a 17",                                    //     1 entry: LEN 23
        "      0a 10 687474702e7374617475735f636f6465", //  1 key "http.status_code"
        "      12 03 10 c801",                          //       2 value { int_value 200 }
        "  5a 00",                                      //   11 status {} (OK)
        "  70 01",                                      //   14 kind SERVER
        "1a 0e",                                        // 3 resource: LEN 14
        "  0a 04 686f7374",                             //   1 type "host"
        "  12 06 0a 01 68 12 01 31",                    //   2 labels { "h": "1" }
    ]);

    let agent = start().await;
    let mut grpc = tonic::client::Grpc::new(channel(&agent).await);
    grpc.ready().await.expect("channel ready");
    let (requests, receiver) = mpsc::channel(1);
    let path = PathAndQuery::from_static("/opencensus.proto.agent.trace.v1.TraceService/Export");
    let _responses = grpc
        .streaming(Request::new(ReceiverStream::new(receiver)), path, RawCodec)
        .await
        .expect("stream opens");
    requests.send(request).await.expect("stream open");

    let spans = agent.wait_for_spans(1, WAIT).await.expect("the span arrives");
    let received = &spans[0];
    assert_eq!(received.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(received.span_id_hex(), "00f067aa0ba902b7");
    assert_eq!(received.span.kind(), SpanKind::Server);
    assert_eq!(received.span.status.as_ref().map(|s| s.code), Some(0));
    let node = received.node.as_ref().expect("node recorded");
    assert_eq!(node.library_info.as_ref().map(|l| l.language()), Some(Language::GoLang));
    assert_eq!(node.identifier.as_ref().map(|i| (i.host_name.as_str(), i.pid)), Some(("h1", 7)));
    assert_eq!(received.service_name(), Some("krakend"));
    assert_eq!(received.resource.as_ref().map(|r| r.r#type.as_str()), Some("host"));
    assert_eq!(
        render::trace_tree(&spans),
        "trace 4bf92f3577b34da6a3ce929d0e0e4736 · 1 span · service krakend\n\
         /users  [server]  12.500 ms  OK  {http.method=GET, http.status_code=200}\n"
    );
    agent.shutdown().await;
}

fn latency_metric() -> Metric {
    Metric {
        metric_descriptor: Some(MetricDescriptor {
            name: "opencensus.io/http/server/latency".into(),
            description: "Latency".into(),
            unit: "ms".into(),
            r#type: metric_descriptor::Type::CumulativeDistribution as i32,
            label_keys: vec![LabelKey { key: "http.method".into(), description: String::new() }],
        }),
        timeseries: vec![TimeSeries {
            start_timestamp: Some(Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            label_values: vec![LabelValue { value: "GET".into(), has_value: true }],
            points: vec![Point {
                timestamp: Some(Timestamp { seconds: 1_700_000_010, nanos: 0 }),
                value: Some(point::Value::DistributionValue(DistributionValue {
                    count: 3,
                    sum: 12.0,
                    sum_of_squared_deviation: 2.0,
                    bucket_options: Some(BucketOptions {
                        r#type: Some(bucket_options::Type::Explicit(bucket_options::Explicit {
                            bounds: vec![1.0, 10.0],
                        })),
                    }),
                    buckets: vec![
                        Bucket { count: 0, exemplar: None },
                        Bucket { count: 3, exemplar: None },
                        Bucket { count: 0, exemplar: None },
                    ],
                })),
            }],
        }],
        resource: None,
    }
}

#[tokio::test]
async fn records_metrics_and_renders_them_as_a_table() {
    let agent = start().await;
    let mut client = MetricsServiceClient::new(channel(&agent).await);
    let (requests, receiver) = mpsc::channel(4);
    let _responses = client.export(ReceiverStream::new(receiver)).await.expect("stream opens");
    requests
        .send(ExportMetricsServiceRequest {
            node: Some(node("gateway")),
            metrics: vec![latency_metric()],
            resource: Some(resource("host")),
        })
        .await
        .expect("stream open");

    let metrics = agent.wait_for_metrics(1, WAIT).await.expect("metric arrives");
    assert_eq!(metrics[0].metric, latency_metric());
    assert_eq!(metrics[0].name(), "opencensus.io/http/server/latency");
    assert_eq!(metrics[0].node, Some(node("gateway")));
    assert_eq!(metrics[0].resource, Some(resource("host")), "the request's resource applies");
    assert_eq!(
        render::metrics_table(&metrics),
        "opencensus.io/http/server/latency  CUMULATIVE_DISTRIBUTION  unit ms  Latency\n\
         \x20 http.method  value\n\
         \x20 GET          count=3 sum=12 mean=4 buckets=3 [1,10):3\n"
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn fails_streams_after_n_messages_until_told_to_stop() {
    let agent = start().await;
    let mut client = TraceServiceClient::new(channel(&agent).await);
    agent.fail_after(StreamKind::TraceExport, 2);

    let mut stream = TraceStream::open(&mut client).await;
    stream
        .send(ExportTraceServiceRequest {
            node: Some(node("gateway")),
            spans: vec![span(1, None, "one")],
            ..Default::default()
        })
        .await;
    stream.send(ExportTraceServiceRequest { spans: vec![span(2, None, "two")], ..Default::default() }).await;
    let status = stream.responses.message().await.expect_err("the agent ends the stream with an error");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("after 2 messages"), "{}", status.message());

    assert_eq!(agent.spans().len(), 2, "the messages before the failure are recorded");
    assert_eq!(agent.streams()[0].state, StreamState::Failed);

    // Still failing: the next stream fails too.
    let mut again = TraceStream::open(&mut client).await;
    again.send(ExportTraceServiceRequest { node: Some(node("gateway")), ..Default::default() }).await;
    again.send(ExportTraceServiceRequest::default()).await;
    assert!(again.responses.message().await.is_err());

    agent.stop_failing(StreamKind::TraceExport);
    let healthy = TraceStream::open(&mut client).await;
    for n in 0..3 {
        healthy
            .send(ExportTraceServiceRequest { spans: vec![span(10 + n, None, "ok")], ..Default::default() })
            .await;
    }
    agent.wait_for_spans(5, WAIT).await.expect("spans flow again");
    assert_eq!(agent.streams()[2].state, StreamState::Open);
    agent.shutdown().await;
}

#[tokio::test]
async fn pushes_samplers_and_records_the_librarys_answers() {
    let agent = start().await;
    let mut client = TraceServiceClient::new(channel(&agent).await);

    let (configs, receiver) = mpsc::channel(4);
    let mut updates: Streaming<UpdatedLibraryConfig> =
        client.config(ReceiverStream::new(receiver)).await.expect("config stream opens").into_inner();
    configs
        .send(CurrentLibraryConfig { node: Some(node("gateway")), config: Some(sampler::probability(1.0)) })
        .await
        .expect("open");
    let initial = agent.wait_for_library_configs(1, WAIT).await.expect("initial config arrives");
    assert_eq!(initial[0].config, Some(sampler::probability(1.0)));
    assert_eq!(initial[0].node, Some(node("gateway")));

    assert_eq!(agent.push_sampler(sampler::rate_limited(5)), 1, "one Config stream is open");
    let update = updates.message().await.expect("stream healthy").expect("an update arrives");
    assert_eq!(update.config, Some(sampler::rate_limited(5)));

    // The library applies it and answers with what it now runs.
    configs.send(CurrentLibraryConfig { node: None, config: update.config }).await.expect("open");
    let answers = agent.wait_for_library_configs(2, WAIT).await.expect("answer arrives");
    assert_eq!(answers[1].config, Some(sampler::rate_limited(5)));
    assert_eq!(answers[1].node, Some(node("gateway")), "the stream's node stays in effect");

    // A library that connects later gets the current sampler without another push.
    let (_late_configs, late_receiver) = mpsc::channel::<CurrentLibraryConfig>(1);
    let mut late_updates =
        client.config(ReceiverStream::new(late_receiver)).await.expect("config stream opens").into_inner();
    let late = late_updates.message().await.expect("stream healthy").expect("current sampler arrives");
    assert_eq!(late.config, Some(sampler::rate_limited(5)));
    agent.shutdown().await;
}

#[tokio::test]
async fn records_headers_and_accepts_gzip() {
    let agent = start().await;
    let mut client =
        TraceServiceClient::new(channel(&agent).await).send_compressed(CompressionEncoding::Gzip);
    let mut template = Request::new(());
    template.metadata_mut().insert("x-api-key", "secret-1".parse().expect("valid header value"));
    let stream = TraceStream::open_with(&mut client, template).await;
    stream
        .send(ExportTraceServiceRequest {
            node: Some(node("gateway")),
            spans: vec![span(1, None, "zipped")],
            ..Default::default()
        })
        .await;

    let spans = agent.wait_for_spans(1, WAIT).await.expect("gzip-compressed span decodes");
    assert_eq!(spans[0].name(), "zipped");
    let record = &agent.streams()[0];
    assert_eq!(record.header("x-api-key"), Some("secret-1"));
    assert_eq!(record.compression.as_deref(), Some("gzip"));
    agent.shutdown().await;
}

#[tokio::test]
async fn holds_messages_while_slowed_down() {
    let agent = start().await;
    let mut client = TraceServiceClient::new(channel(&agent).await);
    agent.slow_down(Duration::from_secs(3600));
    let stream = TraceStream::open(&mut client).await;
    stream
        .send(ExportTraceServiceRequest {
            node: Some(node("gateway")),
            spans: vec![span(1, None, "held")],
            ..Default::default()
        })
        .await;

    agent
        .wait_until("the message to be held", WAIT, |s| s.streams.first().is_some_and(|r| r.held == 1))
        .await
        .expect("message arrives and is held");
    assert!(agent.spans().is_empty(), "a held message is not recorded yet");

    agent.slow_down(Duration::ZERO);
    agent.wait_for_spans(1, WAIT).await.expect("released message is recorded");
    assert_eq!(agent.streams()[0].held, 0);
    agent.shutdown().await;
}

#[tokio::test]
async fn kill_breaks_open_streams_and_restart_serves_the_same_port() {
    let agent = start().await;
    let addr = agent.local_addr();
    let mut client = TraceServiceClient::new(channel(&agent).await);
    let mut stream = TraceStream::open(&mut client).await;
    stream
        .send(ExportTraceServiceRequest {
            node: Some(node("gateway")),
            spans: vec![span(1, None, "before")],
            ..Default::default()
        })
        .await;
    agent.wait_for_spans(1, WAIT).await.expect("first span arrives");

    agent.kill().await;
    assert!(!agent.is_running());
    assert!(stream.responses.message().await.is_err(), "the client sees its stream break");
    agent
        .wait_until("the stream to be marked broken", WAIT, |s| {
            matches!(s.streams[0].state, StreamState::Broken(_))
        })
        .await
        .expect("stream marked broken");

    agent.restart().await.expect("restarts on the same port");
    assert_eq!(agent.local_addr(), addr);
    let mut client = TraceServiceClient::new(channel(&agent).await);
    let stream = TraceStream::open(&mut client).await;
    stream
        .send(ExportTraceServiceRequest {
            node: Some(node("gateway")),
            spans: vec![span(2, None, "after")],
            ..Default::default()
        })
        .await;
    let spans = agent.wait_for_spans(2, WAIT).await.expect("second span arrives");
    assert_eq!(spans[1].name(), "after");
    assert_eq!(agent.streams()[1].generation, 1);
    agent.shutdown().await;
}

#[tokio::test]
async fn serves_tls_with_a_generated_certificate() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert_pem = certified.cert.pem();
    let agent = Agent::builder()
        .tls_pem(cert_pem.clone(), certified.signing_key.serialize_pem())
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("agent starts with TLS");
    assert!(agent.endpoint().starts_with("https://"));

    let trusted =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&cert_pem)).domain_name("localhost");
    let channel = Endpoint::from_shared(agent.endpoint())
        .expect("valid endpoint")
        .tls_config(trusted)
        .expect("client TLS config")
        .connect()
        .await
        .expect("TLS handshake with the trusted certificate");
    let mut client = TraceServiceClient::new(channel);
    let stream = TraceStream::open(&mut client).await;
    stream
        .send(ExportTraceServiceRequest {
            node: Some(node("gateway")),
            spans: vec![span(1, None, "secure")],
            ..Default::default()
        })
        .await;
    agent.wait_for_spans(1, WAIT).await.expect("span arrives over TLS");

    // A client that does not trust the certificate gets no stream.
    let untrusted = Endpoint::from_shared(agent.endpoint())
        .expect("valid endpoint")
        .tls_config(ClientTlsConfig::new().domain_name("localhost"))
        .expect("client TLS config");
    let refused = match untrusted.connect().await {
        Err(_) => true,
        Ok(channel) => TraceServiceClient::new(channel).export(tokio_stream::empty()).await.is_err(),
    };
    assert!(refused, "an untrusted certificate must be refused");
    assert_eq!(agent.stream_count(StreamKind::TraceExport), 1);
    agent.shutdown().await;
}

#[tokio::test]
async fn reports_a_busy_port_clearly() {
    let agent = start().await;
    let error = Agent::builder().start(agent.local_addr()).await.expect_err("the port is taken");
    let message = error.to_string();
    assert!(
        message.contains(&agent.local_addr().to_string()) && message.contains("cannot listen"),
        "{message}"
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn counts_without_keeping_when_told_not_to_keep_records() {
    let agent = Agent::builder()
        .keep_records(false)
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("agent starts");
    let mut client = TraceServiceClient::new(channel(&agent).await);
    let stream = TraceStream::open(&mut client).await;
    stream
        .send(ExportTraceServiceRequest {
            node: Some(node("gateway")),
            spans: vec![span(1, None, "a"), span(2, None, "b")],
            ..Default::default()
        })
        .await;
    stream.send(ExportTraceServiceRequest { spans: vec![span(3, None, "c")], ..Default::default() }).await;

    assert_eq!(agent.wait_for_span_count(3, WAIT).await.expect("all counted"), 3);
    assert!(agent.spans().is_empty(), "nothing is kept");
    assert_eq!(agent.nodes(), vec![Some(node("gateway"))], "stream records are kept regardless");
    agent.shutdown().await;
}

#[tokio::test]
async fn clear_forgets_records_but_keeps_totals() {
    let agent = start().await;
    let mut client = TraceServiceClient::new(channel(&agent).await);
    let stream = TraceStream::open(&mut client).await;
    stream
        .send(ExportTraceServiceRequest {
            node: Some(node("gateway")),
            spans: vec![span(1, None, "first phase")],
            ..Default::default()
        })
        .await;
    agent.wait_for_spans(1, WAIT).await.expect("arrives");
    agent.clear();
    assert!(agent.spans().is_empty());

    stream
        .send(ExportTraceServiceRequest { spans: vec![span(2, None, "second phase")], ..Default::default() })
        .await;
    let spans = agent.wait_for_spans(1, WAIT).await.expect("arrives");
    assert_eq!(spans.iter().map(|s| s.name()).collect::<Vec<_>>(), ["second phase"]);
    assert_eq!(agent.span_count(), 2);
    agent.shutdown().await;
}

#[tokio::test]
async fn tallies_distinct_spans_and_those_on_cleanly_ended_streams() {
    let agent = Agent::builder()
        .keep_records(false)
        .tally_spans(true)
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("agent starts");
    assert_eq!(start().await.span_tally(), None, "no tally unless asked for");
    let mut client = TraceServiceClient::new(channel(&agent).await);

    // A stream that breaks after carrying spans 1 and 2: seen, not confirmed.
    agent.fail_after(StreamKind::TraceExport, 1);
    let mut broken = TraceStream::open(&mut client).await;
    broken
        .send(ExportTraceServiceRequest {
            node: Some(node("gateway")),
            spans: vec![span(1, None, "a"), span(2, None, "b")],
            ..Default::default()
        })
        .await;
    assert!(broken.responses.message().await.is_err(), "the agent ends it with an error");
    agent.stop_failing(StreamKind::TraceExport);

    // Sent again with a new span 3 and span 3 twice, on a stream that ends cleanly: each counts once.
    let clean = TraceStream::open(&mut client).await;
    clean
        .send(ExportTraceServiceRequest {
            node: Some(node("gateway")),
            spans: vec![span(2, None, "b"), span(3, None, "c")],
            ..Default::default()
        })
        .await;
    clean.send(ExportTraceServiceRequest { spans: vec![span(3, None, "c")], ..Default::default() }).await;
    let TraceStream { requests, mut responses } = clean;
    drop(requests);
    assert!(responses.message().await.expect("a clean end").is_none());

    let tally = agent.span_tally().expect("tallying");
    assert_eq!((tally.distinct, tally.confirmed), (3, 2), "1 was only on the broken stream");
    assert_eq!(agent.span_count(), 5, "every span received, re-sends included");
    agent.shutdown().await;
}
