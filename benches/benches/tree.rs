//! A request's span tree, router -> pipe -> backend, every span sampled and handed to a discarding export,
//! for oclayer and its peers with the same three nested fns around the same small body.
//!
//! - `tree/oclayer_spans`: `#[trace_layer(router)]`, `(pipe)` and `(backend)` with `skip_measures` and no
//!   request in scope: three spans and nothing else, the like-for-like of the peers.
//! - `tree/oclayer_http_spans`: the same layers doing their HTTP work: the router reads an `http::Request`
//!   (context extraction, five attributes), the backend sets its attributes and injects the trace headers
//!   (W3C and B3, the default) into its outgoing request. The peers do none of this.
//! - `tree/oclayer`: that, with the layers' measures recorded too (12 views), as a user gets it.
//! - `tree/fastrace`: a root span for the router (fastrace records only under a root) and `#[trace]` on the
//!   pipe and backend fns.
//! - `tree/tracing_registry`: `#[instrument]` on the three fns, `tracing_subscriber`'s registry.
//! - `tree/tracing_opentelemetry`: the same fns, the registry with `tracing-opentelemetry` into an
//!   `opentelemetry_sdk` tracer (batch span processor).
//! - `tree/opentelemetry_sdk`: three nested `Tracer::in_span` calls on that tracer.
//!
//! Every backend fn makes and drops an outgoing request, so that only the instrumentation differs.
//!
//! Timed by the bench thread's CPU clock (the machine is shared); every pipeline exports on its own thread,
//! so none of their export costs is counted (see `oclayer_benches::peers`). As in `trace.rs` and
//! `macro.rs`, the trees are made in chunks of [`CHUNK`](oclayer_benches::CHUNK) requests with each
//! pipeline drained between chunks outside the timed part, so that the rows time a request with a pipeline
//! that keeps up, as a gateway's does: made flat out, trees outrun every batcher and the rows time how each
//! tracer sheds an overload. That is what `tree/oclayer_flooded` and `tree/fastrace_flooded` keep, with
//! three spans each as in the like-for-like rows.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use oclayer::config::Config;
use oclayer::trace::{self, Sampler};
use oclayer::trace_layer;
use oclayer_benches::{ThreadCpuTime, chunked, oclayer_discarding, oclayer_flush, peers};
use opentelemetry::trace::Tracer as _;

/// The body every variant runs: small, so that the instrumentation is most of what is timed.
#[inline(never)]
fn work(x: u64) -> u64 {
    black_box(x).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(7)
}

/// The outgoing request of the backend call, built the same way in every variant.
fn outgoing() -> Request<()> {
    Request::new(())
}

// ---- oclayer ---------------------------------------------------------------------------------------------

#[inline(never)]
#[trace_layer(router, route = "/users/{id}", skip_measures)]
fn oc_router_spans(x: u64) -> u64 {
    oc_pipe_spans(x)
}

#[inline(never)]
#[trace_layer(pipe, route = "/users/{id}", skip_measures)]
fn oc_pipe_spans(x: u64) -> u64 {
    oc_backend_spans(x)
}

#[inline(never)]
#[trace_layer(backend, route = "/users/{id}", skip_measures)]
fn oc_backend_spans(x: u64) -> u64 {
    black_box(outgoing());
    work(x)
}

#[inline(never)]
#[trace_layer(router, route = "/users/{id}")]
fn oc_router(req: &Request<()>, x: u64) -> u64 {
    let _ = req;
    oc_pipe(x)
}

#[inline(never)]
#[trace_layer(pipe, route = "/users/{id}")]
fn oc_pipe(x: u64) -> u64 {
    oc_backend(outgoing(), x)
}

#[inline(never)]
#[trace_layer(backend, route = "/users/{id}")]
fn oc_backend(req: Request<()>, x: u64) -> u64 {
    black_box(req);
    work(x)
}

#[inline(never)]
#[trace_layer(router, route = "/users/{id}", skip_measures)]
fn oc_router_http(req: &Request<()>, x: u64) -> u64 {
    let _ = req;
    oc_pipe_http(x)
}

#[inline(never)]
#[trace_layer(pipe, route = "/users/{id}", skip_measures)]
fn oc_pipe_http(x: u64) -> u64 {
    oc_backend_http(outgoing(), x)
}

#[inline(never)]
#[trace_layer(backend, route = "/users/{id}", skip_measures)]
fn oc_backend_http(req: Request<()>, x: u64) -> u64 {
    black_box(req);
    work(x)
}

// ---- fastrace --------------------------------------------------------------------------------------------

#[inline(never)]
fn fr_router(req: &Request<()>, x: u64) -> u64 {
    let _ = req;
    let root = fastrace::Span::root("/users/{id}", fastrace::collector::SpanContext::random());
    let _parent = root.set_local_parent();
    fr_pipe(x)
}

