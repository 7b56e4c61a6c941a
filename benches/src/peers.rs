//! The peers' pipelines, set up once here so that every bench configures them alike and as their own docs
//! recommend for production, with the export step replaced by one that discards:
//!
//! - fastrace: [`fastrace::set_reporter`] with the default collector config and [`DiscardReporter`].
//! - OpenTelemetry: an `opentelemetry_sdk` tracer provider with the batch span processor
//!   (`with_batch_exporter`, its own background thread) and [`DiscardSpanExporter`].
//! - tracing: a `tracing_subscriber` registry, alone or with `tracing-opentelemetry`'s layer feeding such an
//!   OpenTelemetry tracer.
//!
//! Every exporter runs off the benchmark thread, as oclayer's does, so a bench timed by the thread's CPU
//! clock counts what the request path pays, and the export work of none of them.

use std::hint::black_box;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt as _;

/// A fastrace reporter that drops what it is given.
pub struct DiscardReporter;

impl fastrace::collector::Reporter for DiscardReporter {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        black_box(spans.len());
    }
}

/// Installs [`DiscardReporter`] as fastrace's global reporter, with the default collector config.
///
/// fastrace keeps one reporter per process; calling this again replaces it, which is harmless here.
pub fn fastrace_discarding() {
    fastrace::set_reporter(DiscardReporter, fastrace::collector::Config::default());
}

/// An OpenTelemetry span exporter that drops every batch.
#[derive(Debug, Default)]
pub struct DiscardSpanExporter;

impl SpanExporter for DiscardSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch.len());
        Ok(())
    }
}

/// An `opentelemetry_sdk` tracer provider as its docs set one up for production (batch span processor on
/// its own thread), exporting to [`DiscardSpanExporter`], with `sampler` deciding root spans.
///
/// Shut it down (or drop it) when done: that stops the processor's thread.
pub fn otel_provider(sampler: Sampler) -> SdkTracerProvider {
    SdkTracerProvider::builder().with_batch_exporter(DiscardSpanExporter).with_sampler(sampler).build()
}

/// Drains `provider`'s batch processor, for the pauses between timed chunks (see [`chunked`](crate::chunked));
/// a failure is printed, tagged with `what`, not fatal.
pub fn otel_flush<'p>(provider: &'p SdkTracerProvider, what: &'p str) -> impl Fn() + 'p {
    move || {
        if let Err(error) = provider.force_flush() {
            eprintln!("{what}: the OpenTelemetry provider did not flush: {error}");
        }
    }
}

/// The tracer the benches use from `provider`.
pub fn otel_tracer(provider: &SdkTracerProvider) -> SdkTracer {
    provider.tracer("oclayer-benches")
}

/// A `tracing` subscriber: the registry with `tracing-opentelemetry`'s layer writing into `provider`'s
/// tracer. Install it with `tracing::subscriber::set_default` for the bench's thread.
pub fn tracing_opentelemetry_subscriber(
    provider: &SdkTracerProvider,
) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(otel_tracer(provider)))
}
