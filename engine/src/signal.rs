//! A one-shot flag that a wgpu callback sets and async code awaits.
//!
//! wgpu reports a finished submission or a mapped buffer through callbacks. Natively they run
//! inside `Device::poll`, which the waiting side calls first; in a browser they run from the
//! JavaScript event loop, which only turns while the page's async code is suspended in an
//! `await`. Awaiting a `Signal` serves both, so the same training loop runs in either.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct State {
    /// Some(success) once the callback has run.
    value: Option<bool>,
    waker: Option<Waker>,
}

#[derive(Clone, Default)]
pub(crate) struct Signal(Arc<Mutex<State>>);

impl Signal {
    /// Called from the wgpu callback.
    pub(crate) fn set(&self, ok: bool) {
        let mut state = self.0.lock().unwrap();
        state.value = Some(ok);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    /// The callback's result if it has run, clearing it for the next use.
    pub(crate) fn take(&self) -> Option<bool> {
        self.0.lock().unwrap().value.take()
    }

    /// Resolves to the callback's result once it has run (clearing it).
    pub(crate) fn wait(&self) -> impl Future<Output = bool> + '_ {
        Wait(self)
    }
}

struct Wait<'a>(&'a Signal);

impl Future for Wait<'_> {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut state = (self.0).0.lock().unwrap();
        match state.value.take() {
            Some(ok) => Poll::Ready(ok),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
