//! KrakenD's `telemetry/opencensus` block, or a builder, into a validated [`Config`].
//!
//! There are two doors, and both apply the same rules:
//!
//! - JSON: [`Config::from_file`], [`Config::from_json_str`] and [`Config::from_value`] accept a whole
//!   `krakend.json` (the block is looked up in the root `extra_config`), the `extra_config` object alone,
//!   or the bare block. The block may use the current namespace `telemetry/opencensus` or the legacy
//!   `github_com/devopsfaith/krakend-opencensus`, not both.
//! - Rust: [`Config::builder`], with [`OcAgentConfig`], [`PrometheusConfig`] and [`ZPagesConfig`].
//!
//! One difference: a JSON block must name at least one exporter (KrakenD's rule), while a built config may
//! name none and leave them to [`TelemetryBuilder::exporter`](crate::TelemetryBuilder::exporter). `init`
//! refuses to start with no exporter at all.
//!
//! Every invalid value is an [`Error::Config`] whose `path` names the value as it sits in the document,
//! e.g. `extra_config."telemetry/opencensus".exporters.ocagent.reconnection` for a whole file. For a bare
//! block the path starts at the block's own keys (`exporters.ocagent.reconnection`), and the builder
//! reports the same key paths. Messages say what was found and what is expected; header values are never
//! repeated, since they are usually credentials.
//!
//! A JSON `null` counts as a missing key, as it does for KrakenD (Go's JSON decoder leaves the default in
//! place). Keys that oclayer does not know inside the block are not errors, because KrakenD configs carry
//! options of other exporters: each one is logged with `tracing::warn!` and kept in [`Config::warnings`].
//!
//! This module only reads and checks; it starts nothing. Layers are switched and exporters started by
//! `init`, which should log [`EnabledLayers::describe`] so that a KrakenD-style `enabled_layers` block
//! that leaves a layer out (and so turns it off) is visible at startup.

mod duration;
mod json;
mod report;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use crate::Error;

/// The namespace of the block in KrakenD 2.x and later.
pub const NAMESPACE: &str = "telemetry/opencensus";
/// The namespace of the block before KrakenD 2.0; still accepted.
pub const LEGACY_NAMESPACE: &str = "github_com/devopsfaith/krakend-opencensus";
/// The exporters oclayer has, by their config names.
pub const SUPPORTED_EXPORTERS: [&str; 3] = ["ocagent", "prometheus", "zpages"];
/// `reporting_period` when missing or 0: opencensus-go's default.
pub const DEFAULT_REPORTING_PERIOD: Duration = Duration::from_secs(10);
/// `exporters.ocagent.address` when missing: the agent's well-known port on this host.
pub const DEFAULT_OCAGENT_ADDRESS: &str = "localhost:55678";
/// `exporters.ocagent.reconnection` when missing or zero.
pub const DEFAULT_RECONNECTION: Duration = Duration::from_secs(2);
/// How many spans the ocagent exporter keeps for an unreachable agent, by default.
pub const DEFAULT_OCAGENT_MAX_QUEUED_SPANS: usize = 64 * 1024;
/// How many stats reports the ocagent exporter keeps for an unreachable agent, by default (about ten
/// minutes at the default reporting period).
pub const DEFAULT_OCAGENT_MAX_QUEUED_REPORTS: usize = 64;

/// The validated telemetry configuration.
///
/// Equality compares the settings only, not where they were read from nor the warnings.
#[derive(Clone, Debug)]
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
    /// Where the block sits in the document it was read from (`extra_config."telemetry/opencensus"`);
    /// the root for a bare block and for the builder.
    block_path: report::JsonPath,
    /// Keys that were ignored, and why.
    warnings: Vec<ConfigWarning>,
}

impl PartialEq for Config {
    fn eq(&self, other: &Self) -> bool {
        self.sample_rate == other.sample_rate
            && self.reporting_period == other.reporting_period
            && self.enabled_layers == other.enabled_layers
            && self.ocagent == other.ocagent
            && self.prometheus == other.prometheus
            && self.zpages == other.zpages
    }
}

