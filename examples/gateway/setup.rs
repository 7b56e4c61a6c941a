//! Telemetry set-up: the config file, the command line's overrides on top of it, and `init`.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use oclayer::config::OcAgentConfig;
use oclayer::export::{Exporter, SpanBatch, StatsReport};
use oclayer::layer::Layer;
use oclayer::{Config, Telemetry};

use super::cli::Options;
use super::demo::DemoError;

/// The service name the demo reports when the config's ocagent block does not name one.
pub const SERVICE_NAME: &str = "oclayer-gateway";

/// Reads the config file and applies the flags that do not depend on the agent: sample rate, disabled
/// layers and the Prometheus port.
///
/// The flags were checked by the command line parser with the config reader's rules; they are written
/// into the parsed config's fields, since `Config` has no way to re-check a modified config.
pub fn load_config(options: &Options) -> Result<Config, DemoError> {
    let mut config = Config::from_file(&options.config).map_err(|e| DemoError::Config(e.to_string()))?;
    for warning in config.warnings() {
        eprintln!("note: {warning}");
    }
    if let Some(rate) = options.sample_rate {
        config.sample_rate = rate;
    }
    for layer in &options.disable_layers {
        match layer {
            Layer::Router => config.enabled_layers.router = false,
            Layer::Pipe => config.enabled_layers.pipe = false,
            Layer::Backend => config.enabled_layers.backend = false,
        }
    }
    if let (Some(port), Some(prometheus)) = (options.prometheus_port, config.prometheus.as_mut()) {
        prometheus.port = port;
    } else if let Some(port) = options.prometheus_port {
        eprintln!(
            "note: --prometheus-port {port} has no effect: {} has no exporters.prometheus block",
            options.config.display()
        );
    }
    Ok(config)
}

/// Points the ocagent exporter at `address`: the embedded agent's (`embedded`, plain text on loopback,
/// whatever the file says about TLS) or the one `--agent-address` named. A config without the ocagent
/// exporter gets one, so the demo always shows what an agent receives.
pub fn point_at_agent(config: &mut Config, address: String, embedded: bool) {
    let ocagent = config
        .ocagent
        .take()
        .unwrap_or_else(|| OcAgentConfig::new().with_service_name(SERVICE_NAME).with_insecure(true));
    let insecure = ocagent.insecure || embedded;
    config.ocagent = Some(ocagent.with_address(address).with_insecure(insecure));
}

/// What the pipeline handed to its exporters, counted by an exporter of the demo's own that sits beside
/// the configured ones.
#[derive(Debug, Default)]
pub struct Counts {
    spans: AtomicU64,
    reports: AtomicU64,
}

impl Counts {
    /// Finished sampled spans handed to the exporters.
    pub fn spans(&self) -> u64 {
        self.spans.load(Ordering::Relaxed)
    }

    /// Stats reports handed to the exporters (one per reporting period, and a last one at shutdown).
    pub fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }
}

/// Counts batches as they pass; keeps nothing.
struct CountingExporter(Arc<Counts>);

impl Exporter for CountingExporter {
    fn name(&self) -> &'static str {
        "demo-counter"
    }

    fn export_spans(&self, spans: &SpanBatch) {
        self.0.spans.fetch_add(spans.len() as u64, Ordering::Relaxed);
    }

    fn export_stats(&self, _report: &StatsReport) {
        self.0.reports.fetch_add(1, Ordering::Relaxed);
    }
}

/// The running pipeline and what the demo knows about it.
pub struct Started {
    /// The pipeline.
    pub telemetry: Telemetry,
    /// What it handed to the exporters.
    pub counts: Arc<Counts>,
    /// Where `/metrics` is served, if Prometheus is configured.
    pub prometheus: Option<SocketAddr>,
    /// Things the user should know (a port that was taken).
    pub notes: Vec<String>,
}

/// Starts the pipeline from `config`. When the config's Prometheus port is taken and `--prometheus-port` was not given,
/// `/metrics` moves to a free port, and a note says so: the demo should run even while another copy of it
/// (or anything else on 9091) is running; `config` then holds the port used. A port given on the command
/// line is not moved.
pub fn start(config: &mut Config, options: &Options) -> Result<Started, DemoError> {
    let counts = Arc::new(Counts::default());
    let mut notes = Vec::new();
    let init = |config: &Config| {
        Telemetry::builder(config.clone()).exporter(Arc::new(CountingExporter(Arc::clone(&counts)))).init()
    };
    let telemetry = match init(config) {
        Ok(telemetry) => telemetry,
        Err(oclayer::Error::Listen { address, path, source })
            if source.kind() == ErrorKind::AddrInUse
                && options.prometheus_port.is_none()
                && config.prometheus.as_ref().is_some_and(|p| p.port == address.port()) =>
        {
            let free = free_port(address).map_err(|e| {
                DemoError::Runtime(format!(
                    "port {} ({path}) is taken and no free port was found: {e}",
                    address.port()
                ))
            })?;
            if let Some(prometheus) = config.prometheus.as_mut() {
                prometheus.port = free;
            }
            notes.push(format!(
                "Prometheus port {} (set at {path} in {}) is in use; /metrics is served on port {free} instead \
                 (choose one with --prometheus-port)",
                address.port(),
                options.config.display()
            ));
            init(config).map_err(startup_error)?
        }
        Err(oclayer::Error::Listen { address, source, .. })
            if options.prometheus_port == Some(address.port()) =>
        {
            return Err(DemoError::Runtime(format!(
                "/metrics cannot listen on {address} (--prometheus-port): {source}; choose a free port with \
                 --prometheus-port"
            )));
        }
        Err(e) => return Err(startup_error(e)),
    };
    let prometheus = config.prometheus.as_ref().map(|p| SocketAddr::new(p.listen_address, p.port));
    Ok(Started { telemetry, counts, prometheus, notes })
}

/// Config mistakes are the user's to fix (exit 2); anything else is the environment's (exit 1).
fn startup_error(error: oclayer::Error) -> DemoError {
    match error {
        oclayer::Error::Config { .. }
        | oclayer::Error::ConfigFile { .. }
        | oclayer::Error::ConfigSyntax { .. } => DemoError::Config(error.to_string()),
        other => DemoError::Runtime(format!("cannot start telemetry: {other}")),
    }
}

/// A port that is free on `address`'s IP now. Another process could take it before the exporter binds it;
/// `init` would then fail with a clear message, which is fine for a demo.
pub fn free_port(address: SocketAddr) -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::new(address.ip(), 0))?;
    Ok(listener.local_addr()?.port())
}
