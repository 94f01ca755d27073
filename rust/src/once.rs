//! A once-cell that a fork cannot wedge, for the tables a graph builds on
//! first use.
//!
//! A `std::sync::OnceLock` being initialised by another thread when the
//! process forks stays "running" in the child for good: the thread that
//! would finish it does not exist there, and the child's first use of that
//! table would wait forever. [`ForkOnce`] records which process is
//! initialising it, so a child that inherits it half-built builds it
//! itself. Within one process it behaves as `OnceLock::get_or_init` (one
//! thread builds, the others wait; a panic leaves it empty).

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const EMPTY: u64 = 0;
const DONE: u64 = u64::MAX;

/// "Being initialised by a thread of process `pid`".
fn building(pid: u32) -> u64 {
    pid as u64 + 1
}

pub struct ForkOnce<T> {
    state: AtomicU64,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: as for OnceLock: the value is written once, by the thread that
// moved `state` to `building`, and only read after `state` is DONE
// (release / acquire); sharing it needs T: Sync, handing it over T: Send.
unsafe impl<T: Send + Sync> Sync for ForkOnce<T> {}
unsafe impl<T: Send> Send for ForkOnce<T> {}
// As OnceLock: a panicking build leaves the cell empty, never half-set.
impl<T: std::panic::RefUnwindSafe + std::panic::UnwindSafe> std::panic::RefUnwindSafe
    for ForkOnce<T>
{
}
impl<T: std::panic::UnwindSafe> std::panic::UnwindSafe for ForkOnce<T> {}

impl<T> ForkOnce<T> {
    pub const fn new() -> Self {
        ForkOnce {
            state: AtomicU64::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) == DONE {
            // SAFETY: DONE is stored after the value is written.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }

    pub fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        let me = building(std::process::id());
        let mut waits = 0u32;
        loop {
            match self.state.load(Ordering::Acquire) {
                DONE => return self.get().expect("done"),
                // Empty, or inherited half-built from the parent process:
                // build it here.
                s if s != me => {
                    if self
                        .state
                        .compare_exchange(s, me, Ordering::Acquire, Ordering::Acquire)
                        .is_ok()
                    {
                        return self.build(f);
                    }
                }
                // Another thread of this process is building it.
                _ => {
                    waits += 1;
                    if waits < 100 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                }
            }
        }
    }

    /// Called by the thread that moved `state` to this process's
    /// `building`: builds, stores, publishes.
    fn build(&self, f: impl FnOnce() -> T) -> &T {
        struct Reset<'a>(&'a AtomicU64);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                // `f` panicked: empty again, for the next caller to retry.
                self.0.store(EMPTY, Ordering::Release);
            }
        }
        let reset = Reset(&self.state);
        let v = f();
        std::mem::forget(reset);
        // SAFETY: only this thread writes (it owns the building state), and
        // no reader looks before DONE.
        unsafe { (*self.value.get()).write(v) };
        self.state.store(DONE, Ordering::Release);
        self.get().expect("just stored")
    }
}

impl<T> Default for ForkOnce<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for ForkOnce<T> {
    fn drop(&mut self) {
        if *self.state.get_mut() == DONE {
            // SAFETY: DONE means written; `&mut self` means no reader.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

impl<T: Clone> Clone for ForkOnce<T> {
    fn clone(&self) -> Self {
        let c = ForkOnce::new();
        if let Some(v) = self.get() {
            c.get_or_init(|| v.clone());
        }
        c
    }
}

impl<T: PartialEq> PartialEq for ForkOnce<T> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl<T: Eq> Eq for ForkOnce<T> {}

impl<T: fmt::Debug> fmt::Debug for ForkOnce<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            Some(v) => f.debug_tuple("ForkOnce").field(v).finish(),
            None => f.write_str("ForkOnce(<unset>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn one_thread_builds_the_others_wait_and_a_panic_leaves_it_empty() {
        let cell: ForkOnce<Vec<u32>> = ForkOnce::new();
        let builds = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let v = cell.get_or_init(|| {
                        builds.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(20));
                        vec![1, 2, 3]
                    });
                    assert_eq!(v, &[1, 2, 3]);
                });
            }
        });
        assert_eq!(builds.load(Ordering::Relaxed), 1);
        assert_eq!(cell.clone(), cell);

        let fails: ForkOnce<u32> = ForkOnce::new();
        let r = std::panic::catch_unwind(|| fails.get_or_init(|| panic!("no")));
        assert!(r.is_err());
        assert_eq!(fails.get(), None);
        assert_eq!(*fails.get_or_init(|| 7), 7);
    }

    #[test]
    fn a_child_forked_mid_build_builds_it_itself() {
        static CELL: ForkOnce<u64> = ForkOnce::new();
        let (started, finish) = (
            std::sync::Arc::new(std::sync::Barrier::new(2)),
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        let builder = {
            let (started, finish) = (started.clone(), finish.clone());
            std::thread::spawn(move || {
                *CELL.get_or_init(|| {
                    started.wait();
                    while !finish.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    1
                })
            })
        };
        started.wait(); // the other thread is inside the build: fork now
        let child = crate::pool::in_forked_child(|| *CELL.get_or_init(|| 2) == 2);
        finish.store(true, Ordering::Release);
        assert_eq!(builder.join().unwrap(), 1);
        child.unwrap();
        assert_eq!(CELL.get(), Some(&1));
    }
}
