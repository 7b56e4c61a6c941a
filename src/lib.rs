//! OpenCensus traces and stats for Rust API gateways.
//!
//! This facade only re-exports: the runtime lives in `oclayer-runtime`, the attribute in `oclayer-macros`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use oclayer_runtime::*;

pub use oclayer_macros::trace_layer;

/// What `#[trace_layer]` expands to calls, and nothing else may: not a public API.
#[doc(hidden)]
pub use oclayer_runtime::private as __private;
