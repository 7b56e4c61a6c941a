//! The finished span: what the span pipeline hands to exporters. It mirrors the OpenCensus span of
//! `trace/v1/trace.proto`, so an exporter converts field by field without inventing anything.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use super::{SpanId, TraceId};

/// What identifies a span across process boundaries: the part that propagation carries.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SpanContext {
    /// The trace this span belongs to.
    pub trace_id: TraceId,
    /// This span.
    pub span_id: SpanId,
    /// Whether the trace is sampled (recorded and exported).
    pub sampled: bool,
    /// W3C `tracestate` entries, passed through unchanged.
    pub tracestate: TraceState,
}

impl SpanContext {
    /// No trace at all: what "no current span" reads as. Invalid ids, not sampled.
    pub const INVALID: SpanContext = SpanContext {
        trace_id: TraceId::INVALID,
        span_id: SpanId::INVALID,
        sampled: false,
        tracestate: TraceState::EMPTY,
    };

    /// Whether both ids are valid (not all zero), i.e. this context names a real span.
    pub fn is_valid(&self) -> bool {
        self.trace_id.is_valid() && self.span_id.is_valid()
    }
}

/// W3C `tracestate`: ordered vendor key/value pairs. Empty costs no allocation.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TraceState(pub Option<Arc<[(String, String)]>>);

impl TraceState {
    /// No entries.
    pub const EMPTY: TraceState = TraceState(None);

    /// The entries, in header order.
    pub fn entries(&self) -> &[(String, String)] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// A tracestate holding `entries` in this order; no allocation when empty. Entries are taken as they
    /// are: [`crate::trace::propagation`] validates what comes from headers.
    pub fn from_entries(entries: Vec<(String, String)>) -> TraceState {
        if entries.is_empty() { TraceState::EMPTY } else { TraceState(Some(entries.into())) }
    }
}

/// The span kind, as OpenCensus knows it: router spans are `Server`, backend spans `Client`, pipe spans
/// `Unspecified`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SpanKind {
    /// Neither side of an RPC.
    #[default]
    Unspecified,
    /// The server side of a request (the router layer).
    Server,
    /// The client side of a request (the backend layer).
    Client,
}

/// An attribute value. OpenCensus carries strings, 64-bit ints, bools and doubles.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    /// A string, truncated to the attribute string limit.
    String(Cow<'static, str>),
    /// A 64-bit signed integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A 64-bit float.
    Double(f64),
}

impl From<&'static str> for AttributeValue {
    fn from(value: &'static str) -> Self {
        AttributeValue::String(Cow::Borrowed(value))
    }
}

impl From<String> for AttributeValue {
    fn from(value: String) -> Self {
        AttributeValue::String(Cow::Owned(value))
    }
}

impl From<Cow<'static, str>> for AttributeValue {
    fn from(value: Cow<'static, str>) -> Self {
        AttributeValue::String(value)
    }
}

impl From<bool> for AttributeValue {
    fn from(value: bool) -> Self {
        AttributeValue::Bool(value)
    }
}

impl From<f64> for AttributeValue {
    fn from(value: f64) -> Self {
        AttributeValue::Double(value)
    }
}

impl From<f32> for AttributeValue {
    fn from(value: f32) -> Self {
        AttributeValue::Double(value.into())
    }
}

// Only the integer types that fit an i64 without loss: a u64 or usize could not round-trip, so the caller
// decides how to convert those.
macro_rules! int_attribute_value {
    ($($int:ty),*) => {$(
        impl From<$int> for AttributeValue {
            fn from(value: $int) -> Self {
                AttributeValue::Int(value.into())
            }
        }
    )*};
}
int_attribute_value!(i8, i16, i32, i64, u8, u16, u32);

/// Span (or annotation, or link) attributes, with the count of those dropped by the limits.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Attributes {
    /// Keys and values, in insertion order; a repeated key replaces the earlier value.
    pub entries: Vec<(Cow<'static, str>, AttributeValue)>,
    /// How many attributes were dropped because the count limit was reached.
    pub dropped: u32,
}

/// Something that happened during the span, at a point in time.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeEvent {
    /// When it happened.
    pub time: SystemTime,
    /// What happened.
    pub kind: TimeEventKind,
}

/// The two kinds of OpenCensus time event.
#[derive(Clone, Debug, PartialEq)]
pub enum TimeEventKind {
    /// A free-form note with attributes.
    Annotation {
        /// What happened, in words.
        description: Cow<'static, str>,
        /// Details.
        attributes: Attributes,
    },
    /// A message sent or received.
    MessageEvent {
        /// Sent or received.
        kind: MessageEventKind,
        /// Identifies the message within the span.
        id: u64,
        /// Size before compression, in bytes.
        uncompressed_size: u64,
        /// Size after compression, in bytes (0 when not compressed).
        compressed_size: u64,
    },
}

/// Direction of a message event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MessageEventKind {
    /// Unknown direction.
    #[default]
    Unspecified,
    /// The span sent the message.
    Sent,
    /// The span received the message.
    Received,
}

/// A pointer from this span to another span, in this trace or another.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// The linked span's trace.
    pub trace_id: TraceId,
    /// The linked span.
    pub span_id: SpanId,
    /// How the linked span relates to this one.
    pub kind: LinkKind,
    /// Details.
    pub attributes: Attributes,
}

