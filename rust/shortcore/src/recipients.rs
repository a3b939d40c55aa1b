//! Campaign recipient lists: a CSV upload read as it arrives, phones normalised and deduplicated,
//! accepted recipients spooled to a temporary file, every other row reported with its line.
//!
//! Memory stays flat however long the list: the CSV parser holds one record, the spool holds one
//! batch awaiting normalisation, the duplicate check holds 12 bytes a number, and at most
//! `max_rejections` rejections of each kind are kept (the rest are only counted).
//!
//! The CSV dialect is RFC 4180 (`csv-core`): comma-separated, `"`-quoted with `""` inside quotes,
//! LF or CRLF line ends, empty lines skipped. A line number is the physical line a record ends on,
//! as Python's `csv.reader` counts them.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::phones::{FirstSeen, PhoneError, PhoneNormalizer};

/// At most this many columns in a CSV header.
pub const MAX_COLUMNS: usize = 100;
/// At most this many characters in a CSV field; a longer one rejects its row.
pub const MAX_FIELD_CHARACTERS: usize = 1_000;
/// A row longer than this is refused without being held: no legitimate row (100 columns of 1,000
/// characters) comes near it.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// A row with more fields than this is refused the same way.
pub const MAX_RECORD_FIELDS: usize = 256;
/// A rejection keeps at most this many characters of the value.
const VALUE_CHARACTERS: usize = 40;
/// Rows normalised together: enough to spread over every core, small enough to stay flat.
const SETTLE_BATCH: usize = 32_768;

/// Why a whole list cannot be read (no header, no phone column, not UTF-8…); the message is for
/// users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError(pub String);

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ListError {}

impl From<io::Error> for ListError {
    fn from(error: io::Error) -> Self {
        Self(format!("the recipient spool failed: {error}"))
    }
}

/// A row that is not sent: its line, the phone as given (at most 40 characters), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The line number (CSV) or the 1-based position (JSON).
    pub line: u32,
    /// The phone as given, shortened.
    pub value: String,
    /// Why the row is not sent.
    pub reason: String,
}

impl Rejection {
    fn new(line: u32, value: &str, reason: impl Into<String>) -> Self {
        Self {
            line,
            value: value.chars().take(VALUE_CHARACTERS).collect(),
            reason: reason.into(),
        }
    }
}

/// A recipient as the list gives it, before its phone is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecipient {
    /// The line number (CSV) or the 1-based position (JSON).
    pub line: u32,
    /// The phone as given.
    pub phone: String,
    /// The caller's id for the recipient, if any.
    pub id: Option<String>,
    /// Custom fields, in column order.
    pub fields: Vec<(String, String)>,
}

/// An accepted recipient: `phone` is E.164.
pub type Recipient = RawRecipient;

/// Rejections kept for the report, and counted beyond it.
#[derive(Debug, Default, Clone)]
pub struct Rejections {
    /// The first rejections, in line order within each batch.
    pub kept: Vec<Rejection>,
    /// How many rows were rejected in all.
    pub count: u64,
}

impl Rejections {
    fn extend(&mut self, rejections: impl IntoIterator<Item = Rejection>, room: usize) {
        for rejection in rejections {
            self.count += 1;
            if self.kept.len() < room {
                self.kept.push(rejection);
            }
        }
    }
}

/// Accepted recipients in a temporary file, in list order, and the rows refused on the way.
///
/// Rows come in through [`push`](Self::push) (or [`reject`](Self::reject) for a row refused for
/// its shape); phones are normalised a batch at a time on every core, duplicates found with
/// [`FirstSeen`]. After [`finish`](Self::finish), [`read`](Self::read) gives the recipients back
/// in batches.
#[derive(Debug)]
pub struct RecipientSpool {
    normalizer: PhoneNormalizer,
    seen: FirstSeen,
    max_rejections: usize,
    pending: Vec<RawRecipient>,
    pending_rejections: Vec<Rejection>,
    writer: Option<BufWriter<File>>,
    reader: Option<BufReader<File>>,
    accepted: u64,
    rows_read: u64,
    /// Rows refused: an invalid phone, a missing phone, a malformed row.
    pub invalid: Rejections,
    /// Rows whose phone an earlier row has (the recipient is sent once).
    pub duplicates: Rejections,
}

