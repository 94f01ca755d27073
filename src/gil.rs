//! Every long call goes through `enter_core`: release the GIL, run the core,
//! turn a panic into `ReferralGraphError` (never a `PanicException`, which
//! `except Exception` would not catch), map the core error.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;
use referralgraph_core as core;

use crate::errors::{internal_err, PyCoreErr};

pub(crate) fn enter_core<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: Send + FnOnce() -> core::Result<T>,
{
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(PyCoreErr(e).into()),
        Err(panic) => Err(internal_err(format!(
            "internal error (a bug, please report it): {}",
            panic_message(&panic)
        ))),
    }
}

/// Like `enter_core`, for work that holds Python objects (no GIL release).
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
