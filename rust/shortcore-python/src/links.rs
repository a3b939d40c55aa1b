//! Link finding and message rewriting for Python. Offsets are in characters, as Python indexes
//! strings.

use pyo3::prelude::*;

use crate::errors::{invalid_argument, to_py};
use crate::sms::PyMessageSize;
use crate::tokens::PyTokenCodec;
use crate::without_gil;
use shortcore::links::{char_offsets, RewriteOptions, SchemeMode};

/// Every link in `text` as `(start, end, link as written)`, in characters.
#[pyfunction]
fn find_links(text: &str) -> Vec<(usize, usize, String)> {
    with_char_offsets(text, &shortcore::find_links(text))
}

fn with_char_offsets(text: &str, links: &[shortcore::Link]) -> Vec<(usize, usize, String)> {
    let offsets = char_offsets(text, links.iter().flat_map(|l| [l.start, l.end]));
    links
        .iter()
        .zip(offsets.chunks(2))
        .map(|(link, se)| (se[0], se[1], link.as_written(text).to_owned()))
        .collect()
}

fn parse_scheme(py: Python<'_>, scheme: &str) -> PyResult<SchemeMode> {
    match scheme {
        "keep" => Ok(SchemeMode::Keep),
        "drop" => Ok(SchemeMode::Drop),
        "fit" => Ok(SchemeMode::Fit),
        other => Err(invalid_argument(
            py,
            format!("scheme must be 'keep', 'drop' or 'fit', got {other:?}"),
        )),
    }
}

/// One recipient's message with its short links.
#[pyclass(frozen, module = "shortcore._core", name = "RenderedMessage")]
pub struct PyRenderedMessage {
    #[pyo3(get)]
    text: String,
    #[pyo3(get)]
    links: Vec<(usize, usize)>,
    #[pyo3(get)]
    short_urls: Vec<String>,
    #[pyo3(get)]
    before: PyMessageSize,
    #[pyo3(get)]
    after: PyMessageSize,
}

impl From<shortcore::RenderedMessage> for PyRenderedMessage {
    fn from(m: shortcore::RenderedMessage) -> Self {
        Self {
            text: m.text,
            links: m.links,
            short_urls: m.short_urls,
            before: m.before.into(),
            after: m.after.into(),
        }
    }
}

#[pymethods]
impl PyRenderedMessage {
    fn __repr__(&self) -> String {
        format!("RenderedMessage(text={:?}, links={:?})", self.text, self.links)
    }
}

/// A message text prepared once and rendered for each recipient with their short links.
#[pyclass(frozen, module = "shortcore._core", name = "MessageTemplate")]
pub struct PyMessageTemplate {
    text: String,
    inner: shortcore::MessageTemplate,
}

impl PyMessageTemplate {
    pub(crate) fn core(&self) -> &shortcore::MessageTemplate {
        &self.inner
    }
}

#[pymethods]
impl PyMessageTemplate {
    #[new]
    #[pyo3(signature = (text, *, scheme = "keep", only_last = false))]
    fn new(py: Python<'_>, text: String, scheme: &str, only_last: bool) -> PyResult<Self> {
        let options = RewriteOptions {
            scheme: parse_scheme(py, scheme)?,
            only_last,
        };
        let inner = shortcore::MessageTemplate::new(&text, options);
        Ok(Self { text, inner })
    }

    /// The original text.
    #[getter]
    fn text(&self) -> &str {
        &self.text
    }

    /// Every link in the text as `(start, end, link as written)`, shortened or not.
    #[getter]
    fn links(&self) -> Vec<(usize, usize, String)> {
        with_char_offsets(&self.text, self.inner.links())
    }

    /// The absolute URLs that get a short link, in order.
    #[getter]
    fn destinations(&self) -> Vec<String> {
        self.inner.destinations().into_iter().map(str::to_owned).collect()
    }

    /// The original text's size.
    #[getter]
    fn original_size(&self) -> PyMessageSize {
        self.inner.original_size().into()
    }

    /// The message for one recipient, from one short URL per destination.
    fn render(&self, py: Python<'_>, short_urls: Vec<String>) -> PyResult<PyRenderedMessage> {
        self.inner
            .render(&short_urls)
            .map(Into::into)
            .map_err(|e| to_py(py, &e))
    }

    /// The messages of many recipients at once, without the GIL.
    fn render_many(&self, py: Python<'_>, short_urls: Vec<Vec<String>>) -> PyResult<Vec<PyRenderedMessage>> {
        let inner = &self.inner;
        let rendered = without_gil(py, || {
            short_urls
                .iter()
                .map(|urls| inner.render(urls).map(PyRenderedMessage::from))
                .collect::<Result<Vec<_>, _>>()
        });
        rendered.map_err(|e| to_py(py, &e))
    }

    /// The messages of `count` recipients from `first_recipient` of a campaign whose tokens start
    /// at `seq_start`, with short links on `base_url`, without the GIL.
    fn render_recipients(
        &self,
        py: Python<'_>,
        codec: &PyTokenCodec,
        base_url: &str,
        seq_start: u64,
        first_recipient: u64,
        count: u64,
    ) -> PyResult<Vec<PyRenderedMessage>> {
        let (inner, codec) = (&self.inner, codec.core());
        let rendered = without_gil(py, || {
            inner
                .render_recipients(codec, base_url, seq_start, first_recipient, count)
                .map(|messages| messages.into_iter().map(PyRenderedMessage::from).collect::<Vec<_>>())
        });
        rendered.map_err(|e| to_py(py, &e))
    }

    fn __repr__(&self) -> String {
        format!("MessageTemplate(text={:?})", self.text)
    }
}

/// Rewrites `text` with `short_urls`, one per link to shorten.
#[pyfunction]
#[pyo3(signature = (text, short_urls, *, scheme = "keep", only_last = false))]
fn rewrite(
    py: Python<'_>,
    text: String,
    short_urls: Vec<String>,
    scheme: &str,
    only_last: bool,
) -> PyResult<PyRenderedMessage> {
    PyMessageTemplate::new(py, text, scheme, only_last)?.render(py, short_urls)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMessageTemplate>()?;
    m.add_class::<PyRenderedMessage>()?;
    m.add_function(wrap_pyfunction!(find_links, m)?)?;
    m.add_function(wrap_pyfunction!(rewrite, m)?)
}
