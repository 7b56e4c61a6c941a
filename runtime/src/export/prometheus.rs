//! The Prometheus exporter: `GET /metrics` on the configured port, pulled by Prometheus.
//!
//! Every scrape takes a fresh snapshot of the views (the same [`ViewData`] the ocagent exporter sends, so
//! both read one aggregation) and renders it:
//!
//! - in the text format 0.0.4 by default, or in OpenMetrics 1.0 when the scraper's `Accept` header prefers
//!   `application/openmetrics-text` (Prometheus does) — except with `legacy_names`, below;
//! - Count and Sum views as counters, Distribution views as histograms (`_bucket` with cumulative counts
//!   and `le` up to `+Inf`, `_sum`, `_count`), LastValue views as gauges, as opencensus-go's exporter does;
//! - each family with `# HELP` (the view's description) and `# TYPE`; a view with no rows yet is not
//!   written (it has no series), as in the Go exporter.
//!
//! Names follow opencensus-go's exporter: `namespace_` + the view name with every character outside
//! `[A-Za-z0-9_]` turned into `_`, and `key_` before a leading digit (`key` before a leading `_`); tag keys
//! become label names the same way (`http.status` -> `http_status`). Counters get the `_total` suffix
//! Prometheus requires. With `legacy_names: true` the names are exactly the Go exporter's: no `_total`,
//! names cut to their first 100 bytes, and always the text format (OpenMetrics would force `_total` back
//! onto counter samples and break the dashboards `legacy_names` exists for). Where the Go exporter kept
//! non-ASCII letters, which Prometheus rejects, we write `_`. Numbers are written as Prometheus reads them,
//! integers without exponent: a bucket bound the Go exporter writes `le="1.048576e+06"` is
//! `le="1048576"` here (the same number to Prometheus and `histogram_quantile`).
//!
//! A row without a value for one of the view's tag keys gets that label with an empty value, as the Go
//! exporter writes it: every series of a family has the same label names (which strict parsers expect),
//! and Prometheus treats an empty label value as no label.
//!
//! A view that cannot be exposed without breaking the whole scrape (its name clashes with another family
//! once sanitized, two tag keys become one label name, a histogram tag key named `le`) is left out and
//! logged once; the other views are still served.
//!
//! The exporter never runs on the request path: it only reads snapshots when scraped.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use hyper::StatusCode;
use hyper::header::{ACCEPT, HeaderValue};
use hyper::http::request::Parts;
use tokio::runtime::Handle;

use super::http_server::{self, HttpResponse, HttpServer};
use super::{ExportFuture, Exporter, StatsReport};
use crate::Error;
use crate::config::PrometheusConfig;
use crate::stats::{Aggregation, AggregationData, ViewData};

/// The JSON path named in errors about the Prometheus server's address.
const PORT_CONFIG_KEY: &str = r#"extra_config."telemetry/opencensus".exporters.prometheus.port"#;

/// The path Prometheus scrapes.
const METRICS_PATH: &str = "/metrics";

/// The Go exporter cuts view names and tag keys to this many bytes; `legacy_names` does too.
const LEGACY_NAME_LIMIT: usize = 100;

const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves the views on `/metrics` for Prometheus to scrape.
///
/// Built by `init` from `exporters.prometheus`; the server stops on [`Exporter::shutdown`] or when the
/// exporter is dropped.
pub struct PrometheusExporter {
    server: HttpServer,
}

impl PrometheusExporter {
    /// Binds `listen_address:port` now and serves the views of the stats registry, each scrape reading a
    /// fresh [`snapshot`](crate::stats::snapshot).
    ///
    /// `rt` runs the server; it needs IO and time enabled. A port that is taken (or not allowed) fails here
    /// with [`Error::Listen`], naming the address and the config key. Port 0 binds a free port: see
    /// [`PrometheusExporter::local_addr`].
    pub fn start(config: &PrometheusConfig, rt: &Handle) -> Result<Arc<Self>, Error> {
        Self::start_with_source(config, rt, crate::stats::snapshot)
    }