impl Config {
    /// Reads and validates a JSON file: a whole `krakend.json`, or the bare block.
    ///
    /// # Errors
    /// [`Error::ConfigFile`] when the file cannot be read, and the errors of [`Config::from_json_str`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::ConfigFile { path: path.to_path_buf(), source })?;
        Config::from_json_str(&text)
    }

    /// Parses and validates JSON text: a whole `krakend.json`, its `extra_config` object, or the bare
    /// block.
    ///
    /// ```
    /// use std::time::Duration;
    /// use oclayer_runtime::Config;
    ///
    /// let config = Config::from_json_str(r#"{
    ///     "version": 3,
    ///     "extra_config": {
    ///         "telemetry/opencensus": {
    ///             "sample_rate": 10,
    ///             "exporters": { "prometheus": { "port": 9091, "namespace": "krakend" } }
    ///         }
    ///     }
    /// }"#)?;
    /// assert_eq!(config.sample_rate, 10);
    /// assert_eq!(config.reporting_period, Duration::from_secs(10)); // the default
    /// assert_eq!(config.prometheus.as_ref().map(|p| p.port), Some(9091));
    ///
    /// // Errors name the offending value by its JSON path.
    /// let err = Config::from_json_str(r#"{"sample_rate": 150, "exporters": {"zpages": {"port": 8081}}}"#)
    ///     .unwrap_err();
    /// assert!(err.to_string().starts_with("invalid telemetry config at sample_rate: expected an integer"));
    /// # Ok::<(), oclayer_runtime::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ConfigSyntax`] when the text is not JSON; [`Error::Config`] for a missing block or an
    /// invalid value.
    pub fn from_json_str(json: &str) -> Result<Config, Error> {
        json::parse_str(json)
    }

    /// Validates an already parsed JSON document, in any of the shapes [`Config::from_json_str`] accepts.
    ///
    /// # Errors
    /// [`Error::Config`] for a missing block or an invalid value.
    pub fn from_value(document: &serde_json::Value) -> Result<Config, Error> {
        json::parse_value(document)
    }

    /// Starts a configuration in Rust. Nothing is traced (`sample_rate` 0) and no exporter is set until
    /// you say so; [`ConfigBuilder::build`] checks the same rules as the JSON reader, except that it
    /// accepts a config without exporters, for exporters added in code with
    /// [`TelemetryBuilder::exporter`](crate::TelemetryBuilder::exporter). `init` refuses to start with no
    /// exporter at all.
    ///
    /// ```
    /// use std::time::Duration;
    /// use oclayer_runtime::config::{Config, OcAgentConfig, PrometheusConfig};
    ///
    /// let config = Config::builder()
    ///     .sample_rate(100)
    ///     .reporting_period(Duration::from_secs(1))
    ///     .ocagent(OcAgentConfig::new().with_address("collector:55678").with_insecure(true))
    ///     .prometheus(PrometheusConfig::new(9091).with_namespace("gateway"))
    ///     .build()?;
    /// assert_eq!(config.ocagent.as_ref().map(|o| o.reconnection), Some(Duration::from_secs(2)));
    ///
    /// // Errors name the setting by its JSON key.
    /// let err = Config::builder().sample_rate(101).build().unwrap_err();
    /// assert!(err.to_string().starts_with("invalid telemetry config at sample_rate: expected an integer"));
    /// # Ok::<(), oclayer_runtime::Error>(())
    /// ```
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// The keys that were ignored while reading JSON, and why (also logged with `tracing::warn!`).
    /// Always empty for the builder.
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// The full JSON path of a setting, for errors found after parsing (a port that cannot be bound):
    /// `config.path_of("exporters.prometheus.port")` is
    /// `extra_config."telemetry/opencensus".exporters.prometheus.port` when the config came from a whole
    /// `krakend.json`, and `exporters.prometheus.port` for a bare block or the builder.
    pub fn path_of(&self, key: &str) -> String {
        if self.block_path.is_root() { key.to_owned() } else { format!("{}.{key}", self.block_path) }
    }

    /// Checks a config whose public fields were changed after it was read or built (a command-line
    /// override, say), with the rules and words of the reader and the builder: errors name the setting by
    /// its JSON path ([`path_of`](Config::path_of)). A zero duration or an empty service name passes, as
    /// in the builder: it stands for the default, which `init` fills in. `init` runs the same check, so
    /// calling this first only reports a mistake earlier. It does not require an exporter: exporters may
    /// be added in code, and `init` checks that there is one from either side.
    ///
    /// ```
    /// use oclayer_runtime::Config;
    ///
    /// let mut config = Config::from_json_str(r#"{"exporters": {"prometheus": {"port": 9091}}}"#)?;
    /// config.sample_rate = 150;
    /// let err = config.validate().unwrap_err();
    /// assert!(err.to_string().starts_with("invalid telemetry config at sample_rate: expected an integer"));
    /// # Ok::<(), oclayer_runtime::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`], as [`ConfigBuilder::build`].
    pub fn validate(&self) -> Result<(), Error> {
        self.clone().validated().map(drop)
    }

    /// The config checked again and with its defaults filled in, for `init`: its fields are public, so it
    /// may have changed since it was read or built.
    pub(crate) fn validated(mut self) -> Result<Config, Error> {
        let block = self.block_path.clone();
        validate::config(&mut self, &block)?;
        Ok(self)
    }

    /// Whether the config itself starts an exporter (ocagent, Prometheus or zpages).
    pub(crate) fn names_an_exporter(&self) -> bool {
        self.ocagent.is_some() || self.prometheus.is_some() || self.zpages.is_some()
    }
}

