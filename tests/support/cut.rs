//! A crash at an await point, for the crash-injection tests: [`CutAfter`] drops the wrapped
//! future after it has returned Pending `budget` times, as a killed process stops there.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Resolves to `Some(output)` when the inner future completes within its budget of Pending
/// polls, else to `None` at the poll that exceeds it (the inner future is dropped there).
pub struct CutAfter<F> {
    inner: Pin<Box<F>>,
    budget: usize,
}

impl<F> CutAfter<F> {
    pub fn new(inner: F, budget: usize) -> Self {
        CutAfter {
            inner: Box::pin(inner),
            budget,
        }
    }
}

impl<F: Future> Future for CutAfter<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending if self.budget == 0 => Poll::Ready(None),
            Poll::Pending => {
                self.budget -= 1;
                Poll::Pending
            }
        }
    }
}

/// Runs `f` to completion and counts how many times it returned Pending: the number of await
/// points a [`CutAfter`] budget can fall on.
pub async fn count_pending<F: Future>(f: F) -> (F::Output, usize) {
    let mut f = Box::pin(f);
    let mut pending = 0usize;
    let out = std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(v),
        Poll::Pending => {
            pending += 1;
            Poll::Pending
        }
    })
    .await;
    (out, pending)
}
