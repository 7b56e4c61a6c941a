//! The `/debug` pages, after OpenCensus zPages: `exporters.zpages {port}` (our extension of KrakenD's
//! config) serves
//!
//! - `GET /debug/tracez`: span names with counts by latency bucket (0–10 µs … ≥100 s) and of errors since
//!   start, and for a chosen name and bucket the most recent sample spans with their attributes, events and
//!   status;
//! - `GET /debug/statsz`: every view and its current rows, from a fresh snapshot;
//! - `GET /debug`: links to both.
//!
//! Pages are rendered on the server, need no JavaScript, and escape every string they did not write
//! themselves. Spans come in through [`Exporter::export_spans`] like for any exporter and are kept in a
//! bounded store (a few samples per name and bucket). The Running column counts the sampled spans started
//! and not yet ended, from [`trace::running_spans`](crate::trace::running_spans) when the pages are started
//! with [`ZPagesExporter::start`] (as `init` does); pages started with
//! [`ZPagesExporter::start_with_source`] take them from [`ZPagesExporter::set_running_spans`], and say
//! they are not tracked until it is called.

mod html;
mod statsz;
mod store;
mod tracez;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use hyper::StatusCode;
use hyper::header::{HeaderName, HeaderValue};
use hyper::http::request::Parts;
use tokio::runtime::Handle;

use super::http_server::{self, HttpResponse, HttpServer};
use super::{ExportFuture, Exporter, SpanBatch, StatsReport};
use crate::Error;
use crate::config::ZPagesConfig;
use store::SpanStore;
use tracez::RunningSpans;

/// The JSON path named in errors about the `/debug` server's address.
const PORT_CONFIG_KEY: &str = r#"extra_config."telemetry/opencensus".exporters.zpages.port"#;

const SERVED_PATHS: &str = "/debug, /debug/tracez and /debug/statsz";

const HTML: &str = "text/html; charset=utf-8";

/// Serves the `/debug` pages and keeps the recent spans they show.
///
/// Built by `init` from `exporters.zpages`; the server stops on [`Exporter::shutdown`] or when the exporter
/// is dropped.
pub struct ZPagesExporter {
    server: HttpServer,
    pages: Arc<Pages>,
}

/// What the pages read.
struct Pages {
    spans: SpanStore,
    stats: Box<dyn Fn() -> StatsReport + Send + Sync>,
    running: OnceLock<Box<RunningSpans>>,
}

impl ZPagesExporter {
    /// Binds `listen_address:port` now and serves the pages; `/debug/statsz` shows the views of the stats
    /// registry, from a fresh [`snapshot`](crate::stats::snapshot) on every request, and `/debug/tracez`
    /// the running spans of this process from [`running_spans`](crate::trace::running_spans).
    ///
    /// `rt` runs the server; it needs IO and time enabled. A port that is taken (or not allowed) fails here
    /// with [`Error::Listen`], naming the address and the config key. Port 0 binds a free port: see
    /// [`ZPagesExporter::local_addr`].
    pub fn start(config: &ZPagesConfig, rt: &Handle) -> Result<Arc<Self>, Error> {
        let exporter = Self::start_with_source(config, rt, crate::stats::snapshot)?;
        exporter.set_running_spans(crate::trace::running_spans);
        Ok(exporter)
    }

    /// As [`ZPagesExporter::start`], with `/debug/statsz` showing the views that `stats` returns, called on
    /// every request (for tests, and for programs that aggregate elsewhere). Running spans are not shown
    /// until a source is given with [`ZPagesExporter::set_running_spans`].
    pub fn start_with_source<F>(config: &ZPagesConfig, rt: &Handle, stats: F) -> Result<Arc<Self>, Error>
    where
        F: Fn() -> StatsReport + Send + Sync + 'static,
    {
        let pages =
            Arc::new(Pages { spans: SpanStore::default(), stats: Box::new(stats), running: OnceLock::new() });
        let address = SocketAddr::new(config.listen_address, config.port);
        let handler_pages = Arc::clone(&pages);
        let server = HttpServer::start(address, PORT_CONFIG_KEY, rt, move |head| handler_pages.handle(head))?;
        Ok(Arc::new(ZPagesExporter { server, pages }))
    }

    /// The address the server listens on (with the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Gives `/debug/tracez` a source of running-span counts: for each span name, how many sampled spans
    /// are started and not yet ended. Called on every page view. Only the first source set is kept;
    /// returns whether this one was.
    pub fn set_running_spans<F>(&self, running: F) -> bool
    where
        F: Fn() -> Vec<(String, u64)> + Send + Sync + 'static,
    {
        self.pages.running.set(Box::new(running)).is_ok()
    }
}

impl Exporter for ZPagesExporter {
    fn name(&self) -> &'static str {
        "zpages"
    }

    /// Counts the spans and keeps the newest as samples; a short lock, never I/O.
    fn export_spans(&self, spans: &SpanBatch) {
        self.pages.spans.record(spans);
    }

    /// Stops the server; the port is free once this resolves. The samples live only in memory, so there is
    /// nothing to deliver first.
    fn shutdown(&self, deadline: Instant) -> ExportFuture<'_> {
        let _ = deadline;
        Box::pin(async move {
            self.server.shutdown().await;
            Ok(())
        })
    }
}

impl fmt::Debug for ZPagesExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZPagesExporter").field("local_addr", &self.local_addr()).finish_non_exhaustive()
    }
}

impl Pages {
    fn handle(&self, head: &Parts) -> HttpResponse {
        let path = head.uri.path();
        if !matches!(path, "/debug" | "/debug/" | "/debug/tracez" | "/debug/statsz") {
            return http_server::not_found(SERVED_PATHS);
        }
        if !http_server::is_read(head) {
            return http_server::method_not_allowed();
        }
        let (status, body) = match path {
            "/debug/tracez" => {
                match tracez::render(&self.spans, self.running.get().map(Box::as_ref), head.uri.query()) {
                    Ok(body) => (StatusCode::OK, body),
                    Err(problem) => (StatusCode::BAD_REQUEST, bad_request(&problem)),
                }
            }
            "/debug/statsz" => (StatusCode::OK, statsz::render(&(self.stats)())),
            _ => (StatusCode::OK, index()),
        };
        let mut response = http_server::response(status, HTML, body);
        let headers = response.headers_mut();
        // No script runs on these pages; say so, so that a missed escape still cannot run one.
        headers.insert(
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
        );
        headers
            .insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
        response
    }
}

fn index() -> String {
    html::page("Debug pages", |out| {
        out.push_str(
            "<ul><li><a href=\"/debug/tracez\">tracez</a>: recent spans by name, latency and errors</li>\n\
             <li><a href=\"/debug/statsz\">statsz</a>: the views and their current values</li></ul>\n",
        );
        Ok(())
    })
}

fn bad_request(problem: &str) -> String {
    html::page("Bad request", |out| {
        use std::fmt::Write as _;
        writeln!(
            out,
            "<p>{}</p>\n<p><a href=\"/debug/tracez\">Back to the summary</a></p>",
            html::Html(problem)
        )
    })
}
