//! `StreamEntries`: stream replies received as raw bytes, for the sink's decoder.

use pyo3::exceptions::{PyConnectionError, PyIndexError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use shortcore::resp::{parse_stream_reply, EntryRange, ReplyScanner, StreamReply};

/// The field of a stream entry that holds the event (see `shortcore.events`).
const EVENT_FIELD: &[u8] = b"e";

/// The entries of one or more stream replies, fed as their bytes arrive (see `shortcore.sink`).
#[pyclass(module = "shortcore._core", name = "StreamEntries")]
#[derive(Default)]
pub struct PyStreamEntries {
    /// Complete replies; entries point into them.
    replies: Vec<Vec<u8>>,
    entries: Vec<(usize, EntryRange)>,
    /// The reply being received.
    partial: Vec<u8>,
    scanner: ReplyScanner,
}

impl PyStreamEntries {
    /// Each entry's id and event bytes, copied out.
    pub(crate) fn owned(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.entries
            .iter()
            .map(|(reply, entry)| {
                let buf = &self.replies[*reply];
                (
                    buf[entry.id.clone()].to_vec(),
                    entry.event.clone().map(|r| buf[r].to_vec()),
                )
            })
            .collect()
    }

    fn index(&self, index: isize) -> PyResult<usize> {
        let len = self.entries.len();
        let at = if index < 0 {
            len.checked_sub(index.unsigned_abs())
        } else {
            Some(index.unsigned_abs())
        };
        if let Some(at) = at.filter(|&at| at < len) {
            Ok(at)
        } else {
            Err(PyIndexError::new_err(format!("no entry {index}")))
        }
    }

    fn slice(&self, index: usize) -> (&[u8], Option<&[u8]>) {
        let (reply, entry) = &self.entries[index];
        let buf = &self.replies[*reply];
        (&buf[entry.id.clone()], entry.event.clone().map(|r| &buf[r]))
    }
}

#[pymethods]
impl PyStreamEntries {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Adds bytes of the reply being received; returns True once it is complete (its entries
    /// are added then, and the next bytes start a new reply). Raises `ConnectionError` for an
    /// error reply or bytes that are not RESP: the connection cannot be trusted after either.
    fn feed(&mut self, data: &[u8]) -> PyResult<bool> {
        self.partial.extend_from_slice(data);
        let scanned = self.scanner.scan(&self.partial);
        let end = match scanned {
            Ok(None) => return Ok(false),
            Ok(Some(end)) => end,
            Err(error) => return Err(self.fail(&format!("not a RESP reply: {error}"))),
        };
        if end != self.partial.len() {
            return Err(self.fail("bytes after the end of the reply"));
        }
        let reply = std::mem::take(&mut self.partial);
        self.scanner = ReplyScanner::default();
        match parse_stream_reply(&reply, EVENT_FIELD) {
            Ok(StreamReply::Entries(entries)) => {
                if !entries.is_empty() {
                    let at = self.replies.len();
                    self.entries.extend(entries.into_iter().map(|e| (at, e)));
                    self.replies.push(reply);
                }
                Ok(true)
            }
            Ok(StreamReply::Error(message)) => Err(PyConnectionError::new_err(format!("Redis answered: {message}"))),
            Err(error) => Err(self.fail(&format!("not a stream reply: {error}"))),
        }
    }

    /// Drops the bytes of a reply that will not be completed (its connection broke); the
    /// entries of complete replies stay.
    fn abandon(&mut self) {
        self.partial.clear();
        self.scanner = ReplyScanner::default();
    }

    fn __len__(&self) -> usize {
        self.entries.len()
    }

    /// The id of entry `index` (negative counts from the end).
    fn id<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyBytes>> {
        let (id, _) = self.slice(self.index(index)?);
        Ok(PyBytes::new(py, id))
    }

    /// `(id, fields)` as a raw reply has it: `[b"e", event]`, or `[]` for an entry without one.
    fn __getitem__<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyTuple>> {
        let (id, event) = self.slice(self.index(index)?);
        let fields = match event {
            Some(event) => PyList::new(py, [PyBytes::new(py, EVENT_FIELD), PyBytes::new(py, event)])?,
            None => PyList::empty(py),
        };
        PyTuple::new(py, [PyBytes::new(py, id).into_any(), fields.into_any()])
    }
}

impl PyStreamEntries {
    fn fail(&mut self, message: &str) -> PyErr {
        self.partial.clear();
        self.scanner = ReplyScanner::default();
        PyConnectionError::new_err(message.to_owned())
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStreamEntries>()?;
    Ok(())
}
