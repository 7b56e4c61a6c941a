//! The current span: which span new spans attach to and [`current_span`] returns.
//!
//! Each thread has one slot holding its current span. Synchronous code sets it for a scope with
//! [`Span::enter`]; async code wraps a future in [`Instrumented`](super::Instrumented), which swaps its
//! span into the slot for the duration of each poll and back out afterwards, so the span follows the future
//! across `.await`s, threads and executors. Nothing here allocates or locks.

use std::cell::RefCell;
use std::marker::PhantomData;

use super::Span;

thread_local! {
    static CURRENT: RefCell<Span> = const { RefCell::new(Span::NONE) };
}

/// The current span, or [`Span::NONE`] outside any. Cheap: a copy of the context, plus a reference count
/// increment when the span is sampled.
///
/// ```
/// oclayer_runtime::current_span().set_attribute("user.tier", "gold");
/// ```
#[inline]
pub fn current_span() -> Span {
    CURRENT.try_with(|current| current.borrow().clone()).unwrap_or(Span::NONE)
}

/// Calls `f` with the current span, without cloning it.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(&Span) -> R) -> R {
    let mut f = Some(f);
    let from_slot = CURRENT.try_with(|current| f.take().map(|f| f(&current.borrow())));
    match (from_slot, f) {
        (Ok(Some(result)), _) => result,
        // The thread's locals are being torn down, so there is no current span any more.
        (_, Some(f)) => f(&Span::NONE),
        (_, None) => unreachable!("`try_with` ran the closure, which returned a result"),
    }
}

/// Exchanges `span` with the thread's current span. False when the thread's locals are gone (during thread
/// teardown), in which case nothing changed.
#[inline]
fn swap_current(span: &mut Span) -> bool {
    CURRENT.try_with(|current| std::mem::swap(&mut *current.borrow_mut(), span)).is_ok()
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