    /// As [`PrometheusExporter::start`], serving the views that `source` returns, called on every scrape
    /// (for tests, and for programs that aggregate elsewhere).
    pub fn start_with_source<F>(config: &PrometheusConfig, rt: &Handle, source: F) -> Result<Arc<Self>, Error>
    where
        F: Fn() -> StatsReport + Send + Sync + 'static,
    {
        let scraper = Scraper {
            source: Box::new(source),
            naming: Naming::new(&config.namespace, config.legacy_names),
            reported: Mutex::new(HashSet::new()),
        };
        let address = SocketAddr::new(config.listen_address, config.port);
        let server = HttpServer::start(address, PORT_CONFIG_KEY, rt, move |head| scraper.handle(head))?;
        Ok(Arc::new(PrometheusExporter { server }))
    }

    /// The address the server listens on (with the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

impl Exporter for PrometheusExporter {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    /// Stops the server; the port is free once this resolves. Nothing is queued, so there is nothing to
    /// deliver first.
    fn shutdown(&self, deadline: Instant) -> ExportFuture<'_> {
        let _ = deadline;
        Box::pin(async move {
            self.server.shutdown().await;
            Ok(())
        })
    }
}

impl fmt::Debug for PrometheusExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusExporter").field("local_addr", &self.local_addr()).finish()
    }
}

/// What answers the scrapes: the snapshot source and the naming rules.
struct Scraper {
    source: Box<dyn Fn() -> StatsReport + Send + Sync>,
    naming: Naming,
    /// Problems already logged (view name and problem), so each is logged once, not on every scrape.
    reported: Mutex<HashSet<String>>,
}

impl Scraper {
    fn handle(&self, head: &Parts) -> HttpResponse {
        if head.uri.path() != METRICS_PATH {
            return http_server::not_found(METRICS_PATH);
        }
        if !http_server::is_read(head) {
            return http_server::method_not_allowed();
        }
        let format = if self.naming.legacy {
            Format::Text
        } else {
            Format::negotiate(head.headers.get_all(ACCEPT).iter())
        };
        let report = (self.source)();
        let body =
            render(&report, &self.naming, format, &mut |view, problem| self.report_once(view, problem));
        http_server::response(StatusCode::OK, format.content_type(), body)
    }

    fn report_once(&self, view: &str, problem: &str) {
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        if reported.insert(format!("{view}\n{problem}")) {
            tracing::warn!(view, "oclayer: Prometheus exporter: view {view:?} {problem}");
        }
    }
}

