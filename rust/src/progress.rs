//! Progress and cancellation for long passes.
//!
//! The work bumps an atomic counter once per chunk (thousands of items), and
//! checks a cancellation flag at the same place; a watcher thread — in the
//! bindings, the Python thread that made the call — reads the counter every
//! ~100 ms to draw a progress bar and sets the flag on Ctrl-C. Relaxed
//! atomics once per chunk cost nothing measurable.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Shared between the working threads and one watcher.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    cancelled: AtomicBool,
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a pass of `total` units (resets the count).
    pub fn start(&self, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// Adds `n` finished units; `Err(Interrupted)` once cancelled.
    #[inline]
    pub fn advance(&self, n: u64) -> Result<()> {
        self.done.fetch_add(n, Ordering::Relaxed);
        self.check()
    }

    /// `Err(Interrupted)` once cancelled.
    #[inline]
    pub fn check(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// (done, total) as last reported.
    pub fn get(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_cancels() {
        let p = Progress::new();
        p.start(10);
        p.advance(4).unwrap();
        assert_eq!(p.get(), (4, 10));
        p.cancel();
        assert!(matches!(p.advance(1), Err(Error::Interrupted)));
        assert!(p.is_cancelled());
    }
}