/// A key that was ignored while reading the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigWarning {
    /// JSON path of the ignored key, in the same form as [`Error::Config`]'s.
    pub path: String,
    /// Why it was ignored.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "telemetry config at {}: {}", self.path, self.message)
    }
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

impl EnabledLayers {
    /// All three on: what an absent `enabled_layers` block means.
    pub const ALL: EnabledLayers = EnabledLayers { router: true, pipe: true, backend: true };
    /// All three off: an empty `enabled_layers` block (KrakenD turns off every layer it does not name).
    pub const NONE: EnabledLayers = EnabledLayers { router: false, pipe: false, backend: false };

    /// The set for the startup log, e.g. `router on, pipe off, backend on`.
    pub fn describe(&self) -> String {
        let state = |on: bool| if on { "on" } else { "off" };
        format!("router {}, pipe {}, backend {}", state(self.router), state(self.pipe), state(self.backend))
    }
}

impl Default for EnabledLayers {
    /// All three on, as when the `enabled_layers` block is absent.
    fn default() -> Self {
        EnabledLayers::ALL
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
    /// A PEM CA certificate (or several) to trust besides the system roots, for an agent whose certificate
    /// is self-signed or from a private CA; in JSON, `ca_file` names a PEM file, read with the config. Ignored
    /// when `insecure`.
    pub ca_certificate_pem: Option<String>,
    /// Spans kept while the agent is unreachable (or slower than the traffic); beyond this the oldest are
    /// dropped and counted. Default [`DEFAULT_OCAGENT_MAX_QUEUED_SPANS`]; 0 means the default. JSON:
    /// `max_queued_spans`. This is the exporter's own queue, after the span pipeline; the pipeline's rings
    /// in front of it have a bound of their own, per thread that ends sampled spans
    /// ([`TelemetryBuilder::span_queue_capacity`](crate::TelemetryBuilder::span_queue_capacity)).
    pub max_queued_spans: usize,
    /// Stats reports kept while the agent is unreachable; beyond this the oldest are dropped and counted.
    /// Default [`DEFAULT_OCAGENT_MAX_QUEUED_REPORTS`]; 0 means the default. JSON: `max_queued_reports`.
    pub max_queued_reports: usize,
}

impl OcAgentConfig {
    /// The defaults: agent at `localhost:55678` over TLS, the executable's name as service name, 2 s
    /// reconnection, no compression, no headers.
    pub fn new() -> Self {
        OcAgentConfig {
            address: DEFAULT_OCAGENT_ADDRESS.to_owned(),
            service_name: executable_name(),
            reconnection: DEFAULT_RECONNECTION,
            insecure: false,
            enable_compression: false,
            headers: BTreeMap::new(),
            ca_certificate_pem: None,
            max_queued_spans: DEFAULT_OCAGENT_MAX_QUEUED_SPANS,
            max_queued_reports: DEFAULT_OCAGENT_MAX_QUEUED_REPORTS,
        }
    }

