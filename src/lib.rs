//! referralgraph's Python bindings: Arrow in and out, argument checking,
//! GIL release and error mapping. All computing happens in
//! `referralgraph-core` (the `rust/` crate).

use pyo3::prelude::*;

mod arrow_io;
mod attribution;
mod errors;
mod gil;
mod graph;
mod synthetic;

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<graph::PyReferralGraph>()?;
    m.add_class::<attribution::PySession>()?;
    m.add_function(wrap_pyfunction!(attribution::attribute, m)?)?;
    m.add_function(wrap_pyfunction!(attribution::session, m)?)?;
    m.add_function(wrap_pyfunction!(synthetic::synthetic_program, m)?)?;
    m.add_function(wrap_pyfunction!(graph::_panic_for_test, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