/// The exposition format a scrape gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header ranks `application/openmetrics-text` (version 1.0.0 or
    /// unversioned) at least as high as the text format; the text format otherwise, including when
    /// nothing we serve is acceptable (a scraper is better served by the default format than by a 406).
    fn negotiate<'a>(accept: impl Iterator<Item = &'a HeaderValue>) -> Format {
        let mut openmetrics_q = 0.0f32;
        let mut text_q = 0.0f32;
        for value in accept.filter_map(|value| value.to_str().ok()) {
            for range in value.split(',') {
                let mut parts = range.split(';').map(str::trim);
                let media_type = parts.next().unwrap_or_default().to_ascii_lowercase();
                let mut q = 1.0f32;
                let mut version = None;
                for param in parts {
                    let (name, value) = param.split_once('=').unwrap_or((param, ""));
                    let value = value.trim().trim_matches('"');
                    match name.trim().to_ascii_lowercase().as_str() {
                        "q" => {
                            q = value.parse().ok().filter(|q: &f32| (0.0..=1.0).contains(q)).unwrap_or(0.0)
                        }
                        "version" => version = Some(value.to_owned()),
                        _ => {}
                    }
                }
                match media_type.as_str() {
                    "application/openmetrics-text" if version.as_deref().is_none_or(|v| v == "1.0.0") => {
                        openmetrics_q = openmetrics_q.max(q)
                    }
                    "text/plain" | "text/*" | "*/*" => text_q = text_q.max(q),
                    _ => {}
                }
            }
        }
        if openmetrics_q > 0.0 && openmetrics_q >= text_q { Format::OpenMetrics } else { Format::Text }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// How view names and tag keys become Prometheus names.
#[derive(Clone, Debug)]
struct Naming {
    /// `namespace_`, or empty.
    prefix: String,
    /// Exactly the Go exporter's names.
    legacy: bool,
}

impl Naming {
    fn new(namespace: &str, legacy: bool) -> Naming {
        // The Go exporter pastes the namespace in as it is, which yields invalid names for a namespace like
        // `my-gateway`; valid namespaces come out the same.
        let prefix = if namespace.is_empty() {
            String::new()
        } else {
            let mut prefix: String =
                namespace.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            if prefix.starts_with(|c: char| c.is_ascii_digit()) {
                prefix.insert_str(0, "key_");
            }
            prefix.push('_');
            prefix
        };
        Naming { prefix, legacy }
    }

    /// The family name before any type suffix: `namespace_` + the sanitized view name.
    fn base_name(&self, view_name: &str) -> String {
        let mut name = self.prefix.clone();
        name.push_str(&sanitize(view_name, self.legacy));
        name
    }

    fn label_name(&self, tag_key: &str) -> String {
        sanitize(tag_key, self.legacy)
    }
}

/// opencensus-go's `sanitize`: every character outside `[A-Za-z0-9_]` becomes `_`; a leading digit gets
/// `key_` in front and a leading `_` gets `key` (so names never start with the reserved `__`). With
/// `legacy`, the input is first cut to 100 bytes as Go does (on a character boundary).
fn sanitize(name: &str, legacy: bool) -> String {
    let name = if legacy && name.len() > LEGACY_NAME_LIMIT {
        let mut end = LEGACY_NAME_LIMIT;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        &name[..end]
    } else {
        name
    };
    let mut out = String::with_capacity(name.len() + 4);
    out.extend(name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }));
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') {
        out.insert_str(0, "key");
    }
    out
}

/// The Prometheus type of a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn of(aggregation: &Aggregation) -> Kind {
        match aggregation {
            Aggregation::Count | Aggregation::Sum => Kind::Counter,
            Aggregation::Distribution { .. } => Kind::Histogram,
            Aggregation::LastValue => Kind::Gauge,
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One view's family, with every name it will write checked.
struct Family<'a> {
    data: &'a ViewData,
    kind: Kind,
    /// The name in `# HELP` / `# TYPE` lines.
    name: String,
    /// The name of counter and gauge samples; the prefix of `_bucket`, `_sum`, `_count` for histograms.
    sample: String,
    /// One label name per view tag key.
    labels: Vec<String>,
}

impl<'a> Family<'a> {
    fn new(data: &'a ViewData, naming: &Naming, format: Format) -> Result<Family<'a>, String> {
        let view = &data.view;
        let kind = Kind::of(&view.aggregation);
        let base = naming.base_name(&view.name);
        if base.is_empty() {
            return Err("is left out: it has an empty name and no namespace is set".to_owned());
        }
        let (name, sample) = match (kind, format) {
            (Kind::Counter, Format::Text) if naming.legacy || base.ends_with("_total") => {
                (base.clone(), base)
            }
            (Kind::Counter, Format::Text) => {
                let name = format!("{base}_total");
                (name.clone(), name)
            }
            // OpenMetrics names the family without `_total` and its samples with it.
            (Kind::Counter, Format::OpenMetrics) => {
                let family = base.strip_suffix("_total").unwrap_or(&base).to_owned();
                let sample = format!("{family}_total");
                (family, sample)
            }
            (Kind::Gauge | Kind::Histogram, _) => (base.clone(), base),
        };

        let mut labels = Vec::with_capacity(view.tag_keys.len());
        for key in &view.tag_keys {
            let label = naming.label_name(key);
            if label.is_empty() {
                return Err("is left out: it has an empty tag key".to_owned());
            }
            if kind == Kind::Histogram && label == "le" {
                return Err("is left out: its tag key `le` is reserved for histogram buckets".to_owned());
            }
            if labels.contains(&label) {
                return Err(format!("is left out: two of its tag keys both become the label name `{label}`"));
            }
            labels.push(label);
        }
        Ok(Family { data, kind, name, sample, labels })
    }

    /// Every name this family writes, to catch clashes between families.
    fn names(&self) -> Vec<String> {
        match self.kind {
            Kind::Counter | Kind::Gauge => vec![self.name.clone(), self.sample.clone()],
            Kind::Histogram => ["", "_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{}{suffix}", self.sample))
                .collect(),
        }
    }