impl RecipientSpool {
    /// An empty spool whose file lives in `directory` (the system's temporary directory when
    /// `None`); the file has no name and disappears with the spool.
    ///
    /// # Errors
    /// When the temporary file cannot be created.
    pub fn new(normalizer: PhoneNormalizer, directory: Option<&Path>, max_rejections: usize) -> io::Result<Self> {
        let file = match directory {
            Some(dir) => tempfile::tempfile_in(dir)?,
            None => tempfile::tempfile()?,
        };
        Ok(Self {
            normalizer,
            seen: FirstSeen::new(),
            max_rejections,
            pending: Vec::new(),
            pending_rejections: Vec::new(),
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
            reader: None,
            accepted: 0,
            rows_read: 0,
            invalid: Rejections::default(),
            duplicates: Rejections::default(),
        })
    }

    /// Recipients accepted so far (settled batches only until [`finish`](Self::finish)).
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Rows seen so far: accepted, invalid or duplicate.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Adds a row; its phone is checked with its batch.
    ///
    /// # Errors
    /// When the spool file cannot be written, or the spool was already finished.
    pub fn push(&mut self, row: RawRecipient) -> io::Result<()> {
        self.pending.push(row);
        if self.pending.len() >= SETTLE_BATCH {
            self.settle()?;
        }
        Ok(())
    }

    /// Refuses a row for its shape (wrong field count, over-long field…).
    pub fn reject(&mut self, line: u32, value: &str, reason: impl Into<String>) {
        self.pending_rejections.push(Rejection::new(line, value, reason));
    }

    /// Settles the last batch and makes the recipients readable from the start.
    ///
    /// # Errors
    /// When the spool file cannot be written or rewound.
    pub fn finish(&mut self) -> io::Result<()> {
        self.settle()?;
        // The duplicate check is the one part that grows with the list (tens of MB at a million
        // numbers); rendering and storing do not need it.
        self.seen = FirstSeen::new();
        self.pending = Vec::new();
        if let Some(writer) = self.writer.take() {
            let mut file = writer.into_inner().map_err(io::IntoInnerError::into_error)?;
            file.seek(SeekFrom::Start(0))?;
            self.reader = Some(BufReader::with_capacity(1 << 20, file));
        }
        Ok(())
    }

    /// Up to `count` recipients, in list order, after [`finish`](Self::finish); empty at the end.
    ///
    /// # Errors
    /// When the spool file cannot be read, or the spool was not finished.
    pub fn read(&mut self, count: usize) -> io::Result<Vec<Recipient>> {
        let reader = self
            .reader
            .as_mut()
            .ok_or_else(|| io::Error::other("the spool is read after finish()"))?;
        let mut out = Vec::with_capacity(count.min(SETTLE_BATCH));
        while out.len() < count {
            match read_recipient(reader)? {
                Some(recipient) => out.push(recipient),
                None => break,
            }
        }
        Ok(out)
    }

    fn settle(&mut self) -> io::Result<()> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("the spool is finished"))?;
        let rows = std::mem::take(&mut self.pending);
        let results = self
            .normalizer
            .normalize_many(&rows.iter().map(|r| r.phone.as_str()).collect::<Vec<_>>());
        let mut invalid = std::mem::take(&mut self.pending_rejections);
        let mut duplicates = Vec::new();
        self.rows_read += (rows.len() + invalid.len()) as u64;
        for (row, result) in rows.into_iter().zip(results) {
            match result {
                Err(reason) => invalid.push(Rejection::new(row.line, &row.phone, reason_text(reason))),
                Ok(e164) => {
                    if let Some(first) = self.seen.first_seen(&e164, row.line) {
                        duplicates.push(Rejection::new(
                            row.line,
                            &row.phone,
                            format!("duplicate of line {first}"),
                        ));
                    } else {
                        self.accepted += 1;
                        write_recipient(writer, row.line, &e164, row.id.as_deref(), &row.fields)?;
                    }
                }
            }
        }
        // Rows refused for their shape were noted as they came; report in line order.
        invalid.sort_by_key(|r| r.line);
        self.invalid.extend(invalid, self.max_rejections);
        self.duplicates.extend(duplicates, self.max_rejections);
        Ok(())
    }
}

