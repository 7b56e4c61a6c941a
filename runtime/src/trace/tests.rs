//! Span, context and instrumentation behaviour. These tests never touch the process-wide sampler or
//! pipeline (they pass a per-span sampler), so they run in parallel with everything else; the pipeline is
//! tested in `runtime/tests/trace_pipeline.rs`.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::limits::{MAX_ANNOTATIONS, MAX_ATTRIBUTES, MAX_LINKS, MAX_MESSAGE_EVENTS, MAX_STRING_BYTES};
use super::*;

fn sampled(name: &'static str) -> SpanBuilder {
    SpanBuilder::new(name).sampler(Sampler::AlwaysOn)
}

fn sampled_root(name: &'static str) -> Span {
    sampled(name).parent(Parent::Root).start()
}

fn exported(span: &Span) -> SpanData {
    span.take_data_for_test().expect("the span is sampled")
}

/// Polls `future` once with a waker that does nothing: enough to drive the hand-written futures below.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// A future that is pending on its first poll and ready on the second, recording the current span's id
/// at each poll.
struct TwoPolls {
    seen: Vec<SpanId>,
}

impl Future for TwoPolls {
    type Output = Vec<SpanId>;

    fn poll(mut self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Vec<SpanId>> {
        self.seen.push(current_span().span_context().span_id);
        if self.seen.len() == 2 { Poll::Ready(std::mem::take(&mut self.seen)) } else { Poll::Pending }
    }
}

#[test]
fn unsampled_root_has_a_context_and_records_nothing() {
    let span = SpanBuilder::new("root").parent(Parent::Root).sampler(Sampler::AlwaysOff).start();
    assert!(!span.is_sampled());
    let context = span.span_context();
    assert!(context.is_valid() && !context.sampled && context.tracestate.is_empty());
    span.set_attribute("k", "v");
    span.add_annotation("note");
    span.set_status(StatusCode::Internal, "boom");
    span.end();
    assert_eq!(span.take_data_for_test(), None);
}

#[test]
fn sampled_root_records_what_is_set() {
    let span = sampled("root").kind(SpanKind::Server).parent(Parent::Root).start();
    assert!(span.is_sampled());
    span.set_attribute("http.method", "GET");
    span.set_attribute("http.status_code", 200);
    span.set_attribute("canceled", false);
    span.set_attribute("ratio", 0.5);
    span.set_attribute("http.method", String::from("POST"));
    span.add_annotation_with_attributes("retry", [("attempt", 2)]);
    span.add_message_event(MessageEventKind::Sent, 1, 100, 40);
    span.add_link(Link {
        trace_id: TraceId::random(),
        span_id: SpanId::random(),
        kind: LinkKind::ParentLinkedSpan,
        attributes: Attributes::default(),
    });
    span.set_status(StatusCode::NotFound, "NOT_FOUND");
    span.update_name("/users/{id}");
    span.end();
    assert!(span.is_ended_for_test());

    let data = exported(&span);
    assert_eq!(data.name, "/users/{id}");
    assert_eq!(data.kind, SpanKind::Server);
    assert_eq!(data.parent_span_id, None);
    assert_eq!(data.same_process_as_parent_span, None, "a root has no parent");
    assert_eq!(
        data.attributes.entries,
        vec![
            ("http.method".into(), AttributeValue::String("POST".into())),
            ("http.status_code".into(), AttributeValue::Int(200)),
            ("canceled".into(), AttributeValue::Bool(false)),
            ("ratio".into(), AttributeValue::Double(0.5)),
        ],
        "a repeated key replaces the value in place"
    );
    assert_eq!(data.time_events.len(), 2);
    assert!(matches!(
        &data.time_events[0].kind,
        TimeEventKind::Annotation { description, attributes }
            if description == "retry" && attributes.entries == vec![("attempt".into(), AttributeValue::Int(2))]
    ));
    assert!(matches!(
        data.time_events[1].kind,
        TimeEventKind::MessageEvent {
            kind: MessageEventKind::Sent,
            id: 1,
            uncompressed_size: 100,
            compressed_size: 40
        }
    ));
    assert!(data.time_events.iter().all(|e| e.time >= data.start_time && e.time <= data.end_time));
    assert_eq!(data.links.len(), 1);
    assert_eq!(data.status, Status { code: StatusCode::NotFound, message: "NOT_FOUND".into() });
    assert!(data.end_time >= data.start_time);
}

#[test]
fn a_span_takes_the_clock_readings_it_is_given() {
    // A layer reads the clock once for its span and its latency: the span's duration is exactly the
    // difference of the two readings, and its end is its start plus that duration.
    let start = crate::clock::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let end = crate::clock::Instant::now();
    let span = sampled("given-times").parent(Parent::Root).start_at(start);
    // `end_at` takes a handle (the layers give theirs up): keep one to read the span back.
    span.clone().end_at(end);
    span.clone().end_at(crate::clock::Instant::now());
    let data = exported(&span);
    assert_eq!(data.duration(), end.duration_since(start), "the first end wins, with its reading");
    assert!(data.duration() > std::time::Duration::ZERO);

    // Readings in the wrong order (another core's counter a little behind): zero, never negative.
    let backwards = sampled("given-times-backwards").parent(Parent::Root).start_at(end);
    backwards.clone().end_at(start);
    let data = exported(&backwards);
    assert_eq!(data.end_time, data.start_time);
}

#[test]
fn an_ended_span_ignores_further_recording() {
    let span = sampled_root("root");
    span.set_attribute("before", true);
    span.end();
    span.set_attribute("after", true);
    span.set_status(StatusCode::Internal, "late");
    span.end();
    let data = exported(&span);
    assert_eq!(data.attributes.entries.len(), 1);
    assert_eq!(data.status.code, StatusCode::Ok, "a span whose status is never set ends Ok");
}

#[test]
fn limits_drop_and_count() {
    let span = sampled_root("root");
    for i in 0..MAX_ATTRIBUTES + 5 {
        span.set_attribute(format!("key{i}"), i as i64);
    }
    span.set_attribute("key0", "replaced even when full");
    for _ in 0..MAX_ANNOTATIONS + 3 {
        span.add_annotation("note");
    }
    for i in 0..MAX_MESSAGE_EVENTS + 4 {
        span.add_message_event(MessageEventKind::Received, i as u64, 1, 0);
    }
    for _ in 0..MAX_LINKS + 2 {
        span.add_link(Link {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            kind: LinkKind::Unspecified,
            attributes: Attributes::default(),
        });
    }
    span.set_attribute("long", "x".repeat(MAX_STRING_BYTES * 2));
    span.end();

    let data = exported(&span);
    assert_eq!(data.attributes.entries.len(), MAX_ATTRIBUTES);
    assert_eq!(data.attributes.dropped, 6, "5 extra keys and the long one");
    assert_eq!(data.attributes.entries[0].1, AttributeValue::String("replaced even when full".into()));
    assert_eq!(data.dropped_annotations, 3);
    assert_eq!(data.dropped_message_events, 4);
    assert_eq!(data.time_events.len(), MAX_ANNOTATIONS + MAX_MESSAGE_EVENTS);
    assert_eq!(data.links.len(), MAX_LINKS);
    assert_eq!(data.dropped_links, 2);
}

#[test]
fn long_strings_are_truncated() {
    let span = sampled_root("root");
    span.set_attribute("body", "é".repeat(MAX_STRING_BYTES));
    span.add_annotation("a".repeat(MAX_STRING_BYTES + 1));
    span.end();
    let data = exported(&span);
    let AttributeValue::String(body) = &data.attributes.entries[0].1 else { panic!("a string attribute") };
    assert_eq!(body.len(), MAX_STRING_BYTES);
    let TimeEventKind::Annotation { description, .. } = &data.time_events[0].kind else {
        panic!("an annotation")
    };
    assert_eq!(description.len(), MAX_STRING_BYTES);
}

#[test]
fn local_child_follows_its_parent() {
    let parent = sampled_root("parent");
    let child = SpanBuilder::new("child").parent(Parent::Local(parent.clone())).start();
    let grandchild = SpanBuilder::new("grandchild").parent(Parent::Local(child.clone())).start();
    assert!(child.is_sampled() && grandchild.is_sampled(), "sampled because the parent is");

    let (p, c) = (parent.span_context(), child.span_context());
    assert_eq!(c.trace_id, p.trace_id);
    assert_ne!(c.span_id, p.span_id);
    grandchild.end();
    child.end();
    parent.end();
    let child_data = exported(&child);
    assert_eq!(child_data.parent_span_id, Some(p.span_id));
    assert_eq!(child_data.same_process_as_parent_span, Some(true));
    assert_eq!(child_data.child_span_count, 1);
    assert_eq!(exported(&parent).child_span_count, 1);

    let unsampled = SpanBuilder::new("p").parent(Parent::Root).sampler(Sampler::AlwaysOff).start();
    let child = SpanBuilder::new("c").parent(Parent::Local(unsampled.clone())).start();
    assert!(!child.is_sampled(), "an unsampled parent's children are unsampled");
    assert_eq!(child.span_context().trace_id, unsampled.span_context().trace_id, "but in the same trace");
}

#[test]
fn clones_record_from_other_threads_and_the_last_handle_keeps_recording_alone() {
    // The handle alone records with plain stores; clones on other threads take the lock. Whatever they
    // recorded before dropping their clones must be there for the handle that is alone again.
    const THREADS: usize = 4;
    const CHILDREN_EACH: u32 = 500;
    let span = sampled_root("shared");
    span.set_attribute("before", true);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let clone = span.clone();
            scope.spawn(move || {
                for _ in 0..CHILDREN_EACH {
                    SpanBuilder::new("child").parent(Parent::Local(clone.clone())).start().end();
                }
                clone.set_attribute(format!("thread.{thread}"), i64::try_from(thread).expect("small"));
            });
        }
        for _ in 0..CHILDREN_EACH {
            // Counted under the lock, or alone once every clone is gone.
            SpanBuilder::new("child").parent(Parent::Local(span.clone())).start().end();
        }
    });
    span.set_attribute("after", true);
    // Current through `in_span`, which moves the handle into the thread's slot: the children are counted
    // by the handle alone.
    let current_children = async {
        for _ in 0..CHILDREN_EACH {
            start_span("child", SpanKind::Unspecified).end();
        }
    };
    let mut in_span = pin!(current_children.in_span(span));
    assert!(poll_once(in_span.as_mut()).is_ready());
    let span = in_span.span().clone();
    span.end();
    let data = exported(&span);
    let mut keys: Vec<&str> = data.attributes.entries.iter().map(|(key, _)| key.as_ref()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["after", "before", "thread.0", "thread.1", "thread.2", "thread.3"]);
    assert_eq!(data.child_span_count, CHILDREN_EACH * (THREADS as u32 + 2), "no count lost");
}

