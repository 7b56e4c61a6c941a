//! The runtime of oclayer: everything that runs when an annotated handler is called.
//!
//! - [`config`]: KrakenD's `telemetry/opencensus` block, or a builder, into a validated [`Config`].
//! - [`trace`]: span ids, the current span, sampling, propagation and the span pipeline.
//! - [`stats`]: measures, tags, views and the reporting loop.
//! - [`layer`]: what the router, pipe and backend layers record.
//! - [`export`]: the exporter trait and the exporters.
//!
//! Users depend on the `oclayer` facade, which re-exports this crate and the `#[trace_layer]` attribute.
#![warn(missing_docs)]

mod clock;
pub mod config;
mod error;
pub mod export;
pub mod layer;
pub mod stats;
mod telemetry;
pub mod trace;

#[doc(hidden)]
pub mod private;

pub use config::Config;
pub use error::Error;
pub use telemetry::{DEFAULT_TIMEOUT, Telemetry, TelemetryBuilder, init, init_from_file};
pub use trace::current_span;
