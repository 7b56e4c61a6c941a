//! The current span: which span new spans attach to and [`current_span`] returns.
//!
//! Each thread has one slot holding its current span. Synchronous code sets it for a scope with
//! [`Span::enter`]; async code wraps a future in [`Instrumented`](super::Instrumented), which swaps its
//! span into the slot for the duration of each poll and back out afterwards, so the span follows the future
//! across `.await`s, threads and executors. Nothing here allocates or locks.

use std::borrow::Cow;
use std::cell::RefCell;
use std::marker::PhantomData;

use super::{AttributeValue, Link, MessageEventKind, Span, SpanContext, StatusCode};

thread_local! {
    static CURRENT: RefCell<Span> = const { RefCell::new(Span::NONE) };
}

/// The current span, to record into: costs nothing until used, then one thread-local read per call.
///
/// ```
/// oclayer_runtime::current_span().set_attribute("user.tier", "gold");
/// ```
#[inline]
pub fn current_span() -> CurrentSpan {
    CurrentSpan { _private: () }
}

/// Calls `f` with the current span (or [`Span::NONE`]), without cloning it.
#[inline(always)]
pub(crate) fn with_current<R>(f: impl FnOnce(&Span) -> R) -> R {
    let mut f = Some(f);
    let from_slot = CURRENT.try_with(|current| match current.try_borrow() {
        Ok(span) => f.take().map(|f| f(&span)),
        // Only `swap_current` borrows mutably, and it runs no other code meanwhile.
        Err(_) => None,
    });
    match (from_slot, f) {
        (Ok(Some(result)), _) => result,
        // The thread's locals are being torn down, so there is no current span any more.
        (_, Some(f)) => f(&Span::NONE),
        (_, None) => unreachable!("the closure ran, so it returned a result"),
    }
}

/// Exchanges `span` with the thread's current span. False when nothing changed: the thread's locals are
/// gone (during thread teardown), or the slot is in use by `with_current` further up this thread's stack
/// (a conversion run by [`CurrentSpan`] entering a span).
#[inline]
fn swap_current(span: &mut Span) -> bool {
    CURRENT
        .try_with(|current| match current.try_borrow_mut() {
            Ok(mut current) => {
                std::mem::swap(&mut *current, span);
                true
            }
            Err(_) => false,
        })
        .unwrap_or(false)
}

/// The current span, whichever it is when a method is called; made by [`current_span`].
///
/// It holds nothing: each method looks the span up in the calling thread's slot, so it acts on the span of
/// the code calling it (inside an instrumented future, that future's span, on whichever thread polls it).
/// To keep a particular span, or hand it to other code, take an owned handle with [`CurrentSpan::span`].
/// Outside any span, or when the span is not sampled, the recording methods do nothing.
#[derive(Clone, Copy, Debug)]
pub struct CurrentSpan {
    _private: (),
}

impl CurrentSpan {
    /// An owned handle to the span current now (a clone; [`Span::NONE`] outside any).
    #[inline]
    pub fn span(&self) -> Span {
        Span::current()
    }

    /// Whether there is a current span and it is sampled: check it before computing an expensive value.
    #[inline]
    pub fn is_sampled(&self) -> bool {
        with_current(Span::is_sampled)
    }

    /// Whether there is a current span.
    #[inline]
    pub fn is_valid(&self) -> bool {
        with_current(Span::is_valid)
    }

    /// The current span's ids, sampled flag and tracestate ([`SpanContext::INVALID`] outside any).
    #[inline]
    pub fn span_context(&self) -> SpanContext {
        with_current(Span::span_context)
    }

    /// [`Span::set_attribute`] on the current span.
    #[inline]
    pub fn set_attribute(&self, key: impl Into<Cow<'static, str>>, value: impl Into<AttributeValue>) {
        with_current(|span| span.set_attribute(key, value));
    }

    /// [`Span::add_annotation`] on the current span.
    #[inline]
    pub fn add_annotation(&self, description: impl Into<Cow<'static, str>>) {
        with_current(|span| span.add_annotation(description));
    }

    /// [`Span::add_annotation_with_attributes`] on the current span.
    pub fn add_annotation_with_attributes<K, V>(
        &self,
        description: impl Into<Cow<'static, str>>,
        attributes: impl IntoIterator<Item = (K, V)>,
    ) where
        K: Into<Cow<'static, str>>,
        V: Into<AttributeValue>,
    {
        with_current(|span| span.add_annotation_with_attributes(description, attributes));
    }

    /// [`Span::add_message_event`] on the current span.
    #[inline]
    pub fn add_message_event(
        &self,
        kind: MessageEventKind,
        id: u64,
        uncompressed_size: u64,
        compressed_size: u64,
    ) {
        with_current(|span| span.add_message_event(kind, id, uncompressed_size, compressed_size));
    }

    /// [`Span::add_link`] on the current span.
    pub fn add_link(&self, link: Link) {
        with_current(|span| span.add_link(link));
    }

    /// [`Span::set_status`] on the current span.
    #[inline]
    pub fn set_status(&self, code: StatusCode, message: impl Into<Cow<'static, str>>) {
        with_current(|span| span.set_status(code, message));
    }

    /// [`Span::update_name`] on the current span.
    #[inline]
    pub fn update_name(&self, name: impl Into<Cow<'static, str>>) {
        with_current(|span| span.update_name(name));
    }
}

/// Keeps a span current on this thread until dropped; made by [`Span::enter`]. Not `Send`: it restores
/// the previous span of the thread it was made on.
#[must_use = "the span stops being current when the guard is dropped"]
pub struct Entered {
    /// While entered: the span that was current before, restored on drop.
    previous: Span,
    swapped: bool,
    _not_send: PhantomData<*const ()>,
}

impl Entered {
    pub(crate) fn new(span: Span) -> Entered {
        let mut previous = span;
        let swapped = swap_current(&mut previous);
        Entered { previous, swapped, _not_send: PhantomData }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if self.swapped {
            // `previous` now holds the entered span again; it is dropped with the guard, after the borrow
            // of the slot has ended (dropping it may end the span).
            swap_current(&mut self.previous);
        }
    }
}

impl std::fmt::Debug for Entered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entered").finish_non_exhaustive()
    }
}

/// Makes a span current for the duration of one poll: swaps it into the slot, and back out on drop (also
/// when the poll panics). Used by [`Instrumented`](super::Instrumented), whose span sits in a pinned
/// field, so no reference count changes per poll.
pub(crate) struct PollScope<'a> {
    slot: &'a mut Span,
    swapped: bool,
}

impl<'a> PollScope<'a> {
    #[inline]
    pub(crate) fn new(slot: &'a mut Span) -> PollScope<'a> {
        let swapped = swap_current(slot);
        PollScope { slot, swapped }
    }
}

impl Drop for PollScope<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.swapped {
            swap_current(self.slot);
        }
    }
}
