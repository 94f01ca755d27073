//! referralgraph's Python bindings: Arrow in and out, argument checking,
//! GIL release and error mapping. All computing happens in
//! `referralgraph-core` (the `rust/` crate).

use pyo3::prelude::*;

/// Blocks from 256 KB up are the extension's own mappings (huge pages
/// from 4 MB), freed ones kept for reuse:
/// first-touch page faults cost more than most passes over the memory
/// (see `referralgraph_core::alloc`).
#[global_allocator]
static ALLOC: referralgraph_core::alloc::HugePageAlloc = referralgraph_core::alloc::HugePageAlloc;

/// Gives the large blocks kept for reuse back to the system; returns the
/// number of bytes released.
#[pyfunction]
fn release_memory() -> usize {
    referralgraph_core::alloc::release_cached()
}

/// Bytes of freed large blocks kept for reuse.
#[pyfunction]
fn cached_memory() -> usize {
    referralgraph_core::alloc::cached_bytes()
}

/// Bytes this process can still take (the kernel's MemAvailable, lowered
/// by a cgroup limit); None where the system does not say.
#[pyfunction]
fn available_memory() -> Option<u64> {
    referralgraph_core::sysmem::available_bytes()
}

mod arrow_io;
mod attribution;
mod errors;
mod gil;
mod graph;
mod program;
mod social;
mod synthetic;

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // In a container, the cache is sized from its memory limit, not the host's RAM.
    if let Some(limit) = referralgraph_core::sysmem::cgroup_limit() {
        referralgraph_core::alloc::limit_memory_to(limit);
    }
    // Kept blocks must expire even if the process stops calling us.
    referralgraph_core::alloc::start_reaper();
    // A fork must not leave the allocator's lock held in the child.
    referralgraph_core::alloc::fork_handlers();
    m.add_class::<graph::PyReferralGraph>()?;
    m.add_class::<attribution::PySession>()?;
    m.add_class::<social::PySocialGraph>()?;
    m.add_function(wrap_pyfunction!(social::synthetic_social, m)?)?;
    m.add_function(wrap_pyfunction!(attribution::attribute, m)?)?;
    m.add_function(wrap_pyfunction!(attribution::session, m)?)?;
    m.add_function(wrap_pyfunction!(attribution::cap_sorted, m)?)?;
    m.add_function(wrap_pyfunction!(program::reach, m)?)?;
    m.add_function(wrap_pyfunction!(program::scores, m)?)?;
    m.add_function(wrap_pyfunction!(program::pyramid, m)?)?;
    m.add_function(wrap_pyfunction!(program::channels, m)?)?;
    m.add_function(wrap_pyfunction!(program::metrics, m)?)?;
    m.add_function(wrap_pyfunction!(program::event_issues, m)?)?;
    m.add_function(wrap_pyfunction!(synthetic::synthetic_program, m)?)?;
    m.add_function(wrap_pyfunction!(graph::_panic_for_test, m)?)?;
    m.add_function(wrap_pyfunction!(release_memory, m)?)?;
    m.add_function(wrap_pyfunction!(cached_memory, m)?)?;
    m.add_function(wrap_pyfunction!(available_memory, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
