//! Secrets stay secret: the ocagent header values and the TLS material (the CA the exporter trusts, and a
//! private key pasted where the CA belongs) never appear in logs, errors or `Debug` output.
//!
//! Every log line of every crate is captured at TRACE level (tonic, h2 and hyper included) while the
//! exporter fails (TLS refused, agent down) and succeeds (over TLS, and through `init`), and the captured
//! text, every error and every relevant `Debug` string is searched for the secrets. The agent records the
//! header it received, which shows that the secret did travel where it should.

mod ocagent_support;

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ocagent_support::*;
use oclayer_agent::{Agent, AgentHandle, StreamKind};
use oclayer_runtime::config::OcAgentConfig;
use oclayer_runtime::export::{Exporter, OcAgentExporter};
use oclayer_runtime::{Config, Error, Telemetry};

/// The header value: it must reach the agent and nothing else.
const HEADER_NAME: &str = "authorization";
const HEADER_SECRET: &str = "Bearer hdr-S3cr3t-9f2c41e7";

/// Everything logged, by every crate, as the fmt subscriber would print it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A TLS identity: the certificate PEM (what the exporter trusts) and its private key PEM.
fn identity() -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    (generated.cert.pem(), generated.signing_key.serialize_pem())
}

/// A line from the body of a PEM: distinctive, and what a leak would contain.
fn body_line(pem: &str) -> String {
    pem.lines().nth(2).expect("a PEM body of several lines").to_owned()
}

async fn tls_agent(cert: &str, key: &str) -> AgentHandle {
    Agent::builder()
        .tls_pem(cert.to_owned(), key.to_owned())
        .start("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("TLS agent starts")
}

fn tls_config(agent: &AgentHandle, ca: &str) -> OcAgentConfig {
    OcAgentConfig::new()
        .with_address(format!("localhost:{}", agent.local_addr().port()))
        .with_service_name("secrets-test")
        .with_reconnection(Duration::from_millis(50))
        .with_header(HEADER_NAME, HEADER_SECRET)
        .with_ca_certificate_pem(ca)
}

/// Everything a user could see, besides the logs: `Display` and `Debug` of errors, `Debug` of configs,
/// exporters and the pipeline.
#[derive(Default)]
struct Shown(Vec<String>);

impl Shown {
    fn debug(&mut self, what: &impl std::fmt::Debug) {
        self.0.push(format!("{what:?}"));
        self.0.push(format!("{what:#?}"));
    }

    fn error(&mut self, error: &Error) {
        self.0.push(error.to_string());
        self.debug(error);
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            self.0.push(cause.to_string());
            source = cause.source();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_values_and_tls_material_never_show() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let (cert, key) = identity();
    let (other_cert, _) = identity();
    let secrets = [HEADER_SECRET.to_owned(), body_line(&cert), body_line(&key), body_line(&other_cert)];
    let mut shown = Shown::default();

    // 1. A private key pasted where the CA belongs: refused, without echoing it.
    let agent = tls_agent(&cert, &key).await;
    let pasted_key = tls_config(&agent, &key);
    shown.debug(&pasted_key);
    let error = OcAgentExporter::start(&pasted_key, &tokio::runtime::Handle::current())
        .expect_err("a private key is not a CA certificate");
    assert!(matches!(&error, Error::Config { path, .. } if path.ends_with("ca_certificate")), "{error:?}");
    shown.error(&error);

    // 2. Failing exports: the agent's certificate is not the trusted one, then the agent is down.
    let refused = exporter(&tls_config(&agent, &other_cert));
    refused.export_spans(&batch("refused", 3));
    wait_until("a refused handshake", || refused.last_error().is_some()).await;
    let error = refused
        .flush(Instant::now() + Duration::from_millis(200))
        .await
        .expect_err("the agent is not trusted");
    assert!(matches!(error, Error::Undelivered { spans: 3, .. }), "{error:?}");
    shown.error(&error);
    shown.debug(&refused);
    shown.0.extend(refused.last_error());
    shown.0.extend(
        refused.shutdown(Instant::now() + Duration::from_millis(200)).await.err().map(|e| e.to_string()),
    );

    let down = Agent::builder().start("127.0.0.1:0".parse().expect("address")).await.expect("agent");
    down.kill().await;
    let plain = OcAgentConfig::new()
        .with_address(down.local_addr().to_string())
        .with_insecure(true)
        .with_reconnection(Duration::from_millis(50))
        .with_header(HEADER_NAME, HEADER_SECRET);
    let unreachable = exporter(&plain);
    unreachable.export_spans(&batch("down", 2));
    wait_until("a refused connection", || unreachable.last_error().is_some()).await;
    let error = unreachable
        .shutdown(Instant::now() + Duration::from_millis(200))
        .await
        .expect_err("the agent is down");
    assert!(matches!(error, Error::Undelivered { spans: 2, .. }), "{error:?}");
    shown.error(&error);
    shown.debug(&unreachable);

    // 3. Succeeding exports over TLS: straight to the exporter, and through `init`.
    let trusted = tls_config(&agent, &cert);
    let delivering = exporter(&trusted);
    let spans = batch("delivered", 5);
    delivering.export_spans(&spans);
    delivering.flush(deadline()).await.expect("delivered over TLS");
    assert_eq!(received_ids(&agent.spans()), ids_of(&spans));
    shown.debug(&delivering);
    delivering.shutdown(deadline()).await.expect("shutdown");

    let config = Config::builder().ocagent(trusted.clone()).build().expect("a valid config");
    shown.debug(&config);
    let builder = Telemetry::builder(config);
    shown.debug(&builder);
    let telemetry = builder.init().expect("the pipeline starts");
    shown.debug(&telemetry);
    telemetry.shutdown_with_timeout(WAIT).await.expect("the last stats report is delivered");

    // The header did travel, on every stream, to the agent.
    let export_streams: Vec<_> =
        agent.streams().into_iter().filter(|s| s.kind != StreamKind::TraceConfig && s.messages > 0).collect();
    assert!(export_streams.len() >= 2, "trace and metrics streams: {export_streams:?}");
    assert!(export_streams.iter().all(|s| s.header(HEADER_NAME) == Some(HEADER_SECRET)));

    let logs = captured.text();
    assert!(logs.contains("ocagent exporter started"), "the capture works:\n{logs}");
    assert!(logs.contains("stream failed"), "failures were logged:\n{logs}");
    assert!(logs.contains("h2::"), "the HTTP/2 layer's own trace lines are in:\n{logs}");
    for secret in &secrets {
        for (n, line) in logs.lines().enumerate() {
            assert!(!line.contains(secret.as_str()), "log line {n} shows a secret: {line}");
        }
        for text in &shown.0 {
            assert!(!text.contains(secret.as_str()), "a secret is shown: {text}");
        }
    }
}
