//! OpenCensus traces and stats for Rust API gateways.
//!
//! This facade only re-exports: the runtime lives in `oclayer-runtime`, the attribute in `oclayer-macros`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use oclayer_runtime::*;