#[test]
fn per_span_sampler_overrides_a_local_parent() {
    let unsampled = SpanBuilder::new("p").parent(Parent::Root).sampler(Sampler::AlwaysOff).start();
    let parent = unsampled.span_context();
    let forced = sampled("forced").parent(Parent::Local(unsampled)).start();
    assert!(forced.is_sampled());
    forced.end();
    let data = exported(&forced);
    assert_eq!(data.context.trace_id, parent.trace_id, "in the unsampled parent's trace");
    assert_eq!(data.parent_span_id, Some(parent.span_id));
    assert_ne!(data.context.span_id, parent.span_id);
}

#[test]
fn an_unsampled_span_has_the_same_valid_ids_wherever_they_are_read() {
    // Its ids are derived when asked: every read, clone and child must agree on them.
    let root = SpanBuilder::new("root").parent(Parent::Root).sampler(Sampler::AlwaysOff).start();
    let context = root.span_context();
    assert!(context.is_valid() && !context.sampled && root.is_valid());
    assert_eq!(root.clone().span_context(), context);
    assert_eq!(root.span_context(), context, "read twice");
    let debug = format!("{root:?}");
    assert!(debug.contains(&context.trace_id.to_string()) && debug.contains(&context.span_id.to_string()));

    let child = SpanBuilder::new("child").parent(Parent::Local(root.clone())).start();
    let grandchild = {
        let _entered = child.enter();
        assert_eq!(current_span().span_context(), child.span_context());
        SpanBuilder::new("grandchild").start()
    };
    let (c, g) = (child.span_context(), grandchild.span_context());
    assert_eq!((c.trace_id, g.trace_id), (context.trace_id, context.trace_id));
    assert!(c.span_id != context.span_id && g.span_id != c.span_id && g.span_id != context.span_id);
    assert!(c.is_valid() && g.is_valid() && !c.sampled && !g.sampled);

    // Another root starts another trace.
    let other = SpanBuilder::new("other").parent(Parent::Root).sampler(Sampler::AlwaysOff).start();
    assert_ne!(other.span_context().trace_id, context.trace_id);
}

