//! The Python binding of the shortcore core: type conversion, error mapping, GIL release and
//! module registration. Logic belongs in the `shortcore` crate, not here.
#![forbid(unsafe_code)]
// PyO3 extracts arguments as owned values; borrowing them is not an option here.
#![allow(clippy::needless_pass_by_value)]

mod classify;
mod errors;
mod eventrows;
mod links;
mod phones;
mod recipients;
mod sms;
mod streamreply;
mod tokens;
mod variants;

use pyo3::prelude::*;

// The sink frees and allocates tens of thousands of rows a batch: glibc's malloc spent more time
// consolidating its free lists than serde spent parsing (measured with perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs `work` without holding the GIL. Batch calls extract owned inputs first, then come here,
/// so other Python threads run while Rust works.
pub(crate) fn without_gil<T: Send>(py: Python<'_>, work: impl FnOnce() -> T + Send) -> T {
    py.detach(work)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    tokens::register(m)?;
    links::register(m)?;
    phones::register(m)?;
    recipients::register(m)?;
    sms::register(m)?;
    classify::register(m)?;
    eventrows::register(m)?;
    variants::register(m)?;
    streamreply::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Benchmarks refuse to measure a debug build.
    m.add(
        "build_profile",
        if cfg!(debug_assertions) { "debug" } else { "release" },
    )?;
    Ok(())
}
