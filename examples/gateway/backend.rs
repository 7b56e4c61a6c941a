//! The gateway's calls to its upstream services: one `#[trace_layer(backend)]` fn per backend, as KrakenD
//! configures one backend per upstream URL pattern.
//!
//! The request is passed by value, so the layer can write the trace context (W3C `traceparent` and B3
//! headers) into it before it is sent; the `route` is the URL pattern, which names the span
//! (`backend-/users/{id}`) and tags the client views without one row per user.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long a backend call may take, as the `timeout` of `examples/krakend.json`.
pub const BACKEND_TIMEOUT: Duration = Duration::from_millis(3000);

/// The HTTP client of the gateway: plain HTTP/1 to loopback, with a connection pool.
pub type Client = HyperClient<HttpConnector, Empty<Bytes>>;

/// A new client.
pub fn client() -> Client {
    HyperClient::builder(TokioExecutor::new()).build_http()
}

/// A backend call that got no answer: the connection failed, the body broke off or the time ran out. An
/// upstream's error status is an answer, not this.
#[derive(Debug)]
pub struct BackendError {
    /// Which upstream.
    pub upstream: &'static str,
    /// What went wrong.
    pub message: String,
    /// Whether the time ran out (the gateway answers 504 then, else 502).
    pub timed_out: bool,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} upstream: {}", self.upstream, self.message)
    }
}

impl std::error::Error for BackendError {}

/// `GET /users/{id}` of the users service.
#[oclayer::trace_layer(backend, route = "/users/{id}", err)]
pub async fn fetch_user(
    client: &Client,
    req: Request<Empty<Bytes>>,
) -> Result<Response<Bytes>, BackendError> {
    send(client, req, "users").await
}

/// `GET /orders/by-user/{id}` of the orders service.
#[oclayer::trace_layer(backend, route = "/orders/by-user/{id}", err)]
pub async fn fetch_orders(
    client: &Client,
    req: Request<Empty<Bytes>>,
) -> Result<Response<Bytes>, BackendError> {
    send(client, req, "orders").await
}

/// A GET request to `path` on `upstream`.
pub fn get(upstream: SocketAddr, path: &str) -> Result<Request<Empty<Bytes>>, http::Error> {
    Request::get(format!("http://{upstream}{path}"))
        .header(header::USER_AGENT, "oclayer-demo-gateway")
        .body(Empty::new())
}

/// Sends `req` and reads the whole answer, within [`BACKEND_TIMEOUT`].
async fn send(
    client: &Client,
    req: Request<Empty<Bytes>>,
    upstream: &'static str,
) -> Result<Response<Bytes>, BackendError> {
    let error = |message: String, timed_out: bool| BackendError { upstream, message, timed_out };
    let exchange = async {
        let response = client.request(req).await.map_err(|e| error(describe(&e), false))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| error(format!("reading the answer: {e}"), false))?;
        Ok(Response::from_parts(parts, body.to_bytes()))
    };
    match tokio::time::timeout(BACKEND_TIMEOUT, exchange).await {
        Ok(answer) => answer,
        Err(_) => Err(error(format!("no answer within {} ms", BACKEND_TIMEOUT.as_millis()), true)),
    }
}

/// The client error with its causes: hyper's own message is only "client error (Connect)".
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
