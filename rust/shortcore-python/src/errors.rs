//! The one place where core errors become Python exceptions.
//!
//! `ShortcoreError` roots the hierarchy; `InvalidArgumentError` is also a `ValueError`, because
//! that is what Python code expects from a bad argument.

use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

pyo3::create_exception!(
    shortcore,
    ShortcoreError,
    PyException,
    "Base class of every error raised by shortcore."
);

static INVALID_ARGUMENT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn invalid_argument_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    INVALID_ARGUMENT
        .get_or_try_init(py, || {
            // Two bases, which `create_exception!` cannot express: build it with `type()`.
            let bases = PyTuple::new(py, [py.get_type::<ShortcoreError>(), py.get_type::<PyValueError>()])?;
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "shortcore")?;
            namespace.set_item("__doc__", "A value passed to shortcore is outside what it accepts.")?;
            let created = py
                .get_type::<PyType>()
                .call1(("InvalidArgumentError", bases, namespace))?;
            Ok::<_, PyErr>(created.cast_into::<PyType>()?.unbind())
        })
        .map(|ty| ty.bind(py))
}

/// Converts a core error into the matching Python exception.
pub(crate) fn to_py(py: Python<'_>, error: &shortcore::Error) -> PyErr {
    if error.is_invalid_argument() {
        invalid_argument(py, error.message().to_owned())
    } else {
        PyErr::from_type(py.get_type::<ShortcoreError>(), error.message().to_owned())
    }
}

/// Raises `InvalidArgumentError` with `message`, for argument checks done in the binding.
pub(crate) fn invalid_argument(py: Python<'_>, message: String) -> PyErr {
    match invalid_argument_type(py) {
        Ok(class) => PyErr::from_type(class.clone(), message),
        Err(err) => err,
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ShortcoreError", py.get_type::<ShortcoreError>())?;
    m.add("InvalidArgumentError", invalid_argument_type(py)?)?;
    Ok(())
}
