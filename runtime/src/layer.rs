//! The three layers of a gateway (router, pipe, backend): what each records. Span names, attribute keys,
//! measures and views are named here and only here.
//!
//! The views keep OpenCensus' names (opencensus-go's `ochttp` for router and backend), so existing
//! dashboards and agents understand them; ours add tags so each can be split by route, backend and status.
//! Tag values that are paths are always *patterns* (`/users/{id}`), never the raw path: a raw path would make
//! a row per user, and the number of rows must stay bounded.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crate::Error;
use crate::config::EnabledLayers;
use crate::stats::{self, Aggregation, Float64Measure, Int64Measure, TagKey, Value, View};
use crate::trace::SpanKind;

/// One of the three places a gateway request passes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// End user <-> gateway: one server span per request.
    Router,
    /// The proxy pipeline of one endpoint: a child of the router span.
    Pipe,
    /// Gateway <-> one upstream service: a client span per upstream call.
    Backend,
}

impl Layer {
    /// All three, in request order.
    pub const ALL: [Layer; 3] = [Layer::Router, Layer::Pipe, Layer::Backend];

    /// The name used in config and in the macro (`router`, `pipe`, `backend`).
    pub fn name(self) -> &'static str {
        match self {
            Layer::Router => "router",
            Layer::Pipe => "pipe",
            Layer::Backend => "backend",
        }
    }

    /// The kind of the layer's spans: the router serves the end user, the backend is a client of the
    /// upstream, the pipe is neither.
    pub fn span_kind(self) -> SpanKind {
        match self {
            Layer::Router => SpanKind::Server,
            Layer::Pipe => SpanKind::Unspecified,
            Layer::Backend => SpanKind::Client,
        }
    }

    /// The layer's bit in the enabled set (see [`enabled_in`]).
    pub(crate) const fn bit(self) -> u8 {
        match self {
            Layer::Router => 1,
            Layer::Pipe => 2,
            Layer::Backend => 4,
        }
    }

    /// Whether this layer records anything. One relaxed atomic load: this is checked on every annotated
    /// call, and a stale answer for a moment after `init` costs nothing worse than one unrecorded call.
    #[inline]
    pub fn is_enabled(self) -> bool {
        enabled_in(self.bit())
    }
}

/// [`Layer::is_enabled`] for a layer's [`bit`](Layer::bit) worked out beforehand: an annotated fn's site
/// keeps it, so that the test is a load and a `test`, without mapping the layer to its bit on every call.
#[inline]
pub(crate) fn enabled_in(bit: u8) -> bool {
    ENABLED.load(Ordering::Relaxed) & bit != 0
}

/// No layer records until `init` says which do.
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// Switches layers on and off; `init` calls it with the config's set, `shutdown` with none.
pub(crate) fn set_enabled(layers: EnabledLayers) {
    let mut bits = 0;
    for (on, layer) in
        [(layers.router, Layer::Router), (layers.pipe, Layer::Pipe), (layers.backend, Layer::Backend)]
    {
        if on {
            bits |= layer.bit();
        }
    }
    ENABLED.store(bits, Ordering::Relaxed);
}

// ---- stats: tag keys ---------------------------------------------------------------------------------------

/// Router: the route pattern that matched (`/users/{id}`), as ochttp's `KeyServerRoute`.
pub const KEY_SERVER_ROUTE: TagKey = TagKey::from_static("http_server_route");
/// Router: the request method (`GET`), as ochttp's `Method`.
pub const KEY_SERVER_METHOD: TagKey = TagKey::from_static("http.method");
/// Router: the response status code (`200`), as ochttp's `StatusCode`.
pub const KEY_SERVER_STATUS: TagKey = TagKey::from_static("http.status");
/// Backend: the upstream host (`users-api:8080`).
pub const KEY_CLIENT_HOST: TagKey = TagKey::from_static("http_client_host");
/// Backend: the upstream URL pattern or path pattern (`/users/{id}`).
pub const KEY_CLIENT_PATH: TagKey = TagKey::from_static("http_client_path");
/// Backend: the request method.
pub const KEY_CLIENT_METHOD: TagKey = TagKey::from_static("http_client_method");
/// Backend: the response status code; `500` when no response came (a transport error), as ochttp records.
pub const KEY_CLIENT_STATUS: TagKey = TagKey::from_static("http_client_status");
/// Pipe: the endpoint pattern.
pub const KEY_ENDPOINT: TagKey = TagKey::from_static("endpoint");
/// Pipe: how the run ended: `ok`, `error` or `canceled` (see [`PipeOutcome`]).
pub const KEY_OUTCOME: TagKey = TagKey::from_static("outcome");
/// Health: the exporter (`ocagent`, `prometheus`, ...).
pub const KEY_EXPORTER: TagKey = TagKey::from_static("exporter");

