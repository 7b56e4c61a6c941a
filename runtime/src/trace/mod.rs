//! Traces: span ids, the finished-span model exporters receive, and (added by the tracing core) the current
//! span, sampling, propagation and the span pipeline.

mod id;
mod span_data;

pub use id::{SpanId, TraceId};
pub use span_data::{
    AttributeValue, Attributes, Link, LinkKind, MessageEventKind, SpanContext, SpanData, SpanKind, Status,
    StatusCode, TimeEvent, TimeEventKind, TraceState,
};
