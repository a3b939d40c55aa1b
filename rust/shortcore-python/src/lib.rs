//! The Python binding of the shortcore core: type conversion, error mapping, GIL release and
//! module registration. Logic belongs in the `shortcore` crate, not here.
#![forbid(unsafe_code)]

mod classify;
mod errors;
mod tokens;

use pyo3::prelude::*;

/// Runs `work` without holding the GIL. Batch calls extract owned inputs first, then come here,
/// so other Python threads run while Rust works.
pub(crate) fn without_gil<T: Send>(py: Python<'_>, work: impl FnOnce() -> T + Send) -> T {
    py.detach(work)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    tokens::register(m)?;
    classify::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