    /// Sets [`address`](Self::address), `host:port`.
    #[must_use]
    pub fn with_address(mut self, address: impl Into<String>) -> Self {
        self.address = address.into();
        self
    }

    /// Sets [`service_name`](Self::service_name); empty means the executable's name.
    #[must_use]
    pub fn with_service_name(mut self, service_name: impl Into<String>) -> Self {
        self.service_name = service_name.into();
        self
    }

    /// Sets [`reconnection`](Self::reconnection); zero means the default, 2 s.
    #[must_use]
    pub fn with_reconnection(mut self, reconnection: Duration) -> Self {
        self.reconnection = reconnection;
        self
    }

    /// Sets [`insecure`](Self::insecure): true for plain-text HTTP/2.
    #[must_use]
    pub fn with_insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// Sets [`enable_compression`](Self::enable_compression): true to gzip every message.
    #[must_use]
    pub fn with_enable_compression(mut self, enable_compression: bool) -> Self {
        self.enable_compression = enable_compression;
        self
    }

    /// Adds one header (gRPC metadata) sent on every stream. The name is lowercased when the config is
    /// built; a header already set under the same name is replaced.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Trusts this PEM CA certificate (or bundle) besides the system roots: see
    /// [`ca_certificate_pem`](Self::ca_certificate_pem).
    #[must_use]
    pub fn with_ca_certificate_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_certificate_pem = Some(pem.into());
        self
    }

    /// Sets [`max_queued_spans`](Self::max_queued_spans); 0 means the default.
    #[must_use]
    pub fn with_max_queued_spans(mut self, spans: usize) -> Self {
        self.max_queued_spans = spans;
        self
    }

    /// Sets [`max_queued_reports`](Self::max_queued_reports); 0 means the default.
    #[must_use]
    pub fn with_max_queued_reports(mut self, reports: usize) -> Self {
        self.max_queued_reports = reports;
        self
    }

    /// Adds several headers, as [`with_header`](Self::with_header) does.
    #[must_use]
    pub fn with_headers<N, V>(mut self, headers: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<String>,
        V: Into<String>,
    {
        self.headers.extend(headers.into_iter().map(|(n, v)| (n.into(), v.into())));
        self
    }
}

impl Default for OcAgentConfig {
    /// Same as [`OcAgentConfig::new`].
    fn default() -> Self {
        OcAgentConfig::new()
    }
}

impl fmt::Debug for OcAgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.keys().map(String::as_str).collect();
        f.debug_struct("OcAgentConfig")
            .field("address", &self.address)
            .field("service_name", &self.service_name)
            .field("reconnection", &self.reconnection)
            .field("insecure", &self.insecure)
            .field("enable_compression", &self.enable_compression)
            .field("headers", &format_args!("{header_names:?} (values redacted)"))
            .field("ca_certificate_pem", &self.ca_certificate_pem.as_ref().map(|_| "set"))
            .field("max_queued_spans", &self.max_queued_spans)
            .field("max_queued_reports", &self.max_queued_reports)
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

impl PrometheusConfig {
    /// `/metrics` on `port` of all interfaces, no namespace, current names.
    pub fn new(port: u16) -> Self {
        PrometheusConfig {
            port,
            namespace: String::new(),
            listen_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            legacy_names: false,
        }
    }

