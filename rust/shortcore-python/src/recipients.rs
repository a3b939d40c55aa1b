//! `RecipientSpool` and `MessageRows` for Python: a recipient list in, `RowBinary` rows out, with
//! no Python object per row on the way.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use shortcore::messages::{CampaignRows, CampaignTexts, MessageRows, MessageTotals};
use shortcore::recipients::{CsvRecipients, RawRecipient, Recipient, RecipientSpool, Rejection};

use crate::errors::{invalid_argument, to_py};
use crate::links::{PyMessageTemplate, PyRenderedMessage};
use crate::tokens::PyTokenCodec;
use crate::variants::PyVariantAssigner;
use crate::without_gil;

type RecipientTuple = (u32, String, Option<String>, Vec<(String, String)>);

fn as_tuple(r: Recipient) -> RecipientTuple {
    (r.line, r.phone, r.id, r.fields)
}

fn rejections(kept: &[Rejection]) -> Vec<(u32, String, String)> {
    kept.iter()
        .map(|r| (r.line, r.value.clone(), r.reason.clone()))
        .collect()
}

/// A recipient list read into a temporary file: phones normalised to E.164 on every core,
/// duplicates found, every refused row kept with its line and reason (up to `max_rejections` of
/// each kind; the rest counted).
#[pyclass(module = "shortcore._core", name = "RecipientSpool")]
pub struct PyRecipientSpool {
    spool: RecipientSpool,
    csv: Option<CsvRecipients>,
}

#[pymethods]
impl PyRecipientSpool {
    #[new]
    #[pyo3(signature = (default_region = None, directory = None, max_rejections = 10_000))]
    fn new(
        py: Python<'_>,
        default_region: Option<String>,
        directory: Option<PathBuf>,
        max_rejections: usize,
    ) -> PyResult<Self> {
        let normalizer = shortcore::PhoneNormalizer::new(default_region.as_deref()).map_err(|e| to_py(py, &e))?;
        let spool = RecipientSpool::new(normalizer, directory.as_deref(), max_rejections)?;
        Ok(Self { spool, csv: None })
    }

    /// Reads the next chunk of a CSV list (header first), without the GIL.
    /// `InvalidArgumentError` when the file cannot be read as a list.
    fn feed_csv(&mut self, py: Python<'_>, chunk: &[u8]) -> PyResult<()> {
        let csv = self.csv.get_or_insert_with(CsvRecipients::new);
        let spool = &mut self.spool;
        without_gil(py, || csv.feed(chunk, spool)).map_err(|e| invalid_argument(py, e.0))
    }

    /// Reads the end of a CSV list.
    fn finish_csv(&mut self, py: Python<'_>) -> PyResult<()> {
        let csv = self.csv.get_or_insert_with(CsvRecipients::new);
        let spool = &mut self.spool;
        without_gil(py, || csv.finish(spool)).map_err(|e| invalid_argument(py, e.0))
    }

    /// Adds rows `(line, phone, id, fields)` whose shape was checked by the caller.
    fn add(&mut self, py: Python<'_>, rows: Vec<RecipientTuple>) -> PyResult<()> {
        let spool = &mut self.spool;
        without_gil(py, || {
            rows.into_iter().try_for_each(|(line, phone, id, fields)| {
                spool.push(RawRecipient {
                    line,
                    phone,
                    id,
                    fields,
                })
            })
        })?;
        Ok(())
    }

    /// Refuses a row for its shape.
    fn reject(&mut self, line: u32, value: &str, reason: &str) {
        self.spool.reject(line, value, reason);
    }

    /// Settles the last rows; the spool can then be read.
    fn finish(&mut self, py: Python<'_>) -> PyResult<()> {
        let spool = &mut self.spool;
        without_gil(py, || spool.finish())?;
        Ok(())
    }

    /// Recipients accepted.
    #[getter]
    fn recipients(&self) -> u64 {
        self.spool.accepted()
    }

    /// Rows read: accepted, invalid or duplicate.
    #[getter]
    fn rows_read(&self) -> u64 {
        self.spool.rows_read()
    }

    /// Rows refused, in all.
    #[getter]
    fn invalid_count(&self) -> u64 {
        self.spool.invalid.count
    }

    /// Duplicate rows, in all.
    #[getter]
    fn duplicate_count(&self) -> u64 {
        self.spool.duplicates.count
    }

    /// The first refused rows, `(line, value, reason)`.
    fn invalid(&self) -> Vec<(u32, String, String)> {
        rejections(&self.spool.invalid.kept)
    }

    /// The first duplicate rows, `(line, value, reason)`.
    fn duplicates(&self) -> Vec<(u32, String, String)> {
        rejections(&self.spool.duplicates.kept)
    }

    /// Up to `count` accepted recipients `(line, e164, id, fields)`, in order, after `finish`.
    fn read(&mut self, py: Python<'_>, count: usize) -> PyResult<Vec<RecipientTuple>> {
        let spool = &mut self.spool;
        let rows = without_gil(py, || spool.read(count))?;
        Ok(rows.into_iter().map(as_tuple).collect())
    }
}

/// A campaign's messages, rendered from a finished `RecipientSpool` a batch at a time into
/// `RowBinary` rows of the `messages` table: one text, or named variants split by an assigner.
#[pyclass(module = "shortcore._core", name = "MessageRows")]
pub struct PyMessageRows {
    texts: CampaignTexts,
    codec: shortcore::TokenCodec,
    campaign: CampaignRows,
    next_index: u64,
    totals: MessageTotals,
    first: Option<(Recipient, shortcore::RenderedMessage, usize)>,
}

