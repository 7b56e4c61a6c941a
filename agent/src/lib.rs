//! An OpenCensus agent receiver, for tests, demos and as a small stand-alone agent.
//!
//! It serves the agent protocol's `TraceService` (`Export` and `Config` streams) and
//! `MetricsService` (`Export` stream) with the stub servers of [`oclayer_proto`], decodes what any
//! OpenCensus exporter sends (oclayer's, opencensus-go's, ...), and keeps it in memory:
//!
//! - every stream, with its request headers, its compression, the `Node` on its first message (the
//!   protocol requires one; a stream whose first message lacks it is recorded as
//!   [`NodeOnFirstMessage::Missing`]) and how it ended;
//! - every span and metric, with the node and resource in effect when it arrived;
//! - every `CurrentLibraryConfig` libraries report on the Config stream.
//!
//! Tests drive it through [`AgentHandle`]: await records ([`AgentHandle::wait_for_spans`]), push a
//! sampler ([`AgentHandle::push_sampler`] with a config from [`sampler`]), end streams after N
//! messages ([`AgentHandle::fail_after`]), slow down ([`AgentHandle::slow_down`]), and kill and
//! restart the server on the same port ([`AgentHandle::kill`], [`AgentHandle::restart`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use oclayer_agent::Agent;
//!
//! let agent = Agent::builder().start("127.0.0.1:0".parse()?).await?;
//! // ... point an ocagent exporter at agent.endpoint() ...
//! let spans = agent.wait_for_spans(3, Duration::from_secs(5)).await?;
//! print!("{}", oclayer_agent::render::trace_tree(&spans));
//! agent.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The `oclayer-agent` binary runs the same receiver and prints what arrives as trace trees and
//! metric tables ([`render`]), or writes JSON lines ([`json`]).

pub mod json;
mod record;
pub mod render;
pub mod sampler;
mod server;
mod service;

pub use record::{
    AgentEvent, NodeOnFirstMessage, ReceivedConfig, ReceivedMetric, ReceivedSpan, Snapshot, SpanTally,
    StreamId, StreamKind, StreamRecord, StreamState, WaitTimeout, hex, service_name,
};
pub use server::{Agent, AgentBuilder, AgentError, AgentHandle};
