//! The small HTTP/1.1 server behind the pulled exporters: Prometheus `/metrics` and the `/debug` pages.
//!
//! Binding is synchronous, in the exporter's constructor, so a taken port fails `init` with an [`Error`]
//! naming the address and the config key, instead of a panic or a log line from a background task. The
//! bound listener is then served by tasks on the telemetry runtime, which must have IO and time enabled.
//!
//! Handlers are plain functions from the request head to a complete response: every page here is rendered
//! in one piece, so there is no streaming and the request body is never read.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Error;

/// The response type every handler returns: a complete body.
pub(crate) type HttpResponse = Response<Full<Bytes>>;

/// A client that sends its request head slower than this is disconnected, so an idle or hostile client
/// cannot hold a connection task forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// After an accept error (e.g. out of file descriptors) the loop pauses, so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A running server. Dropping it (or calling [`HttpServer::shutdown`]) stops accepting connections and
/// asks open ones to finish their current response and close.
pub(crate) struct HttpServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept_loop: Mutex<Option<JoinHandle<()>>>,
}

impl HttpServer {
    /// Binds `addr` now and serves `handler` on `rt`.
    ///
    /// `config_key` is the JSON path of the setting that chose the port; it goes into the error so the
    /// user knows what to change. Port 0 binds a free port: see [`HttpServer::local_addr`].
    pub(crate) fn start<H>(
        addr: SocketAddr,
        config_key: &str,
        rt: &Handle,
        handler: H,
    ) -> Result<HttpServer, Error>
    where
        H: Fn(&Parts) -> HttpResponse + Send + Sync + 'static,
    {
        let listen_error =
            |source: std::io::Error| Error::Listen { address: addr, path: config_key.to_owned(), source };
        let std_listener = StdTcpListener::bind(addr).map_err(listen_error)?;
        std_listener.set_nonblocking(true).map_err(listen_error)?;
        let local_addr = std_listener.local_addr().map_err(listen_error)?;
        // Registering with the reactor needs the runtime's context; entering it works from any thread.
        let listener = {
            let _context = rt.enter();
            TcpListener::from_std(std_listener).map_err(listen_error)?
        };

        let (stop, stopped) = watch::channel(false);
        let handler = Arc::new(handler);
        let accept_loop = rt.spawn(accept_loop(listener, handler, stopped));
        tracing::debug!(address = %local_addr, "oclayer: HTTP server listening");
        Ok(HttpServer { local_addr, stop, accept_loop: Mutex::new(Some(accept_loop)) })
    }

    /// The address actually bound (the real port when the config asked for port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes the listening socket and asks open connections to close after their
    /// current response. Resolves once the listening socket is closed, so the port is free again.
    ///
    /// Uses no timer, so it can be awaited from any runtime; it resolves promptly as long as the telemetry
    /// runtime runs (and at once when that runtime is gone).
    pub(crate) async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let accept_loop = self.accept_loop.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(accept_loop) = accept_loop {
            // A JoinError means the runtime is gone, and the listener with it: nothing left to stop.
            let _ = accept_loop.await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop<H>(listener: TcpListener, handler: Arc<H>, mut stopped: watch::Receiver<bool>)
where
    H: Fn(&Parts) -> HttpResponse + Send + Sync + 'static,
{
    loop {
        let stream = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "oclayer: HTTP server cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(stream, Arc::clone(&handler), stopped.clone()));
    }
}

async fn serve_connection<H>(
    stream: tokio::net::TcpStream,
    handler: Arc<H>,
    mut stopped: watch::Receiver<bool>,
) where
    H: Fn(&Parts) -> HttpResponse + Send + Sync + 'static,
{
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let (head, _body) = request.into_parts();
        let response = handler(&head);
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopped.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // Clients that hang up or send garbage are their problem, not the operator's: debug only.
        tracing::debug!(%error, "oclayer: HTTP connection ended with an error");
    }
}

/// A complete response with a body and its content type.
pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `404 Not Found`, listing the paths this server does serve.
pub(crate) fn not_found(served: &str) -> HttpResponse {
    response(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        format!("not found; this server serves {served}\n"),
    )
}

/// `405 Method Not Allowed` with the `Allow` header: the pages are read-only.
pub(crate) fn method_not_allowed() -> HttpResponse {
    let mut response = response(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        "method not allowed; use GET\n",
    );
    response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// Whether the request may read a page: `GET`, or `HEAD` (hyper then sends the head without the body).
pub(crate) fn is_read(head: &Parts) -> bool {
    head.method == hyper::Method::GET || head.method == hyper::Method::HEAD
}