const ROUTER_KEYS: [TagKey; 3] = [KEY_SERVER_ROUTE, KEY_SERVER_METHOD, KEY_SERVER_STATUS];
const BACKEND_KEYS: [TagKey; 4] = [KEY_CLIENT_HOST, KEY_CLIENT_PATH, KEY_CLIENT_METHOD, KEY_CLIENT_STATUS];
const PIPE_KEYS: [TagKey; 2] = [KEY_ENDPOINT, KEY_OUTCOME];

// The keys the record fns pass, as statics: a `TagKey` holds a `Cow`, which has a destructor, so `&KEY` of a
// `const` is not promoted and each record built a temporary key and tested it for dropping.
static ROUTER_TAG_KEYS: [TagKey; 3] = ROUTER_KEYS;
static BACKEND_TAG_KEYS: [TagKey; 4] = BACKEND_KEYS;
static PIPE_TAG_KEYS: [TagKey; 2] = PIPE_KEYS;

// Each layer's record has fixed measures and keys: a shape, whose shortcut slot is the layer's own.
static ROUTER_SHAPE: stats::Shape<4, 3> = stats::Shape::new(
    0,
    [
        &SERVER_REQUEST_COUNT.core,
        &SERVER_REQUEST_BYTES.core,
        &SERVER_RESPONSE_BYTES.core,
        &SERVER_LATENCY.core,
    ],
    &ROUTER_TAG_KEYS,
);
static PIPE_SHAPE: stats::Shape<1, 2> = stats::Shape::new(1, [&PIPE_LATENCY.core], &PIPE_TAG_KEYS);
static BACKEND_SHAPE: stats::Shape<3, 4> = stats::Shape::new(
    2,
    [&CLIENT_SENT_BYTES.core, &CLIENT_RECEIVED_BYTES.core, &CLIENT_ROUNDTRIP_LATENCY.core],
    &BACKEND_TAG_KEYS,
);
const _: () = assert!(stats::SHAPE_SLOTS >= 3, "one shortcut slot per layer");

// ---- stats: bucket bounds ----------------------------------------------------------------------------------

/// Latency buckets in ms, as ochttp's `DefaultLatencyDistribution`.
pub const LATENCY_BOUNDS_MS: [f64; 34] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0, 65.0, 80.0, 100.0,
    130.0, 160.0, 200.0, 250.0, 300.0, 400.0, 500.0, 650.0, 800.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0,
    50000.0, 100000.0,
];

