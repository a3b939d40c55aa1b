//! `EventDecoder`, `EventBatch` and `EncodedRows` for the sink.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use shortcore::eventrows::{DecodedBatch, EncodedRows, EventDecoder, SinkOptions};
use shortcore::sequence::CampaignLinks;

use crate::errors::invalid_argument;
use crate::streamreply::PyStreamEntries;
use crate::variants::PyVariantLinks;
use crate::without_gil;

/// The event bytes of a stream entry's fields: the flat list a raw reply has, a dict, or the
/// bytes themselves. `None` when the entry has no event field.
fn event_bytes(fields: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    if fields.is_none() {
        return Ok(None);
    }
    if let Ok(raw) = fields.cast::<PyBytes>() {
        return Ok(Some(raw.as_bytes().to_vec()));
    }
    if let Ok(list) = fields.cast::<PyList>() {
        let mut i = 0;
        while i + 1 < list.len() {
            if is_event_field(&list.get_item(i)?) {
                return Ok(Some(as_bytes(&list.get_item(i + 1)?)));
            }
            i += 2;
        }
        return Ok(None);
    }
    if let Ok(dict) = fields.cast::<PyDict>() {
        for key in [
            "e".as_bytes().into_pyobject(fields.py())?.into_any(),
            PyString::new(fields.py(), "e").into_any(),
        ] {
            if let Some(value) = dict.get_item(key)? {
                return Ok(Some(as_bytes(&value)));
            }
        }
        return Ok(None);
    }
    Ok(None)
}

fn is_event_field(name: &Bound<'_, PyAny>) -> bool {
    if let Ok(raw) = name.cast::<PyBytes>() {
        return raw.as_bytes() == b"e";
    }
    name.cast::<PyString>()
        .is_ok_and(|s| s.to_str().is_ok_and(|s| s == "e"))
}

fn as_bytes(value: &Bound<'_, PyAny>) -> Vec<u8> {
    if let Ok(raw) = value.cast::<PyBytes>() {
        return raw.as_bytes().to_vec();
    }
    value.str().map(|s| s.to_string().into_bytes()).unwrap_or_default()
}

/// Checks, enriches and encodes the sink's batches (see `shortcore.sink`).
#[pyclass(module = "shortcore._core", name = "EventDecoder")]
pub struct PyEventDecoder {
    inner: EventDecoder,
}

#[pymethods]
impl PyEventDecoder {
    #[new]
    #[pyo3(signature = (*, truncate_ip = false, store_user_agent = true, country_header = None,
                        sibling_window_ms = 2000, sweep_recipients = 5, sweep_window_ms = 5000))]
    fn new(
        truncate_ip: bool,
        store_user_agent: bool,
        country_header: Option<String>,
        sibling_window_ms: i64,
        sweep_recipients: usize,
        sweep_window_ms: i64,
    ) -> Self {
        Self {
            inner: EventDecoder::new(SinkOptions {
                truncate_ip,
                store_user_agent,
                country_header: country_header.map(|h| h.to_ascii_lowercase()),
                sibling_window_ms,
                sweep_recipients,
                sweep_window_ms,
            }),
        }
    }

    /// Checks a batch of stream entries: a `StreamEntries`, or pairs `(id, fields)`.
    fn decode(&mut self, py: Python<'_>, entries: &Bound<'_, PyAny>) -> PyResult<PyEventBatch> {
        if let Ok(raw) = entries.cast::<PyStreamEntries>() {
            let raw = raw.borrow();
            let raw: &PyStreamEntries = &raw;
            let inner = &mut self.inner;
            let batch = without_gil(py, move || inner.decode(raw.owned()));
            return Ok(PyEventBatch { inner: batch });
        }
        let mut owned: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(entries.len().unwrap_or(0));
        for entry in entries.try_iter()? {
            let entry = entry?;
            let (id, fields) = if let Ok(pair) = entry.cast::<PyList>() {
                (pair.get_item(0)?, pair.get_item(1)?)
            } else if let Ok(pair) = entry.cast::<PyTuple>() {
                (pair.get_item(0)?, pair.get_item(1)?)
            } else {
                return Err(invalid_argument(
                    py,
                    "each entry must be a pair (id, fields)".to_owned(),
                ));
            };
            owned.push((as_bytes(&id), event_bytes(&fields)?));
        }
        let inner = &mut self.inner;
        let batch = without_gil(py, move || inner.decode(owned));
        Ok(PyEventBatch { inner: batch })
    }

    /// Puts `raw` in place of the event at `position` of `batch`; returns the reason when `raw`
    /// is not an event (the batch is unchanged then).
    fn replace(&mut self, batch: &mut PyEventBatch, position: usize, raw: Vec<u8>) -> Option<String> {
        batch.inner.replace(position, raw, &mut self.inner).err()
    }

    /// Applies the sequence rules to `batch` and encodes its rows for `events`.
    fn encode(
        &mut self,
        py: Python<'_>,
        batch: &PyEventBatch,
        links: HashMap<String, Bound<'_, PyAny>>,
        countries: HashMap<String, String>,
    ) -> PyResult<PyEncodedRows> {
        let links = campaign_links(py, links)?;
        let inner = &mut self.inner;
        let decoded = &batch.inner;
        let (rows, body) = without_gil(py, move || {
            let rows = inner.encode(decoded, &links, countries);
            let body = rows.native(0, rows.len());
            (rows, body)
        });
        Ok(PyEncodedRows {
            body: PyBytes::new(py, &body).unbind(),
            rows,
        })
    }
}