#[inline(never)]
#[fastrace::trace(name = "pipe-/users/{id}")]
fn fr_pipe(x: u64) -> u64 {
    fr_backend(outgoing(), x)
}

#[inline(never)]
#[fastrace::trace(name = "backend-/users/{id}")]
fn fr_backend(req: Request<()>, x: u64) -> u64 {
    black_box(req);
    work(x)
}

// ---- tracing (with either subscriber) --------------------------------------------------------------------

#[inline(never)]
#[tracing::instrument(name = "/users/{id}", skip_all)]
fn tr_router(req: &Request<()>, x: u64) -> u64 {
    let _ = req;
    tr_pipe(x)
}

#[inline(never)]
#[tracing::instrument(name = "pipe-/users/{id}", skip_all)]
fn tr_pipe(x: u64) -> u64 {
    tr_backend(outgoing(), x)
}

#[inline(never)]
#[tracing::instrument(name = "backend-/users/{id}", skip_all)]
fn tr_backend(req: Request<()>, x: u64) -> u64 {
    black_box(req);
    work(x)
}

// ---- the benches -----------------------------------------------------------------------------------------

fn request() -> Request<()> {
    Request::get("http://gateway.local/users/7").header("user-agent", "bench/1.0").body(()).expect("valid")
}

fn oclayer_tree(c: &mut Criterion<ThreadCpuTime>) {
    let req = request();
    let config = Config::builder().sample_rate(100).build().expect("a valid config");
    let telemetry = oclayer_discarding(config);
    let flush = oclayer_flush(&telemetry, "tree/oclayer");
    trace::set_sampler(Sampler::AlwaysOn);
    let dropped_before = trace::dropped_spans();
    c.bench_function("tree/oclayer_spans", |b| {
        b.iter_custom(|iters| chunked(&ThreadCpuTime, iters, || oc_router_spans(black_box(7)), &flush))
    });
    c.bench_function("tree/oclayer_http_spans", |b| {
        b.iter_custom(|iters| chunked(&ThreadCpuTime, iters, || oc_router_http(&req, black_box(7)), &flush))
    });
    c.bench_function("tree/oclayer", |b| {
        b.iter_custom(|iters| chunked(&ThreadCpuTime, iters, || oc_router(&req, black_box(7)), &flush))
    });
    // Expected 0: a chunk's spans fit the thread's ring, so these rows are the request path.
    eprintln!("tree/oclayer: spans dropped by the full queue: {}", trace::dropped_spans() - dropped_before);
    let dropped_before = trace::dropped_spans();
    c.bench_function("tree/oclayer_flooded", |b| b.iter(|| oc_router_spans(black_box(7))));
    eprintln!(
        "tree/oclayer_flooded: spans dropped by the full queue: {}",
        trace::dropped_spans() - dropped_before
    );
    trace::set_sampler(Sampler::AlwaysOff);
    // The flush borrows the pipeline: it goes first.
    drop(flush);
    drop(telemetry);
}

fn peer_trees(c: &mut Criterion<ThreadCpuTime>) {
    let req = request();
    peers::fastrace_discarding();
    c.bench_function("tree/fastrace", |b| {
        b.iter_custom(|iters| {
            chunked(&ThreadCpuTime, iters, || fr_router(&req, black_box(7)), fastrace::flush)
        })
    });
    c.bench_function("tree/fastrace_flooded", |b| b.iter(|| fr_router(&req, black_box(7))));

    {
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        c.bench_function("tree/tracing_registry", |b| b.iter(|| tr_router(&req, black_box(7))));
    }

    let provider = peers::otel_provider(opentelemetry_sdk::trace::Sampler::AlwaysOn);
    let force_flush = peers::otel_flush(&provider, "tree");
    {
        let _subscriber =
            tracing::subscriber::set_default(peers::tracing_opentelemetry_subscriber(&provider));
        c.bench_function("tree/tracing_opentelemetry", |b| {
            b.iter_custom(|iters| {
                chunked(&ThreadCpuTime, iters, || tr_router(&req, black_box(7)), &force_flush)
            })
        });
    }

    let tracer = peers::otel_tracer(&provider);
    let otel_tree = || {
        let _ = &req;
        tracer.in_span("/users/{id}", |_| {
            tracer.in_span("pipe-/users/{id}", |_| {
                tracer.in_span("backend-/users/{id}", |_| {
                    black_box(outgoing());
                    work(black_box(7))
                })
            })
        })
    };
    c.bench_function("tree/opentelemetry_sdk", |b| {
        b.iter_custom(|iters| chunked(&ThreadCpuTime, iters, otel_tree, &force_flush))
    });
    if let Err(error) = provider.shutdown() {
        eprintln!("tree: the OpenTelemetry provider did not shut down cleanly: {error}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = oclayer_tree, peer_trees
}
criterion_main!(benches);