    fn help(&self) -> &str {
        let view = &self.data.view;
        [&view.description, &view.measure.description]
            .into_iter()
            .find(|text| !text.is_empty())
            .unwrap_or(&view.name)
    }

    /// The OpenMetrics unit of the family, when its name ends with it (OpenMetrics requires that).
    fn unit(&self) -> Option<&'static str> {
        let unit = match self.data.view.unit() {
            "ns" => "nanoseconds",
            "us" => "microseconds",
            "ms" => "milliseconds",
            "s" => "seconds",
            "By" => "bytes",
            _ => return None,
        };
        self.name.strip_suffix(unit).is_some_and(|rest| rest.ends_with('_')).then_some(unit)
    }
}

/// Renders a report in `format`; views that cannot be exposed go to `left_out(view name, why)`.
fn render(
    report: &[ViewData],
    naming: &Naming,
    format: Format,
    left_out: &mut dyn FnMut(&str, &str),
) -> String {
    let mut families = Vec::with_capacity(report.len());
    for data in report {
        match Family::new(data, naming, format) {
            Ok(family) => families.push(family),
            Err(problem) => left_out(&data.view.name, &problem),
        }
    }
    // Sorted, so that scrapes diff cleanly and a clash always drops the same view.
    families.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.data.view.name.cmp(&b.data.view.name)));

    let mut taken = HashSet::new();
    let mut out = String::with_capacity(256 * families.len() + 8);
    for family in &families {
        let names = family.names();
        if let Some(clash) = names.iter().find(|name| taken.contains(*name)) {
            let problem = format!("is left out: its name `{clash}` is already used by another view");
            left_out(&family.data.view.name, &problem);
            continue;
        }
        taken.extend(names);
        // A view without rows has no series to show; the Go exporter writes nothing for it either, and
        // metadata-only families are grouped wrongly by some OpenMetrics parsers. Its names stay taken
        // above, so which view wins a clash never depends on which has data yet.
        if family.data.rows.is_empty() {
            continue;
        }
        // Writing into a String cannot fail.
        let _ = write_family(&mut out, family, format, left_out);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn write_family(
    out: &mut String,
    family: &Family<'_>,
    format: Format,
    left_out: &mut dyn FnMut(&str, &str),
) -> fmt::Result {
    writeln!(out, "# HELP {} {}", family.name, Escaped::help(family.help(), format))?;
    writeln!(out, "# TYPE {} {}", family.name, family.kind.type_name())?;
    if format == Format::OpenMetrics
        && let Some(unit) = family.unit()
    {
        writeln!(out, "# UNIT {} {unit}", family.name)?;
    }

    // Rows rendered as `k="v",...` (without braces), sorted so scrapes are stable; rows that render the
    // same (a missing and an empty tag value) would be duplicate series, which Prometheus rejects.
    let mut rows: Vec<(String, &AggregationData)> = family
        .data
        .rows
        .iter()
        .map(|row| {
            let mut labels = String::new();
            for (i, name) in family.labels.iter().enumerate() {
                let value = row.tags.get(i).and_then(Option::as_deref).unwrap_or_default();
                if i > 0 {
                    labels.push(',');
                }
                let _ = write!(labels, "{name}=\"{}\"", Escaped::label_value(value));
            }
            (labels, &row.data)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let rows_before = rows.len();
    rows.dedup_by(|a, b| a.0 == b.0);
    if rows.len() != rows_before {
        left_out(
            &family.data.view.name,
            "keeps only the first of rows that differ only by a missing versus an empty tag value",
        );
    }

    for (labels, data) in rows {
        match (family.kind, data) {
            (Kind::Counter, AggregationData::Count(v) | AggregationData::SumInt64(v))
            | (Kind::Gauge, AggregationData::LastValueInt64(v)) => {
                writeln!(out, "{}{} {v}", family.sample, Braced(&labels))?;
            }
            (Kind::Counter, AggregationData::SumFloat64(v))
            | (Kind::Gauge, AggregationData::LastValueFloat64(v)) => {
                writeln!(out, "{}{} {}", family.sample, Braced(&labels), Number(*v))?;
            }
            (Kind::Histogram, AggregationData::Distribution(distribution)) => {
                let bounds = match &family.data.view.aggregation {
                    Aggregation::Distribution { bounds } => &bounds[..],
                    _ => &[],
                };
                write_histogram(out, family, &labels, bounds, distribution, format)?;
            }
            _ => left_out(
                &family.data.view.name,
                "has rows whose aggregate does not match the view's aggregation; those rows are left out",
            ),
        }
    }
    Ok(())
}

fn write_histogram(
    out: &mut String,
    family: &Family<'_>,
    labels: &str,
    bounds: &[f64],
    distribution: &crate::stats::DistributionData,
    format: Format,
) -> fmt::Result {
    let name = &family.sample;
    let separator = if labels.is_empty() { "" } else { "," };
    let mut cumulative: i64 = 0;
    let mut last_bound = f64::NEG_INFINITY;
    for (i, &bound) in bounds.iter().enumerate() {
        cumulative =
            cumulative.saturating_add(distribution.bucket_counts.get(i).copied().unwrap_or(0).max(0));
        // Bounds are strictly increasing and finite by contract; one that is not would write a `le` twice
        // or out of order, so its count simply joins the next bucket.
        if !bound.is_finite() || bound <= last_bound {
            continue;
        }
        last_bound = bound;
        let le = LeValue(bound, format);
        writeln!(out, "{name}_bucket{{{labels}{separator}le=\"{le}\"}} {cumulative}")?;
    }
    let in_buckets = distribution.bucket_counts.iter().map(|c| (*c).max(0)).fold(0i64, i64::saturating_add);
    // `_count` and the `+Inf` bucket are one number, never below a finite bucket.
    let count = distribution.count.max(in_buckets);
    writeln!(out, "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {count}")?;
    writeln!(out, "{name}_sum{} {}", Braced(labels), Number(distribution.sum))?;
    writeln!(out, "{name}_count{} {count}", Braced(labels))
}

/// `{labels}`, or nothing when there are none.
struct Braced<'a>(&'a str);

impl fmt::Display for Braced<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() { Ok(()) } else { write!(f, "{{{}}}", self.0) }
    }
}