#[test]
fn remote_parent_is_honoured() {
    let remote = SpanContext {
        trace_id: TraceId::random(),
        span_id: SpanId::random(),
        sampled: true,
        tracestate: TraceState::from_entries(vec![("vendor".into(), "value".into())]),
    };
    let child = SpanBuilder::new("server")
        .parent(Parent::Remote(remote.clone()))
        .sampler(Sampler::AlwaysParent)
        .start();
    assert!(child.is_sampled(), "the remote parent's sampled flag is honoured");
    let context = child.span_context();
    assert_eq!(context.trace_id, remote.trace_id);
    assert_eq!(context.tracestate, remote.tracestate, "tracestate is passed on");
    child.end();
    let data = exported(&child);
    assert_eq!(data.parent_span_id, Some(remote.span_id));
    assert_eq!(data.same_process_as_parent_span, Some(false));

    let unsampled_remote = SpanContext { sampled: false, ..remote.clone() };
    let child = SpanBuilder::new("server")
        .parent(Parent::Remote(unsampled_remote))
        .sampler(Sampler::AlwaysParent)
        .start();
    assert!(!child.is_sampled());

    let invalid = SpanContext { trace_id: TraceId::INVALID, ..remote };
    let root = sampled("server").parent(Parent::Remote(invalid)).start();
    root.end();
    let data = exported(&root);
    assert_eq!(data.parent_span_id, None, "an invalid remote parent gives a root");
    assert_eq!(data.same_process_as_parent_span, None);
}

