//! `PhoneNormalizer` for Python.

use pyo3::prelude::*;

use crate::errors::{invalid_argument, to_py};
use crate::without_gil;

/// Validates phone numbers and writes them in E.164.
#[pyclass(frozen, module = "shortcore._core", name = "PhoneNormalizer")]
pub struct PyPhoneNormalizer {
    inner: shortcore::PhoneNormalizer,
    region: Option<String>,
}

#[pymethods]
impl PyPhoneNormalizer {
    #[new]
    #[pyo3(signature = (default_region = None))]
    fn new(py: Python<'_>, default_region: Option<String>) -> PyResult<Self> {
        let inner = shortcore::PhoneNormalizer::new(default_region.as_deref()).map_err(|e| to_py(py, &e))?;
        Ok(Self {
            inner,
            region: default_region.map(|r| r.trim().to_ascii_uppercase()),
        })
    }

    /// The region national numbers are read in, or None.
    #[getter]
    fn default_region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The number in E.164; `InvalidArgumentError` with the reason when it is not valid.
    fn normalize(&self, py: Python<'_>, raw: &str) -> PyResult<String> {
        self.inner
            .normalize(raw)
            .map_err(|e| invalid_argument(py, format!("{raw:?}: {e}")))
    }

    /// `(e164, None)` or `(None, reason)` for each number, in order, computed without the GIL.
    fn normalize_many(&self, py: Python<'_>, raws: Vec<String>) -> Vec<(Option<String>, Option<&'static str>)> {
        let inner = &self.inner;
        let results = without_gil(py, || inner.normalize_many(&raws));
        results
            .into_iter()
            .map(|r| match r {
                Ok(number) => (Some(number), None),
                Err(reason) => (None, Some(reason.as_str())),
            })
            .collect()
    }

    fn __repr__(&self) -> String {
        match &self.region {
            Some(region) => format!("PhoneNormalizer(default_region={region:?})"),
            None => "PhoneNormalizer(default_region=None)".to_owned(),
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPhoneNormalizer>()
}
