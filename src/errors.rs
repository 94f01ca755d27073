//! The one place where core errors become Python exceptions. The classes
//! live in `referralgraph/exceptions.py` (documented, picklable) and are
//! imported here.

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use referralgraph_core as core;

pyo3::import_exception!(referralgraph.exceptions, ReferralGraphError);
pyo3::import_exception!(referralgraph.exceptions, InvalidInputError);
pyo3::import_exception!(referralgraph.exceptions, DuplicateUserError);
pyo3::import_exception!(referralgraph.exceptions, CycleError);
pyo3::import_exception!(referralgraph.exceptions, PolicyError);
pyo3::import_exception!(referralgraph.exceptions, SchemaError);

/// A newtype so `From<core::Error> for PyErr` does not break the orphan rule.
pub struct PyCoreErr(pub core::Error);

impl From<PyCoreErr> for PyErr {
    fn from(PyCoreErr(e): PyCoreErr) -> PyErr {
        let msg = e.to_string();
        match e {
            core::Error::Schema(_) => SchemaError::new_err(msg),
            core::Error::Invalid { .. } | core::Error::Corrupt(_) | core::Error::Overflow(_) => {
                InvalidInputError::new_err(msg)
            }
            core::Error::DuplicateUser { .. } => DuplicateUserError::new_err(msg),
            core::Error::Cycle(ids) => Python::attach(|py| {
                let err = CycleError::new_err(msg);
                // The members, for programs that want to repair the data.
                let _ = err.value(py).setattr("cycle", ids);
                err
            }),
            core::Error::Policy(_) => PolicyError::new_err(msg),
            core::Error::Interrupted => pyo3::exceptions::PyKeyboardInterrupt::new_err(msg),
            core::Error::Memory(_) => pyo3::exceptions::PyMemoryError::new_err(msg),
            core::Error::Io(io) => PyOSError::new_err(io.to_string()),
        }
    }
}

impl From<core::Error> for PyCoreErr {
    fn from(e: core::Error) -> Self {
        PyCoreErr(e)
    }
}

/// Shorthand for errors raised by the bindings themselves.
pub fn schema_err(msg: impl Into<String>) -> PyErr {
    SchemaError::new_err(msg.into())
}

pub fn invalid_err(msg: impl Into<String>) -> PyErr {
    InvalidInputError::new_err(msg.into())
}

pub fn internal_err(msg: impl Into<String>) -> PyErr {
    ReferralGraphError::new_err(msg.into())
}