#[test]
fn entered_span_is_current_and_parents_new_spans() {
    assert!(!current_span().is_valid(), "no span outside any");
    let outer = sampled_root("outer");
    {
        let _outer = outer.enter();
        assert_eq!(current_span().span_context(), outer.span_context());
        let inner = start_span("inner", SpanKind::Client);
        assert_eq!(inner.span_context().trace_id, outer.span_context().trace_id);
        {
            let _inner = inner.enter();
            assert_eq!(current_span().span_context(), inner.span_context());
            Span::NONE
                .in_scope(|| assert!(!current_span().is_valid(), "entering NONE clears the current span"));
            current_span().set_attribute("via", "current");
        }
        assert_eq!(current_span().span_context(), outer.span_context(), "leaving restores the outer span");
        inner.end();
        let inner_data = exported(&inner);
        assert_eq!(inner_data.parent_span_id, Some(outer.span_context().span_id));
        assert_eq!(inner_data.attributes.entries, vec![("via".into(), AttributeValue::from("current"))]);
    }
    assert!(!current_span().is_valid());
}

#[test]
fn spans_on_other_threads_do_not_see_this_threads_span() {
    let span = sampled_root("here");
    let _entered = span.enter();
    let seen = std::thread::spawn(|| current_span().is_valid()).join().expect("thread panicked");
    assert!(!seen);
}