fn reason_text(reason: PhoneError) -> &'static str {
    reason.as_str()
}

// Spool records: line u32, phone, id (length + 1, 0 for none), field count u16, then key/value
// pairs; strings are a u32 length and UTF-8 bytes, integers little-endian.

fn write_str(out: &mut impl Write, s: &str) -> io::Result<()> {
    out.write_all(&(s.len() as u32).to_le_bytes())?;
    out.write_all(s.as_bytes())
}

fn write_recipient(
    out: &mut impl Write,
    line: u32,
    phone: &str,
    id: Option<&str>,
    fields: &[(String, String)],
) -> io::Result<()> {
    out.write_all(&line.to_le_bytes())?;
    write_str(out, phone)?;
    match id {
        None => out.write_all(&0u32.to_le_bytes())?,
        Some(id) => {
            out.write_all(&(id.len() as u32 + 1).to_le_bytes())?;
            out.write_all(id.as_bytes())?;
        }
    }
    out.write_all(&(fields.len() as u16).to_le_bytes())?;
    for (key, value) in fields {
        write_str(out, key)?;
        write_str(out, value)?;
    }
    Ok(())
}

fn read_u32(input: &mut impl Read) -> io::Result<u32> {
    let mut bytes = [0; 4];
    input.read_exact(&mut bytes)?;
    Ok(u32::from_le_bytes(bytes))
}

fn read_string(input: &mut impl Read, len: usize) -> io::Result<String> {
    let mut bytes = vec![0; len];
    input.read_exact(&mut bytes)?;
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn read_recipient(input: &mut impl Read) -> io::Result<Option<Recipient>> {
    let mut bytes = [0; 4];
    match input.read_exact(&mut bytes) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let line = u32::from_le_bytes(bytes);
    let len = read_u32(input)? as usize;
    let phone = read_string(input, len)?;
    let id = match read_u32(input)? {
        0 => None,
        n => Some(read_string(input, n as usize - 1)?),
    };
    let mut count = [0; 2];
    input.read_exact(&mut count)?;
    let count = u16::from_le_bytes(count);
    let mut fields = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = read_u32(input)? as usize;
        let key = read_string(input, len)?;
        let len = read_u32(input)? as usize;
        fields.push((key, read_string(input, len)?));
    }
    Ok(Some(Recipient {
        line,
        phone,
        id,
        fields,
    }))
}

/// The header's layout: where the phone and id are, and the custom columns.
#[derive(Debug, Clone)]
struct Header {
    columns: usize,
    phone: usize,
    id: Option<usize>,
    custom: Vec<(usize, String)>,
}

/// A CSV recipient list read as it arrives, chunk by chunk, into a [`RecipientSpool`].
///
/// # Examples
/// ```
/// use shortcore::phones::PhoneNormalizer;
/// use shortcore::recipients::{CsvRecipients, RecipientSpool};
///
/// let mut spool = RecipientSpool::new(PhoneNormalizer::new(Some("DE"))?, None, 100)?;
/// let mut csv = CsvRecipients::new();
/// csv.feed(b"phone,name\n0151 2345 6789,Ana\nnope,B", &mut spool)?;
/// csv.feed(b"en\n+49 151 23456789,Dup\n", &mut spool)?;
/// csv.finish(&mut spool)?;
/// spool.finish()?;
/// let accepted = spool.read(10)?;
/// assert_eq!((accepted[0].line, accepted[0].phone.as_str()), (2, "+4915123456789"));
/// assert_eq!(accepted[0].fields, [("name".to_owned(), "Ana".to_owned())]);
/// assert_eq!(spool.invalid.kept[0].line, 3);
/// assert_eq!(spool.duplicates.kept[0].reason, "duplicate of line 2");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct CsvRecipients {
    parser: csv_core::Reader,
    header: Option<Header>,
    record: Vec<u8>,
    record_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
    /// Line ends consumed so far.
    newlines: u32,
    /// Quote characters in the current record's raw bytes: odd at the end of the file means a
    /// quote was opened and never closed.
    quotes: usize,
    /// The current record outgrew the limits and is being skipped.
    overlong: bool,
    last_byte: Option<u8>,
    started: bool,
    finished: bool,
}