/// A sample value as Prometheus parses it: `NaN`, `+Inf`, `-Inf`, integers without exponent, other
/// numbers in the shortest form that reads back to the same float.
struct Number(f64);

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v.is_infinite() {
            f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
        } else if v == 0.0 || (1e-4..1e15).contains(&v.abs()) {
            // Rust's float Display is the shortest round-trip form and never uses an exponent.
            write!(f, "{v}")
        } else {
            write!(f, "{v:e}")
        }
    }
}

/// A bucket bound: as [`Number`] in the text format; in OpenMetrics, the canonical form with `.0` after
/// integers (`le="1.0"`), as its specification asks of `le` values.
struct LeValue(f64, Format);

impl fmt::Display for LeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let LeValue(v, format) = *self;
        if format == Format::OpenMetrics && v.fract() == 0.0 && v.abs() < 1e15 {
            write!(f, "{v}.0")
        } else {
            write!(f, "{}", Number(v))
        }
    }
}

/// Escapes text for the exposition: `\` and newline always; `"` in label values, and in OpenMetrics help.
struct Escaped<'a> {
    text: &'a str,
    quote: bool,
}

impl<'a> Escaped<'a> {
    fn help(text: &'a str, format: Format) -> Self {
        Escaped { text, quote: format == Format::OpenMetrics }
    }