/// Size buckets in bytes, as ochttp's `DefaultSizeDistribution`.
pub const SIZE_BOUNDS_BYTES: [f64; 13] = [
    1024.0,
    2048.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

// ---- stats: measures ---------------------------------------------------------------------------------------

/// Router: one per request.
pub static SERVER_REQUEST_COUNT: Int64Measure =
    Int64Measure::new("opencensus.io/http/server/request_count", "Number of HTTP requests started", "1");
/// Router: request body size.
pub static SERVER_REQUEST_BYTES: Int64Measure = Int64Measure::new(
    "opencensus.io/http/server/request_bytes",
    "HTTP request body size if set as ContentLength (uncompressed)",
    "By",
);
/// Router: response body size.
pub static SERVER_RESPONSE_BYTES: Int64Measure = Int64Measure::new(
    "opencensus.io/http/server/response_bytes",
    "HTTP response body size (uncompressed)",
    "By",
);
/// Router: time to answer.
pub static SERVER_LATENCY: Float64Measure =
    Float64Measure::new("opencensus.io/http/server/latency", "End-to-end latency", "ms");

/// Backend: request body bytes sent.
pub static CLIENT_SENT_BYTES: Int64Measure = Int64Measure::new(
    "opencensus.io/http/client/sent_bytes",
    "Total bytes sent in request body (not including headers)",
    "By",
);
/// Backend: response body bytes received.
pub static CLIENT_RECEIVED_BYTES: Int64Measure = Int64Measure::new(
    "opencensus.io/http/client/received_bytes",
    "Total bytes received in response bodies (not including headers but including error responses with bodies)",
    "By",
);
/// Backend: time from sending the request to the end of the response (or the error).
pub static CLIENT_ROUNDTRIP_LATENCY: Float64Measure = Float64Measure::new(
    "opencensus.io/http/client/roundtrip_latency",
    "Time between first byte of request headers sent to last byte of response received, or terminal error",
    "ms",
);

/// Pipe: time of one run of an endpoint's proxy pipeline.
pub static PIPE_LATENCY: Float64Measure = Float64Measure::new(
    "oclayer.io/pipe/latency",
    "Time from the pipe receiving the request to its response or error",
    "ms",
);

/// Health: spans dropped (a full queue).
pub static DROPPED_SPANS: Int64Measure =
    Int64Measure::new("oclayer.io/export/dropped_spans", "Spans dropped before export", "1");
/// Health: stats reports dropped.
pub static DROPPED_REPORTS: Int64Measure =
    Int64Measure::new("oclayer.io/export/dropped_reports", "Stats reports dropped before export", "1");
/// Health: failed export attempts.
pub static EXPORT_ERRORS: Int64Measure =
    Int64Measure::new("oclayer.io/export/errors", "Failed export attempts", "1");

// ---- stats: views ------------------------------------------------------------------------------------------

/// The views a layer records into, as `register_layer_views` registers them.
pub fn views(layer: Layer) -> Vec<View> {
    let latency = || Aggregation::distribution(&LATENCY_BOUNDS_MS);
    let size = || Aggregation::distribution(&SIZE_BOUNDS_BYTES);
    match layer {
        Layer::Router => vec![
            View::new(
                "opencensus.io/http/server/request_count",
                "Count of HTTP requests started",
                &SERVER_REQUEST_COUNT,
                &ROUTER_KEYS,
                Aggregation::Count,
            ),
            View::new(
                "opencensus.io/http/server/request_bytes",
                "Size distribution of HTTP request body",
                &SERVER_REQUEST_BYTES,
                &ROUTER_KEYS,
                size(),
            ),
            View::new(
                "opencensus.io/http/server/response_bytes",
                "Size distribution of HTTP response body",
                &SERVER_RESPONSE_BYTES,
                &ROUTER_KEYS,
                size(),
            ),
            View::new(
                "opencensus.io/http/server/latency",
                "Latency distribution of HTTP requests",
                &SERVER_LATENCY,
                &ROUTER_KEYS,
                latency(),
            ),
            View::new(
                "opencensus.io/http/server/request_count_by_method",
                "Server request count by HTTP method",
                &SERVER_REQUEST_COUNT,
                &[KEY_SERVER_METHOD],
                Aggregation::Count,
            ),
            View::new(
                "opencensus.io/http/server/response_count_by_status_code",
                "Server response count by status code",
                &SERVER_LATENCY,
                &[KEY_SERVER_STATUS],
                Aggregation::Count,
            ),
        ],
        Layer::Pipe => vec![
            View::new(
                "oclayer.io/pipe/request_count",
                "Count of pipe runs, by endpoint and outcome",
                &PIPE_LATENCY,
                &PIPE_KEYS,
                Aggregation::Count,
            ),
            View::new(
                "oclayer.io/pipe/latency",
                "Latency distribution of pipe runs, by endpoint and outcome",
                &PIPE_LATENCY,
                &PIPE_KEYS,
                latency(),
            ),
        ],
        Layer::Backend => vec![
            View::new(
                "opencensus.io/http/client/sent_bytes",
                "Total bytes sent in request body (not including headers), by HTTP method and response status",
                &CLIENT_SENT_BYTES,
                &BACKEND_KEYS,
                size(),
            ),
            View::new(
                "opencensus.io/http/client/received_bytes",
                "Total bytes received in response bodies (not including headers but including error responses \
                 with bodies), by HTTP method and response status",
                &CLIENT_RECEIVED_BYTES,
                &BACKEND_KEYS,
                size(),
            ),
            View::new(
                "opencensus.io/http/client/roundtrip_latency",
                "End-to-end latency, by HTTP method and response status",
                &CLIENT_ROUNDTRIP_LATENCY,
                &BACKEND_KEYS,
                latency(),
            ),
            View::new(
                "opencensus.io/http/client/completed_count",
                "Count of completed requests, by HTTP method and response status",
                &CLIENT_ROUNDTRIP_LATENCY,
                &BACKEND_KEYS,
                Aggregation::Count,
            ),
        ],
    }
}

/// The runtime's own health views, registered whatever the layers: what exporters and the span pipeline
/// lost (see [`stats::health`]).
pub fn health_views() -> Vec<View> {
    vec![
        View::new(
            "oclayer.io/export/dropped_spans",
            "Spans dropped before export, by exporter",
            &DROPPED_SPANS,
            &[KEY_EXPORTER],
            Aggregation::Sum,
        ),
        View::new(
            "oclayer.io/export/dropped_reports",
            "Stats reports dropped before export, by exporter",
            &DROPPED_REPORTS,
            &[KEY_EXPORTER],
            Aggregation::Sum,
        ),
        View::new(
            "oclayer.io/export/errors",
            "Failed export attempts, by exporter",
            &EXPORT_ERRORS,
            &[KEY_EXPORTER],
            Aggregation::Count,
        ),
    ]
}

/// Registers the health views and the views of the enabled layers, and unregisters those of disabled
/// layers (so a second `init` with fewer layers leaves no stale views). Registering again is a no-op for
/// views already there: their data continues.
///
/// # Errors
/// [`Error::View`] if a view of the same name but another definition was registered by someone else.
pub fn register_layer_views(layers: EnabledLayers) -> Result<(), Error> {
    let mut wanted = health_views();
    for (on, layer) in
        [(layers.router, Layer::Router), (layers.pipe, Layer::Pipe), (layers.backend, Layer::Backend)]
    {
        if on {
            wanted.extend(views(layer));
        } else {
            for view in views(layer) {
                stats::unregister(view.name());
            }
        }
    }
    stats::register(&wanted)
}

// ---- stats: recording --------------------------------------------------------------------------------------

/// "100" to "999", three bytes each, so a status tag is a slice and never a formatted `String`.
const STATUS_DIGITS: [u8; 2700] = {
    let mut digits = [0u8; 2700];
    let mut i = 0;
    while i < 900 {
        let code = i + 100;
        digits[i * 3] = b'0' + (code / 100) as u8;
        digits[i * 3 + 1] = b'0' + (code / 10 % 10) as u8;
        digits[i * 3 + 2] = b'0' + (code % 10) as u8;
        i += 1;
    }
    digits
};

static STATUS_TEXT: &str = match std::str::from_utf8(&STATUS_DIGITS) {
    Ok(text) => text,
    Err(_) => panic!("STATUS_DIGITS holds ASCII digits only"),
};

/// The status tag of an HTTP status code: its three digits, or `invalid` outside 100..=999 (which no HTTP
/// library produces).
pub fn status_tag(code: u16) -> &'static str {
    match code {
        100..=999 => {
            let i = usize::from(code - 100) * 3;
            &STATUS_TEXT[i..i + 3]
        }
        _ => "invalid",
    }
}

