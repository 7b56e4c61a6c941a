//! KrakenD's `telemetry/opencensus` block, or a builder, into a validated [`Config`].
//!
//! The types below are the validated result; parsing and the builder fill them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// The validated telemetry configuration.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Percent of root requests traced, 0..=100.
    pub sample_rate: u8,
    /// How often views are pushed to exporters that are pushed to (ocagent). Never zero.
    pub reporting_period: Duration,
    /// Which layers record anything.
    pub enabled_layers: EnabledLayers,
    /// The ocagent exporter, if configured.
    pub ocagent: Option<OcAgentConfig>,
    /// The Prometheus exporter, if configured.
    pub prometheus: Option<PrometheusConfig>,
    /// The `/debug` pages, if configured.
    pub zpages: Option<ZPagesConfig>,
}

/// Which of the three layers record spans and measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnabledLayers {
    /// End user <-> gateway.
    pub router: bool,
    /// The proxy pipeline of one endpoint.
    pub pipe: bool,
    /// Gateway <-> one upstream service.
    pub backend: bool,
}

impl Default for EnabledLayers {
    /// All three on, as when the `enabled_layers` block is absent.
    fn default() -> Self {
        EnabledLayers { router: true, pipe: true, backend: true }
    }
}

/// `exporters.ocagent`.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct OcAgentConfig {
    /// `host:port` of the agent; default `localhost:55678`.
    pub address: String,
    /// The service name in the Node; default the executable's name.
    pub service_name: String,
    /// First reconnection delay; default 2 s.
    pub reconnection: Duration,
    /// Plain-text HTTP/2 when true; TLS verified with the system roots when false.
    pub insecure: bool,
    /// gzip every message.
    pub enable_compression: bool,
    /// gRPC metadata sent on every stream. Values are secrets: never logged nor shown by `Debug`.
    pub headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for OcAgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.keys().map(String::as_str).collect();
        f.debug_struct("OcAgentConfig")
            .field("address", &self.address)
            .field("service_name", &self.service_name)
            .field("reconnection", &self.reconnection)
            .field("insecure", &self.insecure)
            .field("enable_compression", &self.enable_compression)
            .field("headers", &format_args!("{header_names:?} (values redacted)"))
            .finish()
    }
}

/// `exporters.prometheus`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrometheusConfig {
    /// Port of the `/metrics` server.
    pub port: u16,
    /// Prefix of every metric name (`namespace_`); empty for none.
    pub namespace: String,
    /// Address to listen on; default all interfaces (`0.0.0.0`), as KrakenD does.
    pub listen_address: IpAddr,
    /// Emit exactly the names of opencensus-go's exporter (no `_total` suffix on counters).
    pub legacy_names: bool,
}

/// `exporters.zpages`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ZPagesConfig {
    /// Port of the `/debug/tracez` and `/debug/statsz` server.
    pub port: u16,
    /// Address to listen on; default all interfaces.
    pub listen_address: IpAddr,
}
