//! Every long call goes through `enter_core`: release the GIL, run the core
//! on the process's worker pool (`core::pool`: rebuilt in a forked child,
//! where rayon's global pool would hang), turn a panic into
//! `ReferralGraphError` (never a `PanicException`, which `except
//! Exception` would not catch), map the core error.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use pyo3::prelude::*;
use referralgraph_core as core;
use referralgraph_core::progress::Progress;

use crate::errors::{internal_err, PyCoreErr};

pub(crate) fn enter_core<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: Send + FnOnce() -> core::Result<T>,
{
    match py.detach(|| catch_unwind(AssertUnwindSafe(|| core::pool::run(f)))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(PyCoreErr(e).into()),
        Err(panic) => Err(internal_err(format!(
            "internal error (a bug, please report it): {}",
            panic_message(&panic)
        ))),
    }
}

/// Like `enter_core`, for long passes that report progress: the core runs
/// on a scoped worker thread while this thread, without the GIL, wakes
/// every 100 ms to take it briefly, check for Ctrl-C (which cancels the
/// work: the core stops at its next chunk) and call `on_progress(done,
/// total)`. An exception from the callback also cancels the work and is
/// raised.
pub(crate) fn enter_watched<T, F>(
    py: Python<'_>,
    on_progress: Option<Py<PyAny>>,
    f: F,
) -> PyResult<T>
where
    T: Send,
    F: Send + FnOnce(&Progress) -> core::Result<T>,
{
    let progress = Progress::new();
    let mut raised: Option<PyErr> = None;
    let outcome = py.detach(|| {
        std::thread::scope(|s| {
            let me = std::thread::current();
            let progress = &progress;
            let worker = s.spawn(move || {
                let out = catch_unwind(AssertUnwindSafe(|| core::pool::run(|| f(progress))));
                me.unpark();
                out
            });
            while !worker.is_finished() {
                std::thread::park_timeout(Duration::from_millis(100));
                if worker.is_finished() || raised.is_some() {
                    continue;
                }
                Python::attach(|py| {
                    let status = py.check_signals().and_then(|()| match &on_progress {
                        Some(cb) => cb.call1(py, progress.get()).map(drop),
                        None => Ok(()),
                    });
                    if let Err(e) = status {
                        progress.cancel();
                        raised = Some(e);
                    }
                });
            }
            worker.join()
        })
    });
    if let Some(e) = raised {
        return Err(e);
    }
    match outcome {
        Ok(Ok(Ok(v))) => {
            if let Some(cb) = &on_progress {
                let (_, total) = progress.get();
                cb.call1(py, (total, total))?;
            }
            Ok(v)
        }
        Ok(Ok(Err(e))) => Err(PyCoreErr(e).into()),
        Ok(Err(panic)) | Err(panic) => Err(internal_err(format!(
            "internal error (a bug, please report it): {}",
            panic_message(&panic)
        ))),
    }
}

/// Like `enter_core`, for binding work (no core error type) that needs no
/// Python objects: without the GIL, a panic turned into an error.
pub(crate) fn detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: Send + FnOnce() -> PyResult<T>,
{
    py.detach(|| guard(|| core::pool::run(f)))
}

/// Like `enter_core`, for work that holds Python objects (no GIL release;
/// the pool's threads could not hold them, so parallel passes inside wrap
/// themselves in `core::pool::run`).
pub(crate) fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(internal_err(format!(
            "internal error (a bug, please report it): {}",
            panic_message(&panic)
        )))
    })
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}