fn millis(latency: Duration) -> f64 {
    latency.as_secs_f64() * 1e3
}

fn bytes(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Records one request served by the router layer into the router views.
///
/// `route` is the route *pattern* that matched (`/users/{id}`), never the request path; when no route
/// matched, pass a fixed placeholder such as [`UNMATCHED_ROUTE`]. `method` is the request method as sent
/// (`GET`). Does not check whether the layer is enabled (the caller did); never allocates once this thread
/// has recorded the same route, method and status.
pub fn record_router(
    route: &str,
    method: &str,
    status: u16,
    request_bytes: u64,
    response_bytes: u64,
    latency: Duration,
) {
    stats::record_shaped(
        &ROUTER_SHAPE,
        [
            Value::Int(1),
            Value::Int(bytes(request_bytes)),
            Value::Int(bytes(response_bytes)),
            Value::Float(millis(latency)),
        ],
        [route, method, status_tag(status)],
    );
}

/// [`record_router`] as a `#[trace_layer]` call records: every tag lives as long as the program (the
/// site's route pattern, the method's name, [`status_tag`]'s digits), so a repeat is recognised by the
/// tags' addresses without comparing their bytes, and the latency comes in milliseconds as the layers' clock
/// gives it, without a [`Duration`] between. For `oclayer::__private` and the benches.
#[doc(hidden)]
pub fn record_router_static(
    route: &'static str,
    method: &'static str,
    status: u16,
    request_bytes: u64,
    response_bytes: u64,
    latency_ms: f64,
) {
    stats::record_shaped_static(
        &ROUTER_SHAPE,
        [
            Value::Int(1),
            Value::Int(bytes(request_bytes)),
            Value::Int(bytes(response_bytes)),
            Value::Float(latency_ms),
        ],
        [route, method, status_tag(status)],
    );
}

/// The route tag of a request that matched no route: raw paths must not become tag values.
pub const UNMATCHED_ROUTE: &str = "(unmatched)";

/// How a pipe run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PipeOutcome {
    /// A response.
    Ok,
    /// An `Err`.
    Error,
    /// The caller went away before the end (the future was dropped).
    Canceled,
}

impl PipeOutcome {
    /// The `outcome` tag value: `ok`, `error` or `canceled`.
    pub fn as_str(self) -> &'static str {
        match self {
            PipeOutcome::Ok => "ok",
            PipeOutcome::Error => "error",
            PipeOutcome::Canceled => "canceled",
        }
    }
}

