//! The OpenCensus agent wire format (opencensus-proto), declared anew in this crate's own `.proto`
//! files, with prost message types and tonic client and server stubs.
//!
//! The module tree mirrors the protobuf packages below `opencensus.proto`:
//!
//! | module | package | what it holds |
//! |---|---|---|
//! | [`agent::common::v1`] | `opencensus.proto.agent.common.v1` | [`Node`](agent::common::v1::Node): who is exporting |
//! | [`agent::trace::v1`] | `opencensus.proto.agent.trace.v1` | `TraceService` (`Export`, `Config` streams) and its messages |
//! | [`agent::metrics::v1`] | `opencensus.proto.agent.metrics.v1` | `MetricsService` (`Export` stream) and its messages |
//! | [`trace::v1`] | `opencensus.proto.trace.v1` | [`Span`](trace::v1::Span), [`TraceConfig`](trace::v1::TraceConfig) and the samplers |
//! | [`metrics::v1`] | `opencensus.proto.metrics.v1` | [`Metric`](metrics::v1::Metric), descriptors, series, points, distributions |
//! | [`resource::v1`] | `opencensus.proto.resource.v1` | [`Resource`](resource::v1::Resource) |
//!
//! Field names and numbers are exactly the published ones, since other agents and collectors
//! decode these bytes; `tests/wire.rs` pins the encoding against hand-derived bytes. Well-known
//! types (`Timestamp`, `BoolValue`, `UInt32Value`, `Int64Value`, `DoubleValue`) are
//! [`prost_types`]'.
//!
//! The generated code lives in `OUT_DIR` (see `build.rs`); it is never edited or committed.

/// Re-exported so that users of the generated types encode and decode with the same versions.
pub use prost;
/// Re-exported for `Timestamp` and the wrapper types the messages use.
pub use prost_types;
/// Re-exported for the transport, status and streaming types the stubs use.
pub use tonic;

/// Includes one generated package. Generated code is not ours to lint or document; its doc
/// comments come from our `.proto` comments.
macro_rules! package {
    ($file:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $file));
    };
}

/// The agent protocol: the services an exporter talks to and what identifies the exporter.
pub mod agent {
    /// Messages shared by the agent services.
    pub mod common {
        /// `opencensus.proto.agent.common.v1`: [`Node`](v1::Node), [`ProcessIdentifier`](v1::ProcessIdentifier),
        /// [`LibraryInfo`](v1::LibraryInfo) with its [`Language`](v1::library_info::Language),
        /// [`ServiceInfo`](v1::ServiceInfo).
        #[allow(missing_docs, clippy::all, clippy::pedantic)]
        pub mod v1 {
            package!("opencensus.proto.agent.common.v1.rs");
        }
    }

    /// The trace service.
    pub mod trace {
        /// `opencensus.proto.agent.trace.v1`: the `TraceService` stubs
        /// ([`trace_service_client`](v1::trace_service_client), [`trace_service_server`](v1::trace_service_server))
        /// and the stream messages.
        #[allow(missing_docs, clippy::all, clippy::pedantic)]
        pub mod v1 {
            package!("opencensus.proto.agent.trace.v1.rs");
        }
    }

    /// The metrics service.
    pub mod metrics {
        /// `opencensus.proto.agent.metrics.v1`: the `MetricsService` stubs
        /// ([`metrics_service_client`](v1::metrics_service_client), [`metrics_service_server`](v1::metrics_service_server))
        /// and the stream messages.
        #[allow(missing_docs, clippy::all, clippy::pedantic)]
        pub mod v1 {
            package!("opencensus.proto.agent.metrics.v1.rs");
        }
    }
}

/// The span model.
pub mod trace {
    /// `opencensus.proto.trace.v1`: [`Span`](v1::Span) and its parts, [`TraceConfig`](v1::TraceConfig)
    /// and the samplers.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        package!("opencensus.proto.trace.v1.rs");
    }
}

/// The metrics model.
pub mod metrics {
    /// `opencensus.proto.metrics.v1`: [`Metric`](v1::Metric), [`MetricDescriptor`](v1::MetricDescriptor),
    /// [`TimeSeries`](v1::TimeSeries), [`Point`](v1::Point), [`DistributionValue`](v1::DistributionValue),
    /// [`SummaryValue`](v1::SummaryValue), labels.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        package!("opencensus.proto.metrics.v1.rs");
    }
}

/// The resource model.
pub mod resource {
    /// `opencensus.proto.resource.v1`: [`Resource`](v1::Resource).
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        package!("opencensus.proto.resource.v1.rs");
    }
}
