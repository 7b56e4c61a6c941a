//! The connection to the agent: one tonic channel (one HTTP/2 connection, reconnected on demand) shared by
//! the three streams, TLS unless `insecure`, gzip when `enable_compression`, and the configured headers as
//! request metadata on every stream.

use std::fmt;
use std::time::Duration;

use oclayer_proto::agent::metrics::v1::metrics_service_client::MetricsServiceClient;
use oclayer_proto::agent::trace::v1::trace_service_client::TraceServiceClient;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::Error;
use crate::config::OcAgentConfig;

/// How long a TCP connect (and TLS handshake) may take before the attempt counts as failed.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 PING interval. Agents built on grpc-go refuse pings more often than every 5 minutes by default
/// (their keepalive enforcement answers with GOAWAY), so this is the shortest safe interval; streams that
/// carry data notice a dead agent sooner, when it does not answer their end (see `stream.rs`).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(300);
/// How long a PING may go unanswered before the connection is considered dead.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The channel and what every request carries. The metadata values are secrets: `Debug` shows names only.
pub(super) struct Transport {
    channel: Channel,
    metadata: MetadataMap,
    compression: bool,
    /// `http://` or `https://` plus the address, for logs and errors.
    target: String,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .metadata
            .keys()
            .map(|key| match key {
                tonic::metadata::KeyRef::Ascii(key) => key.as_str(),
                tonic::metadata::KeyRef::Binary(key) => key.as_str(),
            })
            .collect();
        f.debug_struct("Transport")
            .field("target", &self.target)
            .field("compression", &self.compression)
            .field("headers", &format_args!("{names:?} (values redacted)"))
            .finish_non_exhaustive()
    }
}

fn config_error(key: &str, message: String) -> Error {
    Error::Config { path: format!("exporters.ocagent.{key}"), message }
}

impl Transport {
    /// Checks the settings and sets up the channel. Nothing connects yet: the first stream does. Must run
    /// inside the tokio runtime the streams will run on (the channel spawns its worker there).
    pub(super) fn new(config: &OcAgentConfig) -> Result<Transport, Error> {
        let scheme = if config.insecure { "http" } else { "https" };
        let target = format!("{scheme}://{}", config.address);
        let endpoint = Endpoint::from_shared(target.clone())
            .map_err(|e| {
                config_error("address", format!("expected host:port, found {:?}: {e}", config.address))
            })?
            .user_agent(concat!("oclayer/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| config_error("address", format!("cannot build the user agent: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(false);
        let endpoint = if config.insecure { endpoint } else { with_tls(endpoint, config)? };
        Ok(Transport {
            channel: endpoint.connect_lazy(),
            metadata: metadata(config)?,
            compression: config.enable_compression,
            target,
        })
    }

    /// Where the streams go, e.g. `https://collector:55678`.
    pub(super) fn target(&self) -> &str {
        &self.target
    }

    /// A request carrying `message` and the configured headers.
    pub(super) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        request
    }

    /// A gRPC client on the shared channel for calls with a custom codec, compressing if configured.
    pub(super) fn grpc(&self) -> tonic::client::Grpc<Channel> {
        let grpc =
            tonic::client::Grpc::new(self.channel.clone()).accept_compressed(CompressionEncoding::Gzip);
        if self.compression { grpc.send_compressed(CompressionEncoding::Gzip) } else { grpc }
    }

    /// A `TraceService` client on the shared channel, compressing if configured.
    pub(super) fn trace_client(&self) -> TraceServiceClient<Channel> {
        let client =
            TraceServiceClient::new(self.channel.clone()).accept_compressed(CompressionEncoding::Gzip);
        if self.compression { client.send_compressed(CompressionEncoding::Gzip) } else { client }
    }

    /// A `MetricsService` client on the shared channel, compressing if configured.
    pub(super) fn metrics_client(&self) -> MetricsServiceClient<Channel> {
        let client =
            MetricsServiceClient::new(self.channel.clone()).accept_compressed(CompressionEncoding::Gzip);
        if self.compression { client.send_compressed(CompressionEncoding::Gzip) } else { client }
    }
}

/// TLS with rustls (ring): the system's roots plus webpki's (so a container without a CA bundle still
/// verifies public certificates), plus the configured CA, if any.
fn with_tls(endpoint: Endpoint, config: &OcAgentConfig) -> Result<Endpoint, Error> {
    let mut tls = ClientTlsConfig::new().with_webpki_roots();
    if let Some(pem) = &config.ca_certificate_pem {
        tls = tls.ca_certificate(Certificate::from_pem(checked_pem(pem)?));
    }
    // The system roots are loaded here; a host without any makes tonic refuse them, so fall back to
    // webpki's alone.
    match endpoint.clone().tls_config(tls.clone().with_native_roots()) {
        Ok(endpoint) => Ok(endpoint),
        Err(with_system) => endpoint.tls_config(tls).map_err(|e| {
            config_error(
                "address",
                format!(
                    "cannot set up TLS for {}: {e} (with the system roots: {with_system})",
                    config.address
                ),
            )
        }),
    }
}

/// The configured CA must hold at least one certificate that parses: tonic would otherwise skip bad PEM
/// silently and the agent would be refused later with a less helpful error.
fn checked_pem(pem: &str) -> Result<&str, Error> {
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        match certificate {
            Ok(_) => count += 1,
            Err(e) => {
                return Err(config_error(
                    "ca_certificate",
                    format!("the CA certificate is not valid PEM: {e}"),
                ));
            }
        }
    }
    if count == 0 {
        return Err(config_error(
            "ca_certificate",
            "expected at least one PEM certificate (-----BEGIN CERTIFICATE-----), found none".to_owned(),
        ));
    }
    Ok(pem)
}