/// How a linked span relates to this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LinkKind {
    /// Unknown relation.
    #[default]
    Unspecified,
    /// The linked span is a child of this one.
    ChildLinkedSpan,
    /// The linked span is a parent of this one.
    ParentLinkedSpan,
}

/// A canonical status code (google.rpc.Code), as OpenCensus spans carry them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(i32)]
#[allow(missing_docs)]
pub enum StatusCode {
    #[default]
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl StatusCode {
    /// The code's name as gRPC spells it (`NOT_FOUND`): the status message the layers use.
    pub fn name(self) -> &'static str {
        match self {
            StatusCode::Ok => "OK",
            StatusCode::Cancelled => "CANCELLED",
            StatusCode::Unknown => "UNKNOWN",
            StatusCode::InvalidArgument => "INVALID_ARGUMENT",
            StatusCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            StatusCode::NotFound => "NOT_FOUND",
            StatusCode::AlreadyExists => "ALREADY_EXISTS",
            StatusCode::PermissionDenied => "PERMISSION_DENIED",
            StatusCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            StatusCode::FailedPrecondition => "FAILED_PRECONDITION",
            StatusCode::Aborted => "ABORTED",
            StatusCode::OutOfRange => "OUT_OF_RANGE",
            StatusCode::Unimplemented => "UNIMPLEMENTED",
            StatusCode::Internal => "INTERNAL",
            StatusCode::Unavailable => "UNAVAILABLE",
            StatusCode::DataLoss => "DATA_LOSS",
            StatusCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The status of an HTTP response, by opencensus-go's ochttp mapping (DESIGN.md).
    pub fn from_http(status: u16) -> StatusCode {
        match status {
            499 => StatusCode::Cancelled,
            400 | 422 => StatusCode::InvalidArgument,
            504 => StatusCode::DeadlineExceeded,
            404 => StatusCode::NotFound,
            409 => StatusCode::AlreadyExists,
            403 => StatusCode::PermissionDenied,
            429 => StatusCode::ResourceExhausted,
            501 => StatusCode::Unimplemented,
            503 => StatusCode::Unavailable,
            401 => StatusCode::Unauthenticated,
            200..=399 => StatusCode::Ok,
            _ => StatusCode::Unknown,
        }
    }
}

/// A span's outcome: a canonical code and a message.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Status {
    /// The canonical code; `Ok` unless something failed.
    pub code: StatusCode,
    /// Human-readable detail; empty for `Ok`.
    pub message: Cow<'static, str>,
}

/// A finished, sampled span, as exporters receive it.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanData {
    /// Ids, sampled flag and tracestate.
    pub context: SpanContext,
    /// The parent span, `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    /// The span name (the route, `pipe-...`, `backend-...` or the function).
    pub name: Cow<'static, str>,
    /// Server, client or unspecified.
    pub kind: SpanKind,
    /// Wall-clock start.
    pub start_time: SystemTime,
    /// Wall-clock end: start plus a monotonic duration, so never before the start.
    pub end_time: SystemTime,
    /// Attributes and how many the limit dropped.
    pub attributes: Attributes,
    /// Annotations and message events, in time order.
    pub time_events: Vec<TimeEvent>,
    /// Annotations dropped by the limit.
    pub dropped_annotations: u32,
    /// Message events dropped by the limit.
    pub dropped_message_events: u32,
    /// Links to other spans.
    pub links: Vec<Link>,
    /// Links dropped by the limit.
    pub dropped_links: u32,
    /// The outcome.
    pub status: Status,
    /// `Some(true)` when the parent was in this process, `Some(false)` when it came over the wire, `None`
    /// for a root span.
    pub same_process_as_parent_span: Option<bool>,
    /// How many children were started while this span was open.
    pub child_span_count: u32,
}

impl SpanData {
    /// A root span with nothing recorded: no parent, no attributes, events or links, status `Ok`. For
    /// exporters' and users' tests, which set what they check with struct update syntax:
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use oclayer_runtime::trace::{SpanContext, SpanData, SpanKind, StatusCode};
    ///
    /// let start = SystemTime::now();
    /// let span = SpanData {
    ///     child_span_count: 2,
    ///     ..SpanData::new(SpanContext::default(), "/users/{id}", SpanKind::Server, start, start + Duration::from_millis(3))
    /// };
    /// assert_eq!(span.duration(), Duration::from_millis(3));
    /// assert_eq!(span.status.code, StatusCode::Ok);
    /// ```
    pub fn new(
        context: SpanContext,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        start_time: SystemTime,
        end_time: SystemTime,
    ) -> SpanData {
        SpanData {
            context,
            parent_span_id: None,
            name: name.into(),
            kind,
            start_time,
            end_time,
            attributes: Attributes::default(),
            time_events: Vec::new(),
            dropped_annotations: 0,
            dropped_message_events: 0,
            links: Vec::new(),
            dropped_links: 0,
            status: Status::default(),
            same_process_as_parent_span: None,
            child_span_count: 0,
        }
    }

    /// The span's duration; zero if the clock says otherwise.
    pub fn duration(&self) -> std::time::Duration {
        self.end_time.duration_since(self.start_time).unwrap_or_default()
    }
}