/// Records one pipe run into the pipe views. `endpoint` is the endpoint *pattern*, never a raw path.
pub fn record_pipe(endpoint: &str, outcome: PipeOutcome, latency: Duration) {
    stats::record_shaped(&PIPE_SHAPE, [Value::Float(millis(latency))], [endpoint, outcome.as_str()]);
}

/// [`record_pipe`] as a `#[trace_layer]` call records: see [`record_router_static`].
#[doc(hidden)]
pub fn record_pipe_static(endpoint: &'static str, outcome: PipeOutcome, latency_ms: f64) {
    stats::record_shaped_static(&PIPE_SHAPE, [Value::Float(latency_ms)], [endpoint, outcome.as_str()]);
}

/// Records one upstream call into the backend views.
///
/// `path` is the backend's URL *pattern* or path pattern (`/users/{id}`), never the path sent; `host` the
/// upstream host. `status` is `None` for a transport error (no response), which is recorded as `500`, as
/// ochttp does. Never allocates once this thread has recorded the same tags.
pub fn record_backend(
    host: &str,
    path: &str,
    method: &str,
    status: Option<u16>,
    sent_bytes: u64,
    received_bytes: u64,
    latency: Duration,
) {
    stats::record_shaped(
        &BACKEND_SHAPE,
        [Value::Int(bytes(sent_bytes)), Value::Int(bytes(received_bytes)), Value::Float(millis(latency))],
        [host, path, method, status.map_or("500", status_tag)],
    );
}

/// [`record_backend`] as a `#[trace_layer]` call records: see [`record_router_static`].
#[doc(hidden)]
pub fn record_backend_static(
    host: &'static str,
    path: &'static str,
    method: &'static str,
    status: Option<u16>,
    sent_bytes: u64,
    received_bytes: u64,
    latency_ms: f64,
) {
    stats::record_shaped_static(
        &BACKEND_SHAPE,
        [Value::Int(bytes(sent_bytes)), Value::Int(bytes(received_bytes)), Value::Float(latency_ms)],
        [host, path, method, status.map_or("500", status_tag)],
    );
}

// ---- spans: names, attribute keys, annotations (what `#[trace_layer]` records; see private.rs) ----------

/// Pipe span names: this prefix and the endpoint pattern (`pipe-/users/{id}`), as krakend-opencensus does.
pub const PIPE_SPAN_PREFIX: &str = "pipe-";
/// Backend span names: this prefix and the backend URL pattern or path (`backend-/users/{id}`).
pub const BACKEND_SPAN_PREFIX: &str = "backend-";

/// Router and backend: the request method (`GET`), as ochttp's `MethodAttribute`.
pub const ATTR_HTTP_METHOD: &str = "http.method";
/// Router and backend: the request path (`/users/42`).
pub const ATTR_HTTP_PATH: &str = "http.path";
/// Router and backend: the request URL as sent or received.
pub const ATTR_HTTP_URL: &str = "http.url";
/// Router and backend: the host the request was addressed to.
pub const ATTR_HTTP_HOST: &str = "http.host";
/// Router and backend: the `User-Agent` header, when not empty.
pub const ATTR_HTTP_USER_AGENT: &str = "http.user_agent";
/// Router and backend: the response status code, an int.
pub const ATTR_HTTP_STATUS_CODE: &str = "http.status_code";
/// Pipe: the error's message, on error.
pub const ATTR_ERROR: &str = "error";
/// Pipe: true when the run was cancelled (the caller went away).
pub const ATTR_CANCELED: &str = "canceled";
/// Pipe: whether the run produced a complete response.
pub const ATTR_COMPLETE: &str = "complete";
/// The annotation (and status message) of a span whose handler panicked.
pub const ANNOTATION_PANICKED: &str = "panicked";
/// The method tag of a request whose method is not one of the nine standard ones: any other value would let
/// clients add rows at will.
pub const METHOD_TAG_OTHER: &str = "_OTHER";
/// The host tag of a backend fn's upstream beyond the first few distinct hosts it called: each fn tags a
/// bounded number of hosts by name.
pub const HOST_TAG_OTHER: &str = "_OTHER";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_set_follows_config() {
        set_enabled(EnabledLayers { router: true, pipe: false, backend: true });
        assert!(Layer::Router.is_enabled());
        assert!(!Layer::Pipe.is_enabled());
        assert!(Layer::Backend.is_enabled());
        set_enabled(EnabledLayers { router: false, pipe: false, backend: false });
        assert!(Layer::ALL.iter().all(|l| !l.is_enabled()));
    }
}