/// The headers as gRPC metadata. The config reader already checked them; the builder's values are checked
/// here too, since an `OcAgentConfig` may be made without it. Values are never echoed in errors.
fn metadata(config: &OcAgentConfig) -> Result<MetadataMap, Error> {
    let mut metadata = MetadataMap::new();
    for (name, value) in &config.headers {
        let lower = name.to_ascii_lowercase();
        let key = AsciiMetadataKey::from_bytes(lower.as_bytes()).map_err(|_| {
            config_error(
                &format!("headers.{name}"),
                format!(
                    "{name:?} is not a valid gRPC metadata name (lowercase letters, digits, `-`, `_`, `.`)"
                ),
            )
        })?;
        // gRPC allows printable ASCII only (HTTP would pass other bytes through, and agents reject them).
        let printable = value.bytes().all(|byte| (0x20..=0x7e).contains(&byte));
        let mut value = AsciiMetadataValue::try_from(value.as_str()).ok().filter(|_| printable).ok_or_else(|| {
            config_error(
                &format!("headers.{name}"),
                "the value must be printable ASCII (the value is not shown, as header values are often secrets)"
                    .to_owned(),
            )
        })?;
        // Sensitive: HTTP/2 then never enters the value in its compression tables (whose sizes could leak
        // it), and `Debug` of the value, wherever a dependency prints one, shows `Sensitive`.
        value.set_sensitive(true);
        metadata.insert(key, value);
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    #[test]
    fn headers_become_metadata_and_debug_hides_their_values() {
        let config = OcAgentConfig::new()
            .with_address("127.0.0.1:1")
            .with_insecure(true)
            .with_header("Authorization", "Bearer s3cret")
            .with_header("x-tenant", "edge");
        let rt = runtime();
        let _inside = rt.enter();
        let transport = Transport::new(&config).expect("valid");
        let request = transport.request(());
        assert_eq!(
            request.metadata().get("authorization").and_then(|v| v.to_str().ok()),
            Some("Bearer s3cret")
        );
        assert_eq!(request.metadata().get("x-tenant").and_then(|v| v.to_str().ok()), Some("edge"));
        assert!(request.metadata().get("authorization").is_some_and(|v| v.is_sensitive()));
        // What a dependency (tonic, h2) would print of the request's metadata.
        let printed = format!("{:?}", request.metadata());
        assert!(printed.contains("authorization") && !printed.contains("s3cret"), "{printed}");
        let debug = format!("{transport:?}");
        assert!(debug.contains("authorization") && !debug.contains("s3cret"), "{debug}");
        assert_eq!(transport.target(), "http://127.0.0.1:1");
    }

    #[test]
    fn bad_headers_are_config_errors_without_the_value() {
        let rt = runtime();
        let _inside = rt.enter();
        let bad_value = OcAgentConfig::new().with_insecure(true).with_header("x-key", "caf\u{e9} s3cret");
        let error = Transport::new(&bad_value).expect_err("not ASCII").to_string();
        assert!(error.contains("exporters.ocagent.headers.x-key") && !error.contains("s3cret"), "{error}");
        let bad_name = OcAgentConfig::new().with_insecure(true).with_header("bad name", "v");
        assert!(Transport::new(&bad_name).is_err());
    }

    #[test]
    fn tls_is_the_default_and_a_bad_ca_is_refused_at_start() {
        let rt = runtime();
        let _inside = rt.enter();
        let tls = Transport::new(&OcAgentConfig::new().with_address("localhost:55678")).expect("tls");
        assert_eq!(tls.target(), "https://localhost:55678");

        let not_pem = OcAgentConfig::new().with_ca_certificate_pem("hello");
        let error = Transport::new(&not_pem).expect_err("no certificate").to_string();
        assert!(error.contains("exporters.ocagent.ca_certificate"), "{error}");

        let broken = OcAgentConfig::new()
            .with_ca_certificate_pem("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n");
        assert!(Transport::new(&broken).is_err());

        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
        let trusted = OcAgentConfig::new().with_ca_certificate_pem(generated.cert.pem());
        assert!(Transport::new(&trusted).is_ok());
    }

    #[test]
    fn a_malformed_address_is_a_config_error() {
        let rt = runtime();
        let _inside = rt.enter();
        let error = Transport::new(&OcAgentConfig::new().with_address("bad address:1").with_insecure(true))
            .expect_err("space")
            .to_string();
        assert!(error.contains("exporters.ocagent.address"), "{error}");
    }
}
