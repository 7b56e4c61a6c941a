//! The hot-path promise: a disabled layer and an unsampled request allocate nothing.
//!
//! A counting global allocator counts the allocations (and frees) made by the calling thread while a
//! closure runs; each case runs once first, untimed and uncounted, so that one-time per-thread setup (the
//! id generator's seed, the current-span slot's registration) is not mistaken for a per-call cost. This
//! file is its own test binary, so no other test's allocations are ever counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::{HeaderMap, HeaderValue};
use oclayer_runtime::layer::Layer;
use oclayer_runtime::trace::{
    self, FutureExt, Parent, Sampler, Span, SpanBuilder, SpanContext, SpanKind, StatusCode, propagation,
};

struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let _ = COUNT.try_with(|count| count.set(count.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only const-initialised
// thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` has too.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        // SAFETY: `ptr` came from `System` through this allocator, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `case` once to warm up, then again counting this thread's allocations and frees.
fn allocations(mut case: impl FnMut()) -> usize {
    case();
    COUNT.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    case();
    COUNTING.with(|counting| counting.set(false));
    COUNT.with(Cell::get)
}

#[test]
fn the_counter_sees_allocations() {
    // Without this, a broken counter would make every other test pass.
    assert!(allocations(|| drop(std::hint::black_box(Box::new(1u8)))) >= 1);
    assert!(allocations(|| drop(std::hint::black_box(String::from("x")))) >= 1);
}

#[test]
fn disabled_layer_check_allocates_nothing() {
    assert_eq!(allocations(|| assert!(!std::hint::black_box(Layer::Router).is_enabled())), 0);
}

#[test]
fn unsampled_root_allocates_nothing() {
    let count = allocations(|| {
        let span = SpanBuilder::new("/users/{id}")
            .kind(SpanKind::Server)
            .parent(Parent::Root)
            .sampler(Sampler::AlwaysOff)
            .start();
        assert!(!span.is_sampled() && span.is_valid());
        span.set_attribute("http.method", "GET");
        span.set_attribute("http.status_code", 200);
        span.add_annotation("note");
        span.set_status(StatusCode::NotFound, StatusCode::NotFound.name());
        span.end();
    });
    assert_eq!(count, 0);
}

#[test]
fn unsampled_decision_of_the_global_sampler_allocates_nothing() {
    // The one test here that uses the process-wide sampler: a probability that never samples in practice,
    // so the decision really compares the trace id, as `sample_rate` between 1 and 99 does.
    trace::set_sampler(Sampler::Probability(1e-15));
    let count = allocations(|| {
        let span = trace::start_span("/users/{id}", SpanKind::Server);
        assert!(!span.is_sampled());
        span.end();
    });
    assert_eq!(count, 0);
}

#[test]
fn unsampled_children_and_the_current_span_allocate_nothing() {
    let root = SpanBuilder::new("router").parent(Parent::Root).sampler(Sampler::AlwaysOff).start();
    let count = allocations(|| {
        let _entered = root.enter();
        let current = oclayer_runtime::current_span();
        assert!(current.is_valid() && !current.is_sampled());
        current.set_attribute("user.tier", "gold");
        let _context = current.span_context();
        let pipe = trace::start_span("pipe-/users", SpanKind::Unspecified);
        {
            let _pipe = pipe.enter();
            let backend = trace::start_span("backend-/users", SpanKind::Client);
            backend.end();
        }
        let owned = Span::current();
        drop(owned);
        pipe.end();
    });
    assert_eq!(count, 0);
}

#[test]
fn child_of_an_unsampled_remote_parent_allocates_nothing() {
    let remote = SpanContext {
        sampled: false,
        ..SpanBuilder::new("upstream").parent(Parent::Root).start().span_context()
    };
    let count = allocations(|| {
        let span = SpanBuilder::new("router")
            .parent(Parent::Remote(remote.clone()))
            .sampler(Sampler::AlwaysParent)
            .start();
        assert!(!span.is_sampled());
        span.end();
    });
    assert_eq!(count, 0);
}

#[test]
fn extracting_a_traceparent_allocates_nothing() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "traceparent",
        HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"),
    );
    let count = allocations(|| {
        let context = propagation::extract(&headers);
        assert!(context.is_some_and(|c| !c.sampled));
    });
    assert_eq!(count, 0);
}

#[test]
fn polling_an_unsampled_instrumented_future_allocates_nothing() {
    let count = allocations(|| {
        let span = SpanBuilder::new("async").parent(Parent::Root).sampler(Sampler::AlwaysOff).start();
        let mut future = pin!(async { oclayer_runtime::current_span().is_valid() }.instrument(span));
        let polled = future.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert_eq!(polled, Poll::Ready(true));
    });
    assert_eq!(count, 0);
}