#[test]
fn instrumented_future_sees_its_span_on_every_poll_and_ends_it() {
    let span = sampled_root("async");
    let mut future = pin!(TwoPolls { seen: Vec::new() }.instrument(span.clone()));
    assert!(poll_once(future.as_mut()).is_pending());
    assert!(!current_span().is_valid(), "between polls the span is not current");
    assert!(!span.is_ended_for_test());
    let Poll::Ready(seen) = poll_once(future.as_mut()) else { panic!("ready on the second poll") };
    let id = span.span_context().span_id;
    assert_eq!(seen, vec![id, id]);
    assert!(span.is_ended_for_test(), "completion ends the span");
    assert_eq!(exported(&span).status.code, StatusCode::Ok);
}

#[test]
fn instrumented_future_follows_the_span_across_threads() {
    let span = sampled_root("moving");
    let mut future = Box::pin(TwoPolls { seen: Vec::new() }.instrument(span.clone()));
    assert!(poll_once(future.as_mut()).is_pending());
    let seen = std::thread::spawn(move || match poll_once(future.as_mut()) {
        Poll::Ready(seen) => seen,
        Poll::Pending => panic!("ready on the second poll"),
    })
    .join()
    .expect("thread panicked");
    let id = span.span_context().span_id;
    assert_eq!(seen, vec![id, id], "polled on two threads, current on both");
}

#[test]
fn dropping_an_unfinished_instrumented_future_cancels_its_span() {
    let span = sampled_root("cancelled");
    let mut future = Box::pin(TwoPolls { seen: Vec::new() }.instrument(span.clone()));
    assert!(poll_once(future.as_mut()).is_pending());
    drop(future);
    assert!(span.is_ended_for_test());
    assert_eq!(exported(&span).status, Status { code: StatusCode::Cancelled, message: "CANCELLED".into() });
}

#[test]
fn carrying_context_does_not_end_the_span() {
    let span = sampled_root("carried");
    let _entered = span.enter();
    let mut future = Box::pin(TwoPolls { seen: Vec::new() }.in_current_span());
    assert!(poll_once(future.as_mut()).is_pending());
    drop(future);
    assert!(!span.is_ended_for_test(), "in_current_span only carries the context");

    let mut future = pin!(std::future::ready(()).in_span(span.clone()));
    assert!(poll_once(future.as_mut()).is_ready());
    assert!(!span.is_ended_for_test());
}

#[test]
fn nested_instrumented_futures_are_parent_and_child() {
    let outer = sampled_root("outer");
    let outer_id = outer.span_context().span_id;
    let mut future = pin!(
        async {
            let inner = start_span("inner", SpanKind::Unspecified);
            let inner_for_check = inner.clone();
            async { current_span().span_context().span_id }.instrument(inner).await;
            inner_for_check
        }
        .instrument(outer.clone())
    );
    let Poll::Ready(inner) = poll_once(future.as_mut()) else { panic!("nothing to wait for") };
    let inner_data = exported(&inner);
    assert_eq!(inner_data.parent_span_id, Some(outer_id));
    assert!(outer.is_ended_for_test());
    assert_eq!(exported(&outer).child_span_count, 1);
}

#[test]
fn a_panicking_poll_restores_the_current_span() {
    let span = sampled_root("panics");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut future = pin!(async { panic!("handler bug") }.instrument(span.clone()));
        let _ = poll_once(future.as_mut());
    }));
    assert!(outcome.is_err());
    assert!(!current_span().is_valid(), "the span did not stay current after the panic");
}
