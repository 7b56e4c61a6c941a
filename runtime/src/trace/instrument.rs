//! Spans for futures: the current span follows a future across `.await`, whatever the executor.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::context::PollScope;
use super::span::{self, Span};

pin_project! {
    /// A future that runs inside a span: the span is current during each poll of the inner future, on
    /// whichever thread polls it. Made by [`FutureExt`].
    ///
    /// Made by [`FutureExt::instrument`], it also ends the span: when the inner future completes, or, if it
    /// is dropped before completing (a client hung up, a timeout fired, a `select!` lost), with status
    /// `CANCELLED`.
    #[must_use = "futures do nothing unless polled"]
    pub struct Instrumented<F> {
        #[pin]
        inner: F,
        span: Span,
        ends_span: bool,
        completed: bool,
    }

    impl<F> PinnedDrop for Instrumented<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.ends_span && !*this.completed {
                span::cancel(this.span);
            }
        }
    }
}

impl<F> Instrumented<F> {
    /// The span the future runs in.
    pub fn span(&self) -> &Span {
        &self.span
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = {
            let _scope = PollScope::new(this.span);
            this.inner.poll(cx)
        };
        if output.is_ready() {
            *this.completed = true;
            if *this.ends_span {
                this.span.end();
            }
        }
        output
    }
}

/// Runs futures inside spans. Implemented for every future; import it as `oclayer::trace::FutureExt`.
///
/// ```
/// use oclayer_runtime::trace::{FutureExt, SpanKind, start_span};
/// # async fn fetch() {}
/// # async fn example() {
/// // The span is the future's: it ends when `fetch` completes, or CANCELLED if dropped first.
/// fetch().instrument(start_span("backend-/users", SpanKind::Client)).await;
/// // Carry the caller's span into a spawned task, so the task's spans become its children.
/// # let spawn = |f| f;
/// spawn(async { fetch().await }.in_current_span());
/// # }
/// ```
pub trait FutureExt: Future + Sized {
    /// Runs this future inside `span` and ends the span when the future completes, or with status
    /// `CANCELLED` when it is dropped before completing.
    fn instrument(self, span: Span) -> Instrumented<Self> {
        Instrumented { inner: self, span, ends_span: true, completed: false }
    }

    /// Runs this future inside `span` without ending it: for carrying context (the span ends elsewhere, or
    /// when its last handle is dropped).
    fn in_span(self, span: Span) -> Instrumented<Self> {
        Instrumented { inner: self, span, ends_span: false, completed: false }
    }

    /// Runs this future inside the span current now (e.g. before `tokio::spawn`), without ending it.
    fn in_current_span(self) -> Instrumented<Self> {
        self.in_span(Span::current())
    }
}

impl<F: Future> FutureExt for F {}