impl Default for CsvRecipients {
    fn default() -> Self {
        Self::new()
    }
}

impl CsvRecipients {
    /// A reader before the first byte.
    pub fn new() -> Self {
        Self {
            parser: csv_core::Reader::new(),
            header: None,
            record: vec![0; 4096],
            record_len: 0,
            ends: vec![0; 16],
            ends_len: 0,
            newlines: 0,
            quotes: 0,
            overlong: false,
            last_byte: None,
            started: false,
            finished: false,
        }
    }

    /// Reads the next chunk of the file; complete rows go to `spool`.
    ///
    /// # Errors
    /// A [`ListError`] when the file cannot be read as a recipient list.
    pub fn feed(&mut self, mut chunk: &[u8], spool: &mut RecipientSpool) -> Result<(), ListError> {
        if self.finished {
            return Err(ListError("the list was already read to its end".to_owned()));
        }
        if !self.started && !chunk.is_empty() {
            self.started = true;
            // `utf-8-sig`: a byte-order mark is not part of the first column's name.
            if let Some(rest) = chunk.strip_prefix(b"\xef\xbb\xbf") {
                chunk = rest;
            }
        }
        self.parse(chunk, false, spool)
    }

    /// Reads the end of the file: the last row, if it has no line end.
    ///
    /// # Errors
    /// A [`ListError`] for an empty file or a quote left open.
    pub fn finish(&mut self, spool: &mut RecipientSpool) -> Result<(), ListError> {
        if !self.finished {
            self.parse(&[], true, spool)?;
            self.finished = true;
        }
        if self.header.is_none() {
            return Err(ListError(
                "the CSV file is empty; it needs a header row with a 'phone' column".to_owned(),
            ));
        }
        Ok(())
    }

    fn parse(&mut self, mut input: &[u8], eof: bool, spool: &mut RecipientSpool) -> Result<(), ListError> {
        loop {
            let (result, read, written, ended) = self.parser.read_record(
                input,
                &mut self.record[self.record_len..],
                &mut self.ends[self.ends_len..],
            );
            let consumed = &input[..read];
            if let Some(at) = memchr::memchr(0, consumed) {
                let line = self.newlines + memchr::memchr_iter(b'\n', &consumed[..at]).count() as u32 + 1;
                return Err(ListError(format!("line {line}: the file contains a NUL character")));
            }
            self.newlines += memchr::memchr_iter(b'\n', consumed).count() as u32;
            self.quotes += memchr::memchr_iter(b'"', consumed).count();
            if let Some(&byte) = consumed.last() {
                self.last_byte = Some(byte);
            }
            input = &input[read..];
            self.record_len += written;
            self.ends_len += ended;
            match result {
                csv_core::ReadRecordResult::OutputFull => {
                    let len = self.record.len();
                    if len >= MAX_RECORD_BYTES {
                        // The row is refused whole: read on to its end, keeping none of it.
                        self.overlong = true;
                        self.record_len = 0;
                    } else {
                        self.record.resize(len * 2, 0);
                    }
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len();
                    if len >= MAX_RECORD_FIELDS {
                        self.overlong = true;
                        self.ends_len = 0;
                    } else {
                        self.ends.resize(len * 2, 0);
                    }
                }
                csv_core::ReadRecordResult::Record => {
                    // A record ends on a line end it has consumed, or on the one that follows.
                    let last = if consumed.is_empty() {
                        self.last_byte
                    } else {
                        consumed.last().copied()
                    };
                    let line = if last == Some(b'\n') {
                        self.newlines
                    } else {
                        self.newlines + 1
                    };
                    let outcome = if std::mem::take(&mut self.overlong) {
                        self.overlong_record(line, spool)
                    } else {
                        self.record(line, eof, spool)
                    };
                    self.record_len = 0;
                    self.quotes = 0;
                    self.ends_len = 0;
                    outcome?;
                }
                csv_core::ReadRecordResult::InputEmpty | csv_core::ReadRecordResult::End => return Ok(()),
            }
        }
    }

