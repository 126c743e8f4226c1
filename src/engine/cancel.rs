//! Cancellation shared between a request's waiter and the engine working on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set once, by whoever no longer wants the answer; read by the engine between steps.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Cancels its token when dropped. The waiting side holds it, so a request whose waiter
/// is gone (timed out, dropped, disconnected) stops being worked on.
#[derive(Debug)]
pub struct CancelOnDrop(pub CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}
