//! `TokenCodec` for Python.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::errors::{invalid_argument, to_py};
use crate::without_gil;

/// Encodes sequence numbers as fixed-length base62 tokens and back, under one secret key.
#[pyclass(frozen, module = "shortcore._core", name = "TokenCodec")]
pub struct PyTokenCodec {
    inner: shortcore::TokenCodec,
}

impl PyTokenCodec {
    /// The core codec, for other classes of the binding.
    pub(crate) fn core(&self) -> &shortcore::TokenCodec {
        &self.inner
    }
}

/// A Python int as a sequence number, or `InvalidArgumentError` naming `what`.
fn sequence_number(py: Python<'_>, value: i128, what: &str) -> PyResult<u64> {
    u64::try_from(value)
        .map_err(|_| invalid_argument(py, format!("{what} must be a non-negative 64-bit integer, got {value}")))
}

#[pymethods]
impl PyTokenCodec {
    #[new]
    // A literal, so that Python's signature shows it; checked against the core's default below.
    #[pyo3(signature = (secret, length = 7))]
    fn new(py: Python<'_>, secret: &[u8], length: usize) -> PyResult<Self> {
        let inner = shortcore::TokenCodec::new(secret, length).map_err(|e| to_py(py, &e))?;
        Ok(Self { inner })
    }

    /// Characters in every token.
    #[getter]
    fn length(&self) -> usize {
        self.inner.length()
    }

    /// The largest sequence number this codec can encode.
    #[getter]
    fn max_seq(&self) -> u64 {
        self.inner.max_seq()
    }

    fn encode<'py>(&self, py: Python<'py>, seq: i128) -> PyResult<Bound<'py, PyString>> {
        let seq = sequence_number(py, seq, "seq")?;
        let token = self.inner.encode(seq).map_err(|e| to_py(py, &e))?;
        Ok(PyString::new(py, token.as_str()))
    }

    fn decode(&self, token: &Bound<'_, PyAny>) -> Option<u64> {
        // Anything that is not a token, including non-strings, decodes to None.
        if let Ok(text) = token.cast::<PyString>() {
            return text.to_str().ok().and_then(|s| self.inner.decode(s));
        }
        token
            .cast::<PyBytes>()
            .ok()
            .and_then(|b| self.inner.decode_bytes(b.as_bytes()))
    }

    fn encode_range<'py>(&self, py: Python<'py>, start: i128, count: i128) -> PyResult<Bound<'py, PyList>> {
        let start = sequence_number(py, start, "start")?;
        let count = sequence_number(py, count, "count")?;
        let inner = &self.inner;
        let tokens = without_gil(py, || {
            let mut tokens = Vec::new();
            inner.encode_range_into(start, count, &mut tokens).map(|()| tokens)
        })
        .map_err(|e| to_py(py, &e))?;
        PyList::new(py, tokens.iter().map(shortcore::Token::as_str))
    }

    fn __repr__(&self) -> String {
        format!("TokenCodec(length={})", self.inner.length())
    }
}

const _: () = assert!(shortcore::tokens::DEFAULT_LENGTH == 7);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTokenCodec>()
}
