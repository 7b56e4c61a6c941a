//! OpenCensus traces and stats for Rust API gateways.
//!
//! This facade only re-exports: the runtime lives in `oclayer-runtime`, the attribute in `oclayer-macros`.
//!
//! Start the pipeline once ([`init`] or [`init_from_file`]), then annotate the handlers with the layer
//! they belong to. Until `init`, and for a layer the config disables, an annotated fn runs as if it were
//! not annotated.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//!
//! #[derive(Debug)]
//! struct Upstream;
//!
//! impl std::fmt::Display for Upstream {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("upstream unreachable")
//!     }
//! }
//!
//! // A server span continuing the caller's trace, named by the route; the status comes from the response.
//! #[oclayer::trace_layer(router, route = "/users/{id}")]
//! async fn handle(req: Request<()>) -> Response<String> {
//!     let url = format!("http://users.internal/api{}", req.uri().path());
//!     let mut upstream = Request::get(url).body(()).unwrap();
//!     match fetch_user(&mut upstream).await {
//!         Ok(user) => Response::new(user),
//!         Err(_) => Response::builder().status(StatusCode::BAD_GATEWAY).body(String::new()).unwrap(),
//!     }
//! }
//!
//! // A client span, child of the router's; its context goes out in `upstream`'s headers before the body
//! // runs. With `err`, an `Err` is an error status with the error's message.
//! #[oclayer::trace_layer(backend, route = "/api/users/{id}", err, fields(attempt = 1))]
//! async fn fetch_user(upstream: &mut Request<()>) -> Result<String, Upstream> {
//!     Ok(upstream.uri().path().to_owned())
//! }
//! # let _ = handle(Request::new(()));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use oclayer_runtime::*;

pub use oclayer_macros::trace_layer;

/// What `#[trace_layer]` expands to calls, and nothing else may: not a public API.
#[doc(hidden)]
pub use oclayer_runtime::private as __private;