    fn label_value(text: &'a str) -> Self {
        Escaped { text, quote: true }
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.text;
        while let Some(at) = rest.find(|c| c == '\\' || c == '\n' || (self.quote && c == '"')) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'\\' => r"\\",
                b'\n' => r"\n",
                _ => "\\\"",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::stats::{DistributionData, MeasureDescriptor, MeasureKind, Row, ViewDescriptor};

    fn view(name: &str, aggregation: Aggregation, tag_keys: &[&str], rows: Vec<Row>) -> ViewData {
        ViewData {
            view: Arc::new(ViewDescriptor {
                name: name.to_owned().into(),
                description: format!("about {name}").into(),
                measure: MeasureDescriptor {
                    name: "m".into(),
                    description: "".into(),
                    unit: "ms".into(),
                    kind: MeasureKind::Float64,
                },
                tag_keys: tag_keys.iter().map(|k| Cow::Owned(k.to_string())).collect(),
                aggregation,
            }),
            start: SystemTime::UNIX_EPOCH,
            end: SystemTime::UNIX_EPOCH,
            rows,
        }
    }

    fn row(tags: &[Option<&str>], data: AggregationData) -> Row {
        Row { tags: tags.iter().map(|t| t.map(Arc::from)).collect(), data }
    }

    fn render_all(report: &[ViewData], naming: &Naming, format: Format) -> (String, Vec<String>) {
        let mut problems = Vec::new();
        let body =
            render(report, naming, format, &mut |view, problem| problems.push(format!("{view}: {problem}")));
        (body, problems)
    }

    #[test]
    fn sanitize_follows_the_go_exporter() {
        assert_eq!(sanitize("opencensus.io/http/server/latency", false), "opencensus_io_http_server_latency");
        assert_eq!(sanitize("test/key-1", false), "test_key_1");
        assert_eq!(sanitize("0123456789", false), "key_0123456789");
        assert_eq!(sanitize("_0123456789", false), "key_0123456789");
        assert_eq!(sanitize("/0123456789", false), "key_0123456789");
        assert_eq!(sanitize("http.status", false), "http_status");
        assert_eq!(sanitize("__name__", false), "key__name__");
        assert_eq!(sanitize("ünï", false), "key_n_");
        assert_eq!(sanitize("", false), "");
        let long = "a".repeat(101);
        assert_eq!(sanitize(&long, true), "a".repeat(100));
        assert_eq!(sanitize(&long, false), long);
        // Cutting never splits a character.
        let multibyte = format!("{}é", "a".repeat(99));
        assert_eq!(sanitize(&multibyte, true), "a".repeat(99));
    }

    #[test]
    fn namespace_prefixes_names() {
        assert_eq!(
            Naming::new("krakend", false).base_name("opencensus.io/http/server/latency"),
            "krakend_opencensus_io_http_server_latency"
        );
        assert_eq!(Naming::new("", false).base_name("a.b"), "a_b");
        assert_eq!(Naming::new("my-gw", false).base_name("x"), "my_gw_x");
        assert_eq!(Naming::new("1gw", false).base_name("x"), "key_1gw_x");
    }

    #[test]
    fn counters_get_total_unless_legacy() {
        let report = [view("requests", Aggregation::Count, &[], vec![row(&[], AggregationData::Count(3))])];
        let (text, _) = render_all(&report, &Naming::new("ns", false), Format::Text);
        assert_eq!(
            text,
            "# HELP ns_requests_total about requests\n# TYPE ns_requests_total counter\nns_requests_total 3\n"
        );
        let (legacy, _) = render_all(&report, &Naming::new("ns", true), Format::Text);
        assert_eq!(legacy, "# HELP ns_requests about requests\n# TYPE ns_requests counter\nns_requests 3\n");
        let (om, _) = render_all(&report, &Naming::new("ns", false), Format::OpenMetrics);
        assert_eq!(
            om,
            "# HELP ns_requests about requests\n# TYPE ns_requests counter\nns_requests_total 3\n# EOF\n"
        );
        let already =
            [view("hits_total", Aggregation::Count, &[], vec![row(&[], AggregationData::Count(1))])];
        let (text, _) = render_all(&already, &Naming::new("", false), Format::Text);
        assert!(text.contains("\nhits_total 1\n"), "{text}");
    }

    #[test]
    fn histograms_are_cumulative_and_end_at_count() {
        let bounds: Arc<[f64]> = Arc::from(vec![1.0, 2.5, 1_048_576.0]);
        let data = DistributionData {
            count: 6,
            sum: 12.5,
            bucket_counts: vec![1, 2, 0, 3],
            ..DistributionData::default()
        };
        let report = [view(
            "lat",
            Aggregation::Distribution { bounds },
            &["route"],
            vec![row(&[Some("/a")], AggregationData::Distribution(data))],
        )];
        let (text, problems) = render_all(&report, &Naming::new("", false), Format::Text);
        assert!(problems.is_empty(), "{problems:?}");
        let expected = "# HELP lat about lat\n# TYPE lat histogram\n\
            lat_bucket{route=\"/a\",le=\"1\"} 1\n\
            lat_bucket{route=\"/a\",le=\"2.5\"} 3\n\
            lat_bucket{route=\"/a\",le=\"1048576\"} 3\n\
            lat_bucket{route=\"/a\",le=\"+Inf\"} 6\n\
            lat_sum{route=\"/a\"} 12.5\n\
            lat_count{route=\"/a\"} 6\n";
        assert_eq!(text, expected);
        let (om, _) = render_all(&report, &Naming::new("", false), Format::OpenMetrics);
        assert!(om.contains("lat_bucket{route=\"/a\",le=\"1.0\"} 1\n"), "{om}");
        assert!(om.contains("le=\"1048576.0\"} 3\n"), "{om}");
        assert!(om.contains("le=\"+Inf\"} 6\n"), "{om}");
    }

    #[test]
    fn numbers_are_written_as_prometheus_reads_them() {
        let cases = [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.0, "0"),
            (3.0, "3"),
            (-2.0, "-2"),
            (0.25, "0.25"),
            (123456789012.0, "123456789012"),
            (1e20, "1e20"),
            (1.5e-7, "1.5e-7"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for (value, expected) in cases {
            let written = Number(value).to_string();
            assert_eq!(written, expected);
            if value.is_finite() {
                assert_eq!(written.parse::<f64>(), Ok(value), "{written} must read back exactly");
            }
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(Escaped::label_value("a\\b\"c\nd").to_string(), r#"a\\b\"c\nd"#);
        assert_eq!(Escaped::help("say \"hi\"\\\n", Format::Text).to_string(), "say \"hi\"\\\\\\n");
        assert_eq!(Escaped::help("say \"hi\"", Format::OpenMetrics).to_string(), "say \\\"hi\\\"");
        assert_eq!(Escaped::label_value("ünïcødé ✓").to_string(), "ünïcødé ✓");
    }

    #[test]
    fn absent_tags_are_empty_labels_and_duplicates_dropped() {
        let report = [view(
            "c",
            Aggregation::Count,
            &["a", "b"],
            vec![
                row(&[None, Some("x")], AggregationData::Count(1)),
                row(&[Some(""), Some("x")], AggregationData::Count(2)),
                row(&[None, None], AggregationData::Count(4)),
                // Fewer tag values than keys still yields every label.
                row(&[Some("y")], AggregationData::Count(8)),
            ],
        )];
        let (text, problems) = render_all(&report, &Naming::new("", false), Format::Text);
        assert_eq!(
            text,
            "# HELP c_total about c\n# TYPE c_total counter\nc_total{a=\"\",b=\"\"} 4\n\
             c_total{a=\"\",b=\"x\"} 1\nc_total{a=\"y\",b=\"\"} 8\n"
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn views_that_would_break_the_scrape_are_left_out() {
        let count = |name: &str, keys: &[&str]| {
            let tags = vec![Some("v"); keys.len()];
            view(name, Aggregation::Count, keys, vec![row(&tags, AggregationData::Count(1))])
        };
        let report = [
            count("a.b", &[]),
            count("a_b", &[]),
            count("twice", &["http.status", "http_status"]),
            view("h", Aggregation::Distribution { bounds: Arc::from(vec![1.0]) }, &["le"], vec![]),
            count("ok", &["le"]),
        ];
        let (text, problems) = render_all(&report, &Naming::new("", false), Format::Text);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems.iter().any(|p| p.starts_with("a_b: is left out: its name `a_b_total`")),
            "{problems:?}"
        );
        assert!(problems.iter().any(|p| p.starts_with("twice: ")), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("h: is left out: its tag key `le`")), "{problems:?}");
        assert!(text.contains("# TYPE a_b_total counter\n") && text.contains("# TYPE ok_total counter\n"));
    }

    #[test]
    fn views_without_rows_are_not_written_but_keep_their_names() {
        let report = [
            view("a.b", Aggregation::Count, &[], vec![]),
            view("a_b", Aggregation::Count, &[], vec![row(&[], AggregationData::Count(1))]),
        ];
        let (text, problems) = render_all(&report, &Naming::new("", false), Format::Text);
        assert_eq!(text, "");
        assert_eq!(problems.len(), 1, "{problems:?}");
        let (om, _) = render_all(&report[..1], &Naming::new("", false), Format::OpenMetrics);
        assert_eq!(om, "# EOF\n");
    }

    #[test]
    fn histogram_and_gauge_suffix_clash() {
        let report = [
            view("x", Aggregation::Distribution { bounds: Arc::from(vec![1.0]) }, &[], vec![]),
            view("x_count", Aggregation::LastValue, &[], vec![]),
        ];
        let (_, problems) = render_all(&report, &Naming::new("", false), Format::Text);
        assert_eq!(
            problems,
            vec!["x_count: is left out: its name `x_count` is already used by another view".to_owned()]
        );
    }

    #[test]
    fn unit_only_when_the_name_ends_with_it() {
        let value = || vec![row(&[], AggregationData::LastValueFloat64(1.5))];
        let mut with_unit = view("req_milliseconds", Aggregation::LastValue, &[], value());
        let (om, _) =
            render_all(std::slice::from_ref(&with_unit), &Naming::new("", false), Format::OpenMetrics);
        assert!(om.contains("# UNIT req_milliseconds milliseconds\n"), "{om}");
        with_unit = view("latency", Aggregation::LastValue, &[], value());
        let (om, _) = render_all(&[with_unit], &Naming::new("", false), Format::OpenMetrics);
        assert!(!om.contains("# UNIT"), "{om}");
    }

    #[test]
    fn negotiation() {
        let negotiate = |accept: &str| Format::negotiate([HeaderValue::from_str(accept).unwrap()].iter());
        let prometheus2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
            version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let prometheus3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
            application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,\
            text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
        assert_eq!(negotiate(prometheus2), Format::OpenMetrics);
        assert_eq!(negotiate(prometheus3), Format::OpenMetrics);
        assert_eq!(negotiate("text/plain"), Format::Text);
        assert_eq!(negotiate("*/*"), Format::Text);
        assert_eq!(negotiate("application/json"), Format::Text);
        assert_eq!(negotiate("application/openmetrics-text; version=0.0.1"), Format::Text);
        assert_eq!(negotiate("text/plain;q=0.9, application/openmetrics-text;q=0.5"), Format::Text);
        assert_eq!(negotiate("application/openmetrics-text;q=0"), Format::Text);
        assert_eq!(negotiate("application/openmetrics-text;q=bogus"), Format::Text);
        assert_eq!(Format::negotiate(std::iter::empty()), Format::Text);
    }
}
