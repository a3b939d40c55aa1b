//! `measure` and `MessageSize` for Python.

use pyo3::prelude::*;

/// The size of a message text as an SMS.
#[pyclass(frozen, eq, hash, module = "shortcore._core", name = "MessageSize")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PyMessageSize {
    inner: shortcore::MessageSize,
}

impl From<shortcore::MessageSize> for PyMessageSize {
    fn from(inner: shortcore::MessageSize) -> Self {
        Self { inner }
    }
}

#[pymethods]
impl PyMessageSize {
    /// `"GSM-7"` or `"UCS-2"`.
    #[getter]
    fn encoding(&self) -> &'static str {
        self.inner.encoding.as_str()
    }

    /// Unicode characters, as Python's `len()` counts them.
    #[getter]
    fn characters(&self) -> usize {
        self.inner.characters
    }

    /// Length in the encoding's units: septets (GSM-7) or UTF-16 code units (UCS-2).
    #[getter]
    fn units(&self) -> usize {
        self.inner.units
    }

    /// SMS parts the message is billed as.
    #[getter]
    fn segments(&self) -> usize {
        self.inner.segments
    }

    fn __repr__(&self) -> String {
        format!(
            "MessageSize(encoding={:?}, characters={}, units={}, segments={})",
            self.inner.encoding.as_str(),
            self.inner.characters,
            self.inner.units,
            self.inner.segments
        )
    }
}

/// Measures `text` as an SMS: encoding, characters, units and segments.
#[pyfunction]
fn measure(text: &str) -> PyMessageSize {
    shortcore::measure(text).into()
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMessageSize>()?;
    m.add_function(wrap_pyfunction!(measure, m)?)
}