    fn overlong_record(&self, line: u32, spool: &mut RecipientSpool) -> Result<(), ListError> {
        if self.header.is_none() {
            return Err(ListError(format!(
                "line {line}: the CSV header is over {MAX_RECORD_FIELDS} columns or {MAX_RECORD_BYTES} bytes"
            )));
        }
        spool.reject(
            line,
            "",
            format!("the row is over {MAX_RECORD_BYTES} bytes or {MAX_RECORD_FIELDS} fields"),
        );
        Ok(())
    }

    fn record(&mut self, line: u32, at_end: bool, spool: &mut RecipientSpool) -> Result<(), ListError> {
        let bytes = &self.record[..self.record_len];
        let text =
            std::str::from_utf8(bytes).map_err(|_| ListError(format!("line {line}: the file is not UTF-8 text")))?;
        let mut values = Vec::with_capacity(self.ends_len);
        let mut start = 0;
        for &end in &self.ends[..self.ends_len] {
            values.push(&text[start..end]);
            start = end;
        }
        if at_end && self.quotes % 2 == 1 {
            return Err(ListError(format!(
                "line {line}: unexpected end of data (a quote is not closed)"
            )));
        }
        let Some(header) = &self.header else {
            self.header = Some(read_header(&values)?);
            return Ok(());
        };
        if values.iter().all(|v| v.trim().is_empty()) {
            return Ok(()); // blank lines are not rows
        }
        let phone_value = values.get(header.phone).copied().unwrap_or("");
        if values.len() != header.columns {
            spool.reject(
                line,
                phone_value,
                format!("has {} fields, header has {}", values.len(), header.columns),
            );
            return Ok(());
        }
        if values
            .iter()
            .any(|v| v.len() > MAX_FIELD_CHARACTERS && v.chars().count() > MAX_FIELD_CHARACTERS)
        {
            spool.reject(
                line,
                phone_value,
                format!("a field is over {MAX_FIELD_CHARACTERS} characters"),
            );
            return Ok(());
        }
        let id = header
            .id
            .map(|i| values[i].trim())
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
        let fields = header
            .custom
            .iter()
            .map(|(i, name)| (name.clone(), values[*i].to_owned()))
            .collect();
        spool
            .push(RawRecipient {
                line,
                phone: phone_value.to_owned(),
                id,
                fields,
            })
            .map_err(ListError::from)
    }
}

