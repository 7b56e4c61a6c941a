//! Exporters: where finished spans and view snapshots go.
//!
//! The runtime core never knows which exporters exist: it hands batches to every registered [`Exporter`].
//! An exporter must return from `export_*` at once (queue and send later); it never blocks the caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

mod http_server;
pub mod memory;
pub mod ocagent;
pub mod prometheus;
pub mod zpages;

pub use ocagent::OcAgentExporter;
pub use prometheus::PrometheusExporter;
pub use zpages::ZPagesExporter;

use crate::stats::ViewData;
use crate::trace::SpanData;
use crate::{Config, Error};

/// A batch of finished spans. Shared, so several exporters can keep it without copying.
pub type SpanBatch = Arc<[SpanData]>;

/// One report of every registered view, taken at one instant.
pub type StatsReport = Arc<[ViewData]>;

/// A boxed future returned by the async parts of [`Exporter`].
pub type ExportFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// A destination for spans and stats. One trait for both, since exporters share their lifecycle
/// (flush, shutdown); an exporter overrides only what it takes.
pub trait Exporter: Send + Sync + 'static {
    /// A short name for logs and the exporter health views (`ocagent`, `prometheus`, `memory`).
    fn name(&self) -> &'static str;

    /// Takes a batch of finished spans. Must not block.
    fn export_spans(&self, spans: &SpanBatch) {
        let _ = spans;
    }

    /// Takes a stats report. Must not block.
    fn export_stats(&self, report: &StatsReport) {
        let _ = report;
    }

    /// Resolves once everything handed over so far was delivered, or fails at `deadline`.
    fn flush(&self, deadline: Instant) -> ExportFuture<'_> {
        let _ = deadline;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Delivers what is queued by `deadline`, then releases connections and servers.
    fn shutdown(&self, deadline: Instant) -> ExportFuture<'_> {
        self.flush(deadline)
    }
}

/// The exporters `config` names, started: the one place where `init` learns which exporters exist. Each
/// config-driven exporter adds one block here that starts it on `runtime` (the pipeline's background
/// runtime: spawn its tasks and servers there) and pushes it. An exporter that cannot start (a port that
/// is taken) fails `init` with its error; the ones started before it are dropped, and the runtime they run
/// on is shut down.
pub(crate) fn from_config(
    config: &Config,
    runtime: &tokio::runtime::Handle,
) -> Result<Vec<Arc<dyn Exporter>>, Error> {
    let mut exporters: Vec<Arc<dyn Exporter>> = Vec::new();
    if let Some(ocagent) = &config.ocagent {
        // The exporter names its settings from the `exporters.ocagent` block; say where that block is.
        let exporter = OcAgentExporter::start(ocagent, runtime).map_err(|error| match error {
            Error::Config { path, message } => Error::Config { path: config.path_of(&path), message },
            other => other,
        })?;
        exporters.push(exporter);
    }
    // The pulled exporters bind their port here, so a taken port fails `init`.
    if let Some(prometheus) = &config.prometheus {
        let exporter = PrometheusExporter::start(prometheus, runtime)
            .map_err(|e| listen_error_at(e, config, "exporters.prometheus.port"))?;
        exporters.push(exporter);
    }
    if let Some(zpages) = &config.zpages {
        let exporter = ZPagesExporter::start(zpages, runtime)
            .map_err(|e| listen_error_at(e, config, "exporters.zpages.port"))?;
        exporters.push(exporter);
    }
    Ok(exporters)
}

/// A server's [`Error::Listen`] names the port setting as in a whole `krakend.json`; name it as it is in
/// this config (a whole file, the bare block, or the builder).
fn listen_error_at(error: Error, config: &Config, key: &str) -> Error {
    match error {
        Error::Listen { address, source, .. } => Error::Listen { address, path: config.path_of(key), source },
        other => other,
    }
}
