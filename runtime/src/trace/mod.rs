//! Traces: spans, the current span, sampling, propagation and the span pipeline.
//!
//! - [`Span`] is a live span; [`start_span`] and [`SpanBuilder`] start one, [`current_span`] finds the
//!   current one. An unsampled span costs no allocation, lock or syscall.
//! - The current span follows synchronous code through [`Span::enter`] and async code through
//!   [`FutureExt`], on any executor.
//! - [`Sampler`] decides at the root; children follow. [`set_sampler`] swaps it at run time.
//! - Ended sampled spans go through a bounded queue to a background batcher and on to the exporters as
//!   [`SpanData`]; see [`dropped_spans`] for what a full queue cost.

mod context;
mod id;
mod instrument;
pub mod limits;
pub(crate) mod pipeline;
pub mod propagation;
mod sampler;
mod span;
mod span_data;
mod spin;
#[cfg(test)]
mod tests;

pub use context::{CurrentSpan, Entered, current_span};
pub use id::{SpanId, TraceId};
pub use instrument::{FutureExt, Instrumented};
pub use pipeline::{DEFAULT_BATCH_SIZE, DEFAULT_BATCH_TIMEOUT, DEFAULT_QUEUE_CAPACITY, dropped_spans};
pub use sampler::{Sampler, sampler, set_sampler};
pub use span::{Parent, Span, SpanBuilder, start_span};
pub use span_data::{
    AttributeValue, Attributes, Link, LinkKind, MessageEventKind, SpanContext, SpanData, SpanKind, Status,
    StatusCode, TimeEvent, TimeEventKind, TraceState,
};