fn read_header(values: &[&str]) -> Result<Header, ListError> {
    if values.iter().all(|v| v.trim().is_empty()) {
        return Err(ListError(
            "the CSV file is empty; it needs a header row with a 'phone' column".to_owned(),
        ));
    }
    let names: Vec<String> = values
        .iter()
        .map(|name| name.trim().trim_start_matches('\u{feff}').to_lowercase())
        .collect();
    if names.len() > MAX_COLUMNS {
        return Err(ListError(format!(
            "the CSV file has {} columns; at most {MAX_COLUMNS} are allowed",
            names.len()
        )));
    }
    let Some(phone) = names.iter().position(|n| n == "phone") else {
        let listed: String = names.join(", ").chars().take(200).collect();
        return Err(ListError(format!(
            "the CSV header has no 'phone' column (columns: {listed})"
        )));
    };
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != names.len() {
        return Err(ListError("the CSV header names a column twice".to_owned()));
    }
    let id = names.iter().position(|n| n == "id");
    let custom = names
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != phone && Some(i) != id)
        .map(|(i, name)| (i, name.clone()))
        .collect();
    Ok(Header {
        columns: names.len(),
        phone,
        id,
        custom,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool() -> RecipientSpool {
        RecipientSpool::new(PhoneNormalizer::new(Some("DE")).unwrap(), None, 100).unwrap()
    }

    fn read_all(text: &[u8], chunk: usize) -> Result<RecipientSpool, ListError> {
        let mut spool = spool();
        let mut csv = CsvRecipients::new();
        for part in text.chunks(chunk.max(1)) {
            csv.feed(part, &mut spool)?;
        }
        csv.finish(&mut spool)?;
        spool.finish()?;
        Ok(spool)
    }

    #[test]
    fn lines_are_counted_across_chunks_quotes_and_crlf() {
        let text = b"phone,note\r\n+4915123456789,\"two\r\nlines\"\r\n\r\n+4915123456780,x\r\n+4915123456781,last";
        for chunk in [1, 2, 3, 7, 1000] {
            let mut spool = read_all(text, chunk).unwrap();
            let rows = spool.read(10).unwrap();
            let lines: Vec<u32> = rows.iter().map(|r| r.line).collect();
            assert_eq!(lines, [3, 5, 6], "chunk {chunk}");
            assert_eq!(rows[0].fields[0].1, "two\r\nlines");
        }
    }

    #[test]
    fn shape_rejections_and_order() {
        let long = "x".repeat(MAX_FIELD_CHARACTERS + 1);
        let text = format!("\u{feff}Phone,ID\n+4915123456789,a\nbad,b\n+4915123456780\n+4915123456781,{long}\n");
        let mut spool = read_all(text.as_bytes(), 5).unwrap();
        let reasons: Vec<(u32, &str)> = spool.invalid.kept.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(
            reasons,
            [
                (3, "not a phone number"),
                (4, "has 1 fields, header has 2"),
                (5, "a field is over 1000 characters")
            ]
        );
        let rows = spool.read(10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id.as_deref(), Some("a"));
        assert_eq!(spool.rows_read(), 4);
    }

    #[test]
    fn unreadable_files() {
        for (text, message) in [
            (&b""[..], "empty"),
            (b"name\nAna\n", "no 'phone' column"),
            (b"phone,PHONE\n", "twice"),
            (b"phone\n\"+49151\0\n", "NUL"),
            (b"phone\n\xff\xfe\n", "UTF-8"),
        ] {
            let error = read_all(text, 3).err().unwrap_or_else(|| panic!("{text:?} was read"));
            assert!(error.0.contains(message), "{error} for {text:?}");
        }
    }

    #[test]
    fn huge_rows_are_refused_without_being_held() {
        let huge = "x".repeat(3 * MAX_RECORD_BYTES);
        let many = ",".repeat(MAX_COLUMNS * 10);
        let text = format!("phone,note\n+4915123456789,{huge}\n+4915123456780,{many}\n+4915123456781,ok\n");
        let mut spool = read_all(text.as_bytes(), 64 * 1024).unwrap();
        let lines: Vec<u32> = spool.invalid.kept.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3]);
        assert_eq!(spool.read(10).unwrap()[0].line, 4);
        let mut csv = CsvRecipients::new();
        csv.feed(b"phone,", &mut spool).unwrap();
        csv.feed(many.as_bytes(), &mut spool).unwrap();
        assert!(csv.feed(b"\n", &mut spool).unwrap_err().0.contains("header"));
    }

    #[test]
    fn rejections_are_capped_but_counted() {
        let mut spool = RecipientSpool::new(PhoneNormalizer::new(Some("DE")).unwrap(), None, 2).unwrap();
        for line in 0..5 {
            spool.reject(line, "x", "bad");
        }
        spool.finish().unwrap();
        assert_eq!((spool.invalid.kept.len(), spool.invalid.count), (2, 5));
    }
}
