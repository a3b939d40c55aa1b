//! `VariantAssigner` and `VariantLinks` for Python.

use std::sync::Arc;

use pyo3::prelude::*;
use shortcore::sequence::CampaignLinks;

use crate::errors::{invalid_argument, to_py};
use crate::without_gil;

/// Recipient index → variant index: keyed 8-byte Blake2b of the index against the weights' shares
/// of 2**64, exactly as `shortcore.variants` describes it.
#[pyclass(frozen, module = "shortcore._core", name = "VariantAssigner")]
pub struct PyVariantAssigner {
    inner: Arc<shortcore::variants::VariantAssigner>,
}

impl PyVariantAssigner {
    /// The core assigner, for other classes of the binding.
    pub(crate) fn core(&self) -> &shortcore::variants::VariantAssigner {
        &self.inner
    }
}

#[pymethods]
impl PyVariantAssigner {
    #[new]
    fn new(py: Python<'_>, seed: &[u8], weights: Vec<f64>) -> PyResult<Self> {
        let inner = shortcore::variants::VariantAssigner::new(seed, &weights).map_err(|e| to_py(py, &e))?;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// How many variants there are.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The variant of recipient `recipient` (an int >= 0).
    fn variant_of(&self, recipient: u64) -> usize {
        self.inner.variant_of(recipient)
    }

    /// The variants of `count` consecutive recipients from `first`, without the GIL.
    fn variants_of(&self, py: Python<'_>, first: u64, count: u64) -> PyResult<Vec<usize>> {
        if first.checked_add(count).is_none() {
            return Err(invalid_argument(py, "recipient indices overflow 64 bits".to_owned()));
        }
        let inner = &self.inner;
        Ok(without_gil(py, || inner.variants_of(first, count)))
    }
}

/// A variant campaign as the sink needs it: the assigner that says whose message is which
/// variant's, and each variant's number of links (the sibling rule) and name (each event's).
#[pyclass(frozen, module = "shortcore._core", name = "VariantLinks")]
pub struct PyVariantLinks {
    inner: CampaignLinks,
}

impl PyVariantLinks {
    pub(crate) fn core(&self) -> &CampaignLinks {
        &self.inner
    }
}

#[pymethods]
impl PyVariantLinks {
    #[new]
    fn new(
        py: Python<'_>,
        assigner: PyRef<'_, PyVariantAssigner>,
        links: Vec<i64>,
        names: Vec<String>,
    ) -> PyResult<Self> {
        let variants = assigner.inner.len();
        if links.len() != variants || names.len() != variants {
            return Err(invalid_argument(
                py,
                format!(
                    "{} link count(s) and {} name(s) for {variants} variant(s)",
                    links.len(),
                    names.len()
                ),
            ));
        }
        Ok(Self {
            inner: CampaignLinks::Variants {
                assigner: Arc::clone(&assigner.inner),
                links,
                names: names.into_iter().map(Arc::from).collect(),
            },
        })
    }

    /// The number of links of recipient `recipient`'s message (0 for a negative index).
    fn of(&self, recipient: i64) -> i64 {
        self.inner.of(recipient)
    }

    /// The name of recipient `recipient`'s variant (None for a negative index).
    fn variant(&self, recipient: i64) -> Option<&str> {
        self.inner.variant(recipient).map(|(_, name)| &**name)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyVariantAssigner>()?;
    m.add_class::<PyVariantLinks>()
}