/// The texts of `MessageRows`: a template, or `(name, template)` pairs with an assigner.
fn campaign_texts(
    py: Python<'_>,
    texts: &Bound<'_, PyAny>,
    assigner: Option<PyRef<'_, PyVariantAssigner>>,
) -> PyResult<CampaignTexts> {
    if let Ok(template) = texts.cast::<PyMessageTemplate>() {
        if assigner.is_some() {
            return Err(invalid_argument(py, "one text takes no assigner".to_owned()));
        }
        return Ok(CampaignTexts::one(template.borrow().core().clone()));
    }
    let Some(assigner) = assigner else {
        return Err(invalid_argument(
            py,
            "texts must be a MessageTemplate, or (name, MessageTemplate) pairs with an assigner".to_owned(),
        ));
    };
    let pairs: Vec<(String, PyRef<'_, PyMessageTemplate>)> = texts.extract()?;
    let variants = pairs
        .into_iter()
        .map(|(name, template)| (name, template.core().clone()))
        .collect();
    CampaignTexts::variants(variants, assigner.core().clone()).map_err(|e| to_py(py, &e))
}

#[pymethods]
impl PyMessageRows {
    #[new]
    #[pyo3(signature = (texts, codec, *, campaign_id, account, base_url, seq_start, created_at_ms, sent_at_ms = None, assigner = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        texts: &Bound<'_, PyAny>,
        codec: PyRef<'_, PyTokenCodec>,
        campaign_id: String,
        account: String,
        base_url: String,
        seq_start: u64,
        created_at_ms: i64,
        sent_at_ms: Option<i64>,
        assigner: Option<PyRef<'_, PyVariantAssigner>>,
    ) -> PyResult<Self> {
        Ok(Self {
            texts: campaign_texts(py, texts, assigner)?,
            codec: codec.core().clone(),
            campaign: CampaignRows {
                campaign_id,
                account,
                base_url,
                seq_start,
                sent_at_ms,
                created_at_ms,
            },
            next_index: 0,
            totals: MessageTotals::default(),
            first: None,
        })
    }

    /// The rows of the spool's next `count` recipients as `RowBinary` bytes; None when the spool
    /// is read to its end. Renders without the GIL, on every core.
    fn encode<'py>(
        &mut self,
        py: Python<'py>,
        spool: &mut PyRecipientSpool,
        count: usize,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let (texts, codec, campaign) = (&self.texts, &self.codec, &self.campaign);
        let (next_index, want_first) = (self.next_index, self.first.is_none());
        let inner = &mut spool.spool;
        let encoded = without_gil(py, || -> Result<_, Failure> {
            let recipients = inner.read(count).map_err(Failure::Io)?;
            if recipients.is_empty() {
                return Ok(None);
            }
            let mut rows = MessageRows::new(texts, codec, campaign, next_index);
            let mut parts = rows.encode_parts(&recipients).map_err(Failure::Core)?;
            let first = if want_first {
                parts
                    .iter_mut()
                    .find_map(|part| part.first.take())
                    .map(|(variant, m)| (recipients[0].clone(), m, variant))
            } else {
                None
            };
            let rows_only: Vec<Vec<u8>> = parts.into_iter().map(|part| part.rows).collect();
            Ok(Some((rows_only, rows.totals, first)))
        })
        .map_err(|failure| match failure {
            Failure::Io(e) => e.into(),
            Failure::Core(e) => to_py(py, &e),
        })?;
        let Some((parts, totals, first)) = encoded else {
            return Ok(None);
        };
        // One copy, straight from the parts into the bytes object.
        let len = parts.iter().map(Vec::len).sum();
        let bytes = PyBytes::new_with(py, len, |buf| {
            let mut at = 0;
            for part in &parts {
                buf[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            Ok(())
        })?;
        self.next_index += totals.messages;
        self.totals.add(&totals);
        if first.is_some() {
            self.first = first;
        }
        Ok(Some(bytes))
    }

    /// Messages encoded so far.
    #[getter]
    fn messages(&self) -> u64 {
        self.totals.messages
    }

    /// Their SMS segments.
    #[getter]
    fn segments(&self) -> u64 {
        self.totals.segments
    }

    /// The segments the original text would have taken over the same messages.
    #[getter]
    fn segments_before(&self) -> u64 {
        self.totals.segments_before
    }

    /// Messages of each variant so far (one count for one text).
    #[getter]
    fn per_variant(&self) -> Vec<u64> {
        let mut counts = self.totals.per_variant.clone();
        counts.resize(self.texts.templates().len(), 0);
        counts
    }

    /// The first recipient `(line, e164, id, fields)`, its message and its variant, once encoded.
    #[getter]
    fn first(&self) -> Option<(RecipientTuple, PyRenderedMessage, usize)> {
        self.first
            .as_ref()
            .map(|(recipient, message, variant)| (as_tuple(recipient.clone()), message.clone().into(), *variant))
    }
}

/// What can go wrong without the GIL, turned into a Python exception once it is held again.
enum Failure {
    Io(std::io::Error),
    Core(shortcore::Error),
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRecipientSpool>()?;
    m.add_class::<PyMessageRows>()?;
    // The order the rows are written in, for the insert's column list: stated once, here.
    m.add(
        "MESSAGE_COLUMNS",
        PyTuple::new(m.py(), shortcore::messages::MESSAGE_COLUMNS)?,
    )?;
    m.add("VARIANT_COLUMN", shortcore::messages::VARIANT_COLUMN)
}
