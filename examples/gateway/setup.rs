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

/// Reads the config file and applies the flags on top of it: sample rate, disabled layers, the Prometheus
/// port and an external agent (`--agent-address`; the embedded agent is pointed at once it runs).
///
/// Each flag's value is written into the parsed config and checked with `Config::validate`, so the config
/// reader's rules (and words) apply to flags too; the error names the flag.
pub fn load_config(options: &Options) -> Result<Config, DemoError> {
    let mut config = Config::from_file(&options.config).map_err(|e| DemoError::Config(e.to_string()))?;
    for warning in config.warnings() {
        eprintln!("note: {warning}");
    }
    if let Some(rate) = options.sample_rate {
        config.sample_rate = rate;
        check(&config, "--sample-rate")?;
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
        check(&config, "--prometheus-port")?;
    } else if let Some(port) = options.prometheus_port {
        eprintln!(
            "note: --prometheus-port {port} has no effect: {} has no exporters.prometheus block",
            options.config.display()
        );
    }
    if let Some(address) = &options.agent_address {
        point_at_agent(&mut config, address.clone(), false);
        check(&config, "--agent-address")?;
    }
    Ok(config)
}

/// The config after `flag` changed it: the file was valid, so an error here is the flag's.
fn check(config: &Config, flag: &str) -> Result<(), DemoError> {
    config.validate().map_err(|e| DemoError::Config(format!("{flag}: {e}")))
}

/// Points the ocagent exporter at `address`: the embedded agent's (`embedded`, plain text on loopback,
/// whatever the file says about TLS) or the one `--agent-address` named. A config without the ocagent
/// exporter gets one, so the demo always shows what an agent receives. `init` checks the address.
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
    // Here rather than in `load_config`: by now the ocagent block exists, for the embedded agent too.
    if let (Some(spans), Some(ocagent)) = (options.max_queued_spans, config.ocagent.as_mut()) {
        ocagent.max_queued_spans = spans;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::default_config_path;

    /// The demo's own `examples/krakend.json` with `change` applied to the flags.
    fn load(change: impl FnOnce(&mut Options)) -> Result<Config, DemoError> {
        let mut options = Options { config: default_config_path(), ..Options::new() };
        change(&mut options);
        load_config(&options)
    }

    fn config_error(result: Result<Config, DemoError>) -> String {
        match result {
            Err(error @ DemoError::Config(_)) => {
                assert_eq!(error.exit_code(), 2, "the user's to fix");
                error.to_string()
            }
            Err(other) => panic!("expected a config error, got {other}"),
            Ok(config) => panic!("expected a config error, got {config:?}"),
        }
    }

    #[test]
    fn flags_are_checked_with_the_config_rules_and_named() {
        let block = r#"extra_config."telemetry/opencensus""#;
        let message = config_error(load(|o| o.sample_rate = Some(150)));
        assert!(
            message.starts_with(&format!(
                "--sample-rate: invalid telemetry config at {block}.sample_rate: expected an integer \
                 percentage from 0 to 100, found 150"
            )),
            "{message}"
        );
        let message = config_error(load(|o| o.prometheus_port = Some(0)));
        assert!(
            message.starts_with(&format!(
                "--prometheus-port: invalid telemetry config at {block}.exporters.prometheus.port: expected a \
                 port number from 1 to 65535, found 0"
            )),
            "{message}"
        );
        let message = config_error(load(|o| o.agent_address = Some("http://collector:55678".into())));
        assert!(
            message.starts_with(&format!(
                "--agent-address: invalid telemetry config at {block}.exporters.ocagent.address: expected \
                 host:port"
            )),
            "{message}"
        );
        assert!(message.contains("without a scheme"), "{message}");
        let message = config_error(load(|o| o.agent_address = Some("collector".into())));
        assert!(message.contains("the port is missing"), "{message}");
    }

    #[test]
    fn valid_flags_land_in_the_config() {
        let config = load(|o| {
            o.sample_rate = Some(10);
            o.prometheus_port = Some(9100);
            o.agent_address = Some("[::1]:55678".into());
            o.disable_layers = vec![Layer::Pipe];
        })
        .expect("valid flags");
        assert_eq!(config.sample_rate, 10);
        assert_eq!(config.prometheus.as_ref().map(|p| p.port), Some(9100));
        assert_eq!(config.ocagent.as_ref().map(|o| o.address.as_str()), Some("[::1]:55678"));
        assert!(config.enabled_layers.router && !config.enabled_layers.pipe && config.enabled_layers.backend);
    }
}
