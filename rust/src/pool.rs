//! The worker pool every parallel call runs on, rebuilt in a forked child.
//!
//! Rayon's global pool does not survive `fork`: the child inherits the
//! registry but not its threads, so its first parallel call waits forever
//! on workers that do not exist (rayon-rs/rayon#708). Python forks a lot —
//! `multiprocessing` (fork is the Linux default up to 3.13), gunicorn
//! `--preload`, Celery prefork — usually after the parent has loaded or
//! built a graph. So the bindings run their parallel work through [`run`],
//! which installs a pool owned by the current process: the first call in a
//! child builds a fresh one. The parent's pool, whose threads are gone, is
//! leaked (dropping it would signal threads that are not there); it is a
//! few KB per fork generation. The global pool is never used, so nothing
//! inherited can block.
//!
//! The thread count follows `RAYON_NUM_THREADS` (else one per CPU), as the
//! global pool's would.

use std::sync::atomic::{AtomicPtr, Ordering};

use rayon::{ThreadPool, ThreadPoolBuilder};

struct Owned {
    pid: u32,
    pool: ThreadPool,
}

/// The current pool and the process that built it (null until first use).
/// An atomic, not a lock: a lock held by another thread at the fork would
/// stay held in the child.
static POOL: AtomicPtr<Owned> = AtomicPtr::new(std::ptr::null_mut());

/// This process's pool, built on first use (and first use after a fork).
pub fn pool() -> &'static ThreadPool {
    let pid = std::process::id();
    let cur = POOL.load(Ordering::Acquire);
    // SAFETY: a non-null POOL points to a leaked `Owned`, never freed.
    if let Some(owned) = unsafe { cur.as_ref() } {
        if owned.pid == pid {
            return &owned.pool;
        }
    }
    // A new process (or the first call): a forked child also needs its own
    // allocator reaper, as it needs its own pool.
    crate::alloc::restart_reaper_after_fork();
    let fresh = Box::into_raw(Box::new(Owned { pid, pool: build() }));
    match POOL.compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: `fresh` is now POOL's, leaked for good; the one it
        // replaced (a parent's) is leaked too.
        Ok(_) => unsafe { &(*fresh).pool },
        Err(won) => {
            // Another thread of this process built one first: use it, and
            // drop ours (its threads are alive, so dropping ends them).
            // SAFETY: `fresh` was never shared; `won` is a leaked `Owned`
            // of this process (a racing thread saw the same pid).
            drop(unsafe { Box::from_raw(fresh) });
            unsafe { &(*won).pool }
        }
    }
}

fn build() -> ThreadPool {
    // No fallback to the global pool: in a child that is the pool that
    // hangs. A failure (no threads left) becomes an error at the binding.
    ThreadPoolBuilder::new()
        .thread_name(|i| format!("referralgraph-{i}"))
        .build()
        .expect("could not start the worker threads")
}

/// Runs `f` on this process's pool: its parallel iterators use the pool's
/// threads (inline when already on one of them).
pub fn run<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let _busy = crate::alloc::busy();
    pool().install(f)
}

/// Forks, runs `child` in the child and exits it with 0 when it returns
/// true; the parent's verdict, or an error when the child hung (killed
/// after a minute) or failed.
#[cfg(test)]
pub(crate) fn in_forked_child(child: impl FnOnce() -> bool) -> Result<(), String> {
    use std::time::{Duration, Instant};
    // SAFETY: the child runs only `child` (this crate's code), then leaves
    // at once with `_exit`, skipping the test harness's exit path.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err("fork failed".into());
    }
    if pid == 0 {
        let ok = child();
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut status = 0;
    // SAFETY: waits for (and at worst kills) our own child.
    while unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } != pid {
        if Instant::now() > deadline {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return Err("the forked child hung".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(format!("the forked child failed (status {status})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn runs_on_its_own_threads_and_reuses_the_pool() {
        let names: Vec<String> = run(|| {
            (0..64)
                .into_par_iter()
                .map(|_| std::thread::current().name().unwrap_or("").to_string())
                .collect()
        });
        assert!(
            names.iter().all(|n| n.starts_with("referralgraph-")),
            "{names:?}"
        );
        assert!(std::ptr::eq(pool(), pool()));
        assert_eq!(
            run(rayon::current_num_threads),
            pool().current_num_threads()
        );
    }

    #[test]
    fn a_forked_child_gets_a_working_pool() {
        let sum = || run(|| (0..100_000u64).into_par_iter().sum::<u64>());
        let parent = sum();
        let parents_pool = pool() as *const ThreadPool;
        // The parent's pool stays allocated (leaked) in the child, so the
        // child's own is at another address.
        in_forked_child(|| sum() == parent && !std::ptr::eq(pool(), parents_pool)).unwrap();
        assert_eq!(sum(), parent, "the parent's pool still works");
        assert!(std::ptr::eq(pool(), parents_pool));
    }
}
