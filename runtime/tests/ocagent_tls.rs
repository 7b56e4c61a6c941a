//! TLS to the agent: a self-signed certificate trusted through the config works; one that is not trusted
//! is refused, and the exporter says why.

mod ocagent_support;

use std::time::{Duration, Instant};

use ocagent_support::*;
use oclayer_agent::{Agent, AgentHandle};
use oclayer_runtime::Error;
use oclayer_runtime::config::OcAgentConfig;
use oclayer_runtime::export::Exporter;

/// A TLS agent on a free loopback port with a fresh self-signed certificate for `localhost`; returns it
/// and the certificate's PEM.
async fn tls_agent() -> (AgentHandle, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let cert = generated.cert.pem();
    let agent = Agent::builder()
        .tls_pem(cert.clone(), generated.signing_key.serialize_pem())
        .start("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("TLS agent starts");
    (agent, cert)
}

/// TLS (not `insecure`) to `localhost`, the name in the certificate.
fn tls_config(agent: &AgentHandle) -> OcAgentConfig {
    OcAgentConfig::new()
        .with_address(format!("localhost:{}", agent.local_addr().port()))
        .with_service_name("tls-test")
        .with_reconnection(Duration::from_millis(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_trusted_by_config_works() {
    let (agent, cert) = tls_agent().await;
    let exporter = exporter(&tls_config(&agent).with_ca_certificate_pem(cert).with_enable_compression(true));
    let spans = batch("tls", 20);
    exporter.export_spans(&spans);
    exporter.flush(deadline()).await.expect("delivered over TLS");
    assert_eq!(received_ids(&agent.spans()), ids_of(&spans));
    exporter.shutdown(deadline()).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused_with_a_clear_error() {
    let (agent, _cert) = tls_agent().await;
    let other_ca =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen").cert.pem();
    for config in [tls_config(&agent), tls_config(&agent).with_ca_certificate_pem(other_ca)] {
        let exporter = exporter(&config);
        exporter.export_spans(&batch("refused", 3));
        wait_until("a refused handshake", || exporter.last_error().is_some()).await;
        let error = exporter
            .flush(Instant::now() + Duration::from_millis(200))
            .await
            .expect_err("the certificate is not trusted");
        let Error::Undelivered { spans: 3, last_error: Some(last_error), .. } = &error else {
            panic!("expected 3 undelivered spans and the reason, got {error:?}");
        };
        assert!(last_error.contains("certificate"), "the reason names the certificate: {last_error}");
        assert!(error.to_string().contains("invalid peer certificate"), "{error}");
        assert!(agent.spans().is_empty());
        let _ = exporter.shutdown(Instant::now()).await;
    }
}