    /// Sets [`namespace`](Self::namespace), the metric name prefix.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets [`listen_address`](Self::listen_address).
    #[must_use]
    pub fn with_listen_address(mut self, listen_address: IpAddr) -> Self {
        self.listen_address = listen_address;
        self
    }

    /// Sets [`legacy_names`](Self::legacy_names).
    #[must_use]
    pub fn with_legacy_names(mut self, legacy_names: bool) -> Self {
        self.legacy_names = legacy_names;
        self
    }
}

/// `exporters.zpages`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ZPagesConfig {
    /// Port of the `/debug/tracez` and `/debug/statsz` server.
    pub port: u16,
    /// Address to listen on; default loopback (`127.0.0.1`), because the pages show span names and
    /// attributes (paths, hosts, user agents) that should not reach the internet by accident. Set
    /// `0.0.0.0` to reach them from other hosts.
    pub listen_address: IpAddr,
}

impl ZPagesConfig {
    /// The `/debug` pages on `port` of the loopback interface.
    pub fn new(port: u16) -> Self {
        ZPagesConfig { port, listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST) }
    }

    /// Sets [`listen_address`](Self::listen_address).
    #[must_use]
    pub fn with_listen_address(mut self, listen_address: IpAddr) -> Self {
        self.listen_address = listen_address;
        self
    }
}

/// Builds a [`Config`] in Rust; see [`Config::builder`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ConfigBuilder {
    sample_rate: u8,
    reporting_period: Duration,
    enabled_layers: EnabledLayers,
    ocagent: Option<OcAgentConfig>,
    prometheus: Option<PrometheusConfig>,
    zpages: Option<ZPagesConfig>,
}

impl ConfigBuilder {
    /// Percent of root requests traced, 0..=100; default 0 (none), as in KrakenD.
    pub fn sample_rate(mut self, percent: u8) -> Self {
        self.sample_rate = percent;
        self
    }

    /// How often views are pushed to the ocagent exporter; zero means the default, 10 s. Unlike the JSON
    /// key, any duration is allowed, sub-second ones included.
    pub fn reporting_period(mut self, period: Duration) -> Self {
        self.reporting_period = period;
        self
    }

    /// Which layers record; default all three.
    pub fn enabled_layers(mut self, layers: EnabledLayers) -> Self {
        self.enabled_layers = layers;
        self
    }

    /// Exports spans and views to an OpenCensus agent.
    pub fn ocagent(mut self, ocagent: OcAgentConfig) -> Self {
        self.ocagent = Some(ocagent);
        self
    }

    /// Serves the views on a Prometheus `/metrics` endpoint.
    pub fn prometheus(mut self, prometheus: PrometheusConfig) -> Self {
        self.prometheus = Some(prometheus);
        self
    }

    /// Serves the `/debug/tracez` and `/debug/statsz` pages.
    pub fn zpages(mut self, zpages: ZPagesConfig) -> Self {
        self.zpages = Some(zpages);
        self
    }

    /// Checks the settings with the JSON reader's rules. Errors name the JSON key the setting stands for
    /// (`sample_rate`, `exporters.prometheus.port`, ...). Unlike a JSON block, a built config may name no
    /// exporter: add yours with [`TelemetryBuilder::exporter`](crate::TelemetryBuilder::exporter).
    ///
    /// # Errors
    /// [`Error::Config`]: `sample_rate` above 100, an invalid address, header, port or namespace, two
    /// servers on one port.
    pub fn build(self) -> Result<Config, Error> {
        let mut config = Config {
            sample_rate: self.sample_rate,
            reporting_period: self.reporting_period,
            enabled_layers: self.enabled_layers,
            ocagent: self.ocagent,
            prometheus: self.prometheus,
            zpages: self.zpages,
            block_path: report::JsonPath::root(),
            warnings: Vec::new(),
        };
        validate::config(&mut config, &report::JsonPath::root())?;
        Ok(config)
    }
}

/// The default service name: the file name of the running executable, without extension.
fn executable_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| path.file_stem().map(|stem| stem.to_string_lossy().into_owned()))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "oclayer".to_owned())
}
