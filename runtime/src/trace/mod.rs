//! Traces: spans, the current span, sampling, propagation and the span pipeline.
//!
//! A request's work is a tree of spans: `#[trace_layer]` starts one per annotated call, as a child of the
//! span current where the call is made. This module is what the attribute uses, and what code can use
//! directly:
//!
//! - [`Span`] is a live span; [`start_span`] and [`SpanBuilder`] start one. An unsampled span costs no
//!   allocation, lock or syscall: it only carries ids, so the trace continues downstream.
//! - The current span follows synchronous code through [`Span::enter`] and async code through
//!   [`FutureExt`], on any executor; [`current_span`] records into it from anywhere below.
//! - [`Sampler`] decides at the root; children follow. [`set_sampler`] swaps it at run time.
//! - [`propagation`] reads and writes the trace context in HTTP headers (W3C and B3).
//! - Ended sampled spans go through a bounded queue to a background batcher and on to the exporters as
//!   [`SpanData`]; [`dropped_spans`] counts what a full queue cost.
//! - [`running_spans`] counts the sampled spans started and not yet ended, by name (for `/debug/tracez`).
//!
//! ```
//! use oclayer_runtime::trace::{self, FutureExt, SpanKind};
//! # async fn fetch_user() {}
//! # async fn example() {
//! let span = trace::start_span("backend-/users/{id}", SpanKind::Client);
//! span.set_attribute("http.method", "GET");
//! // Current while `fetch_user` runs (its spans are children), ended when it completes.
//! fetch_user().instrument(span).await;
//! // Anywhere below an annotated handler: record into whatever span is current.
//! oclayer_runtime::current_span().add_annotation("user fetched");
//! # }
//! ```

mod context;
mod id;
mod instrument;
pub mod limits;
pub(crate) mod pipeline;
pub mod propagation;
mod ring;
mod running;
mod sampler;
mod span;
mod span_data;
mod spin;
#[cfg(test)]
mod tests;

pub(crate) use context::PollScope;
pub use context::{CurrentSpan, Entered, current_span};
pub use id::{SpanId, TraceId};
pub use instrument::{FutureExt, Instrumented};
pub use pipeline::{DEFAULT_BATCH_SIZE, DEFAULT_BATCH_TIMEOUT, DEFAULT_QUEUE_CAPACITY, dropped_spans};
pub use running::{MAX_RUNNING_SPAN_NAMES, OTHER_SPAN_NAMES, running_spans};
pub use sampler::{Sampler, sampler, set_sampler};
pub use span::{Parent, Span, SpanBuilder, start_span};
pub use span_data::{
    AttributeValue, Attributes, Link, LinkKind, MessageEventKind, SpanContext, SpanData, SpanKind, Status,
    StatusCode, TimeEvent, TimeEventKind, TraceState,
};
