//! The one error type users see.

use std::path::PathBuf;

/// What went wrong in oclayer, worded so that the reader knows where and what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The telemetry configuration is invalid. `path` is the JSON path of the offending value.
    #[error("invalid telemetry config at {path}: {message}")]
    Config {
        /// JSON path of the offending value, e.g. `extra_config."telemetry/opencensus".sample_rate`.
        path: String,
        /// What was seen and what is expected.
        message: String,
    },
    /// The configuration file could not be read.
    #[error("cannot read telemetry config file {}: {source}", path.display())]
    ConfigFile {
        /// The file that was asked for.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The telemetry configuration is not JSON at all (a missing comma, an unclosed brace...).
    #[error("telemetry config is not valid JSON at line {line}, column {column}: {message}")]
    ConfigSyntax {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem (0 when the text ended before anything was read).
        column: usize,
        /// What the JSON reader expected there.
        message: String,
    },
    /// An exporter's HTTP server (Prometheus `/metrics`, the `/debug` pages) cannot listen on its address:
    /// the port is taken, needs privileges, or the address is not one of this host's.
    #[error("cannot listen on {address} (set at {path}): {source}; choose a free port or another address")]
    Listen {
        /// The address that was asked for.
        address: std::net::SocketAddr,
        /// JSON path of the setting that chose it, e.g.
        /// `extra_config."telemetry/opencensus".exporters.prometheus.port`.
        path: String,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// A stats view cannot be registered: its definition is invalid or conflicts with one in use.
    #[error("stats view `{name}`: {message}")]
    View {
        /// The view's name.
        name: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A stats tag key is invalid.
    #[error("invalid stats tag key {key:?}: {message}")]
    TagKey {
        /// The key as given.
        key: String,
        /// What is expected.
        message: String,
    },
    /// `init` was called while a telemetry pipeline is running; there is one per process. Shut the running
    /// one down (or drop its `Telemetry`) first.
    #[error(
        "telemetry is already initialized in this process: shut the running pipeline down (Telemetry::shutdown) \
         before calling init again"
    )]
    AlreadyInitialized,
    /// The telemetry pipeline could not start, flush or stop as asked (its thread could not be created, a
    /// deadline passed, an exporter failed to shut down); the message says which and what to do.
    #[error("telemetry pipeline: {message}")]
    Pipeline {
        /// What failed.
        message: String,
    },
    /// An exporter could not deliver everything it was handed before the deadline of a flush or a shutdown
    /// (the agent is down, slow, or refuses the connection: `last_error` says which). What is counted here
    /// was still queued at the deadline; after a shutdown it is lost.
    #[error(
        "{exporter} exporter: {spans} spans and {reports} stats reports not delivered to {destination} before the \
         deadline{}",
        last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
    )]
    Undelivered {
        /// The exporter, e.g. `ocagent`.
        exporter: &'static str,
        /// Where it sends, e.g. `https://collector:55678`.
        destination: String,
        /// Spans still queued.
        spans: u64,
        /// Stats reports still queued.
        reports: u64,
        /// The last connection or stream error, if the last attempt failed.
        last_error: Option<String>,
    },
}