/// A campaign's links as `encode` takes them: a number, or a `VariantLinks`.
fn campaign_links(
    py: Python<'_>,
    links: HashMap<String, Bound<'_, PyAny>>,
) -> PyResult<HashMap<String, CampaignLinks>> {
    links
        .into_iter()
        .map(|(campaign, value)| {
            let links = if let Ok(variants) = value.cast::<PyVariantLinks>() {
                variants.get().core().clone()
            } else if let Ok(count) = value.extract::<i64>() {
                CampaignLinks::Count(count)
            } else {
                return Err(invalid_argument(
                    py,
                    format!("the links of {campaign:?} must be an int or a VariantLinks"),
                ));
            };
            Ok((campaign, links))
        })
        .collect()
}

/// A checked batch (see `EventDecoder.decode`).
#[pyclass(module = "shortcore._core", name = "EventBatch")]
pub struct PyEventBatch {
    inner: DecodedBatch,
}

impl PyEventBatch {
    fn row(&self, py: Python<'_>, position: usize) -> PyResult<&shortcore::eventrows::Row> {
        self.inner
            .rows()
            .get(position)
            .map(AsRef::as_ref)
            .ok_or_else(|| invalid_argument(py, format!("no event at position {position}")))
    }
}

#[pymethods]
impl PyEventBatch {
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// For each event, the index of its entry in the decoded input.
    #[getter]
    fn entries(&self) -> Vec<usize> {
        self.inner.entries().to_vec()
    }

    /// Refused entries: `(index in the input, reason)`.
    #[getter]
    fn dead(&self) -> Vec<(usize, String)> {
        self.inner.dead().to_vec()
    }

    fn campaigns(&self) -> Vec<String> {
        self.inner.campaigns()
    }

    fn of_kind(&self, kind: &str) -> Vec<usize> {
        self.inner.of_kind(kind)
    }

    fn clicks(&self, ids: Vec<String>) -> Vec<usize> {
        self.inner.clicks(&ids)
    }

    fn addresses_without_country(&self) -> Vec<String> {
        self.inner.addresses_without_country()
    }

    fn stream_id<'py>(&self, py: Python<'py>, position: usize) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.row(py, position)?.stream_id))
    }

    fn raw<'py>(&self, py: Python<'py>, position: usize) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, self.row(py, position)?.raw()))
    }

    /// What the sink added to the event at `position`, keyed as the webhook payload reads it.
    fn extra<'py>(&self, py: Python<'py>, position: usize) -> PyResult<Bound<'py, PyDict>> {
        extra(py, self.row(py, position)?)
    }
}

/// Rows for `INSERT INTO events FORMAT Native` (see `EventDecoder.encode`).
#[pyclass(frozen, module = "shortcore._core", name = "EncodedRows")]
pub struct PyEncodedRows {
    rows: EncodedRows,
    body: Py<PyBytes>,
}

impl PyEncodedRows {
    fn row(&self, py: Python<'_>, row: usize) -> PyResult<&shortcore::eventrows::Row> {
        self.rows
            .rows()
            .get(row)
            .map(AsRef::as_ref)
            .ok_or_else(|| invalid_argument(py, format!("no row {row}")))
    }
}

#[pymethods]
impl PyEncodedRows {
    fn __len__(&self) -> usize {
        self.rows.len()
    }

    /// Every row as one `Native` block.
    #[getter]
    fn body(&self, py: Python<'_>) -> Py<PyBytes> {
        self.body.clone_ref(py)
    }

    /// Rows `start..end` as one `Native` block.
    fn native<'py>(&self, py: Python<'py>, start: usize, end: usize) -> PyResult<Bound<'py, PyBytes>> {
        if start > end || end > self.rows.len() {
            return Err(invalid_argument(
                py,
                format!("rows {start}..{end} out of 0..{}", self.rows.len()),
            ));
        }
        let rows = &self.rows;
        let block = without_gil(py, || rows.native(start, end));
        Ok(PyBytes::new(py, &block))
    }

    #[getter]
    fn revisions(&self) -> Vec<u8> {
        self.rows.revisions()
    }

    /// Rows of the batch itself; the rows after them are events of earlier batches.
    #[getter]
    fn batch_len(&self) -> usize {
        self.rows.batch_len()
    }

    fn stream_id<'py>(&self, py: Python<'py>, row: usize) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.row(py, row)?.stream_id))
    }

    fn raw<'py>(&self, py: Python<'py>, row: usize) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, self.row(py, row)?.raw()))
    }

    /// What the sink added to row `row` (see `EventBatch.extra`); for the rows of earlier
    /// batches, the class and reason a sequence rule has given them since.
    fn extra<'py>(&self, py: Python<'py>, row: usize) -> PyResult<Bound<'py, PyDict>> {
        extra(py, self.row(py, row)?)
    }
}

/// What the sink added to an event, keyed as the webhook payload reads it.
fn extra<'py>(py: Python<'py>, row: &shortcore::eventrows::Row) -> PyResult<Bound<'py, PyDict>> {
    let extra = PyDict::new(py);
    for (key, value) in row.added() {
        extra.set_item(key, value)?;
    }
    if let Some(reason) = row.reclassified() {
        extra.set_item("_class", "bot")?;
        extra.set_item("_reason", reason)?;
        extra.set_item("_revision", 1)?;
    }
    Ok(extra)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEventDecoder>()?;
    m.add_class::<PyEventBatch>()?;
    m.add_class::<PyEncodedRows>()?;
    Ok(())
}
