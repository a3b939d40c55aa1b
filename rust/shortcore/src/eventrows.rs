//! The edge's events (JSON, version 1, one per stream entry) as rows of `ClickHouse`'s `events`
//! table, encoded as a `Native` block of [`EVENT_COLUMNS`].
//!
//! [`EventDecoder::decode`] checks a batch of entries (a malformed one gets the reason it goes to
//! the dead-letter stream with) and adds what the edge leaves out: browser and OS versions, and
//! the country from a trusted header. [`EventDecoder::encode`] applies the sequence rules (see
//! [`crate::sequence`]), then writes the rows with the privacy options applied, ready for one
//! `INSERT … FORMAT Native`.
//!
//! # Examples
//! ```
//! use shortcore::eventrows::{EventDecoder, SinkOptions};
//!
//! let mut decoder = EventDecoder::new(SinkOptions::default());
//! let good = br#"{"v":1,"event_id":"0190a6e4-7c2b-7000-8000-000000000001","time":1700000000000,
//!     "type":"click","class":"human","user_agent":"curl/8.5.0"}"#;
//! let batch = decoder.decode(vec![(b"1-0".to_vec(), Some(good.to_vec())), (b"2-0".to_vec(), Some(b"{".to_vec()))]);
//! assert_eq!(batch.len(), 1);
//! assert!(batch.dead()[0].1.starts_with("not JSON"));
//! let rows = decoder.encode(&batch, &Default::default(), Default::default());
//! assert_eq!(rows.len(), 1);
//! assert!(!rows.native(0, 1).is_empty());
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use rustc_hash::FxHashMap;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::native::{self, Column};
use crate::sequence::{CampaignLinks, SequenceRules, SIBLING_BURST, SWEEP};
use crate::useragent::parse_user_agent;

/// The version of the edge's event JSON this decoder reads.
pub const EVENT_VERSION: i64 = 1;

/// The columns of `events` that [`EncodedRows::body`] fills, in order.
pub const EVENT_COLUMNS: [&str; 33] = [
    "event_id",
    "time",
    "type",
    "outcome",
    "account",
    "campaign_id",
    "domain",
    "token",
    "recipient_index",
    "link_index",
    "class",
    "reason",
    "edge_class",
    "edge_reason",
    "method",
    "ip",
    "user_agent",
    "headers",
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device",
    "country",
    "click_id",
    "conversion_tag",
    "event_name",
    "value",
    "currency",
    "order_id",
    "page",
    "revision",
    "variant",
];

/// What the sink adds or leaves out, the same for every batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOptions {
    /// Client addresses cut to their /24 (IPv4) or /48 (IPv6) network.
    pub truncate_ip: bool,
    /// Keep the user agent string (browser, OS and device are kept either way).
    pub store_user_agent: bool,
    /// A request header (lowercase) that carries the client's country.
    pub country_header: Option<String>,
    /// `bot:sibling-burst`: every link of one message hit within this many milliseconds.
    pub sibling_window_ms: i64,
    /// `bot:sweep`: one client on this many recipients' links within `sweep_window_ms`; 0 = off.
    pub sweep_recipients: usize,
    /// The window of `bot:sweep`, in milliseconds.
    pub sweep_window_ms: i64,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            truncate_ip: false,
            store_user_agent: true,
            country_header: None,
            sibling_window_ms: 2_000,
            sweep_recipients: 5,
            sweep_window_ms: 5_000,
        }
    }
}

/// A string of an event: borrowed from the entry's bytes unless it has escapes (see [`text`]).
pub type Text<'a> = Cow<'a, str>;

/// One event as the edge wrote it. Fields the table has a default for are optional.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct Event<'a> {
    #[serde(default)]
    pub v: Option<i64>,
    #[serde(borrow, deserialize_with = "text")]
    pub event_id: Text<'a>,
    pub time: i64,
    #[serde(rename = "type", borrow, deserialize_with = "text")]
    pub kind: Text<'a>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub outcome: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub account: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub campaign_id: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub domain: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub token: Option<Text<'a>>,
    #[serde(default)]
    pub recipient_index: Option<i64>,
    #[serde(default)]
    pub link_index: Option<i32>,
    #[serde(borrow, deserialize_with = "text")]
    pub class: Text<'a>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub reason: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub method: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub ip: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub user_agent: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "string_map")]
    pub headers: Vec<(Text<'a>, Text<'a>)>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub browser: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub browser_version: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub os: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub os_version: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub device: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub country: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub click_id: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub conversion_tag: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub event_name: Option<Text<'a>>,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub currency: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub order_id: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    pub page: Option<Text<'a>>,
}

/// A string borrowed from the input when it has no escapes. serde borrows only a field written
/// literally as `Cow<str>`: behind an alias or inside an `Option` it copied every string of every
/// event, two dozen allocations an event.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Text<'de>, D::Error> {
    struct TextVisitor;
    impl<'de> Visitor<'de> for TextVisitor {
        type Value = Text<'de>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(text))
        }
        fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(text.to_owned()))
        }
        fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
            Ok(Cow::Owned(text))
        }
    }
    deserializer.deserialize_str(TextVisitor)
}

/// [`text`], or `None` for `null`.
fn opt_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Text<'de>>, D::Error> {
    struct OptTextVisitor;
    impl<'de> Visitor<'de> for OptTextVisitor {
        type Value = Option<Text<'de>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            text(deserializer).map(Some)
        }
    }
    deserializer.deserialize_option(OptTextVisitor)
}

/// A JSON object of strings, in its order (`ClickHouse`'s `Map` keeps it); `null` is empty.
fn string_map<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(Text<'de>, Text<'de>)>, D::Error> {
    /// A string borrowed from the input when it has no escapes.
    struct Borrowed<'a>(Text<'a>);
    impl<'de> Deserialize<'de> for Borrowed<'de> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            text(deserializer).map(Borrowed)
        }
    }

    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(Text<'de>, Text<'de>)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of strings")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4));
            while let Some((Borrowed(key), Borrowed(value))) = map.next_entry()? {
                pairs.push((key, value));
            }
            Ok(pairs)
        }
    }
    deserializer.deserialize_any(Pairs)
}

/// How a field must be typed, for the reason a wrongly typed entry is refused with.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int64,
    Int32,
    Number,
    TextMap,
}

const FIELD_KINDS: [(&str, Kind); 29] = [
    ("outcome", Kind::Text),
    ("account", Kind::Text),
    ("campaign_id", Kind::Text),
    ("domain", Kind::Text),
    ("token", Kind::Text),
    ("recipient_index", Kind::Int64),
    ("link_index", Kind::Int32),
    ("reason", Kind::Text),
    ("method", Kind::Text),
    ("ip", Kind::Text),
    ("user_agent", Kind::Text),
    ("headers", Kind::TextMap),
    ("browser", Kind::Text),
    ("browser_version", Kind::Text),
    ("os", Kind::Text),
    ("os_version", Kind::Text),
    ("device", Kind::Text),
    ("country", Kind::Text),
    ("click_id", Kind::Text),
    ("conversion_tag", Kind::Text),
    ("event_name", Kind::Text),
    ("value", Kind::Number),
    ("currency", Kind::Text),
    ("order_id", Kind::Text),
    ("page", Kind::Text),
    ("event_id", Kind::Text),
    ("type", Kind::Text),
    ("class", Kind::Text),
    ("time", Kind::Int64),
];

/// The largest `value` that fits `Decimal(18, 4)`.
const MAX_VALUE: f64 = 99_999_999_999_999.0;

/// Parses and checks one entry. The checks the sink relies on come first, in a fixed order, so
/// an entry wrong in several ways always gets the same reason.
///
/// # Errors
/// The reason the entry cannot become an event.
pub fn parse_event(raw: &[u8]) -> Result<Event<'_>, String> {
    if let Ok(event) = sonic_rs::from_slice::<Event<'_>>(raw) {
        if event.v == Some(EVENT_VERSION)
            && parse_uuid(&event.event_id).is_some()
            && matches!(&*event.kind, "click" | "conversion")
            && matches!(&*event.class, "human" | "preview" | "bot")
            && event.value.is_none_or(|v| v.is_finite() && v.abs() <= MAX_VALUE)
        {
            return Ok(event);
        }
    }
    Err(refusal(raw))
}

/// Why `raw` is not an event (the slow path: only refused entries come here).
fn refusal(raw: &[u8]) -> String {
    let value: Value = match serde_json::from_slice(raw) {
        Ok(value) => value,
        Err(error) => return format!("not JSON: {error}"),
    };
    let Value::Object(event) = value else {
        return "not a JSON object".to_owned();
    };
    let version = event.get("v");
    if version.and_then(Value::as_i64) != Some(EVENT_VERSION) || version.is_some_and(Value::is_f64) {
        return format!("unsupported event version {}", python_repr(version));
    }
    if event
        .get("event_id")
        .and_then(Value::as_str)
        .is_none_or(|id| parse_uuid(id).is_none())
    {
        return "event_id must be a UUID string".to_owned();
    }
    if !event.get("time").is_some_and(|t| t.is_i64() || t.is_u64()) {
        return "time must be an integer (Unix milliseconds)".to_owned();
    }
    if !matches!(event.get("type").and_then(Value::as_str), Some("click" | "conversion")) {
        return "type must be one of ['click', 'conversion']".to_owned();
    }
    if !matches!(
        event.get("class").and_then(Value::as_str),
        Some("human" | "preview" | "bot")
    ) {
        return "class must be one of ['bot', 'human', 'preview']".to_owned();
    }
    for name in ["campaign_id", "ip", "user_agent", "click_id"] {
        if event.get(name).is_some_and(|v| !v.is_null() && !v.is_string()) {
            return format!("{name} must be a string");
        }
    }
    for name in ["recipient_index", "link_index"] {
        if event.get(name).is_some_and(|v| !v.is_null() && !v.is_i64()) {
            return format!("{name} must be an integer");
        }
    }
    for (name, kind) in FIELD_KINDS {
        let Some(value) = event.get(name) else { continue };
        let fits = match kind {
            Kind::Text => value.is_string() || value.is_null(),
            Kind::Int64 => value.is_i64() || value.is_null(),
            Kind::Int32 => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()) || value.is_null(),
            Kind::Number => value.is_number() || value.is_null(),
            Kind::TextMap => {
                value.is_null()
                    || value
                        .as_object()
                        .is_some_and(|pairs| pairs.values().all(Value::is_string))
            }
        };
        if !fits {
            let wanted = match kind {
                Kind::Text => "a string",
                Kind::Int64 => "an integer",
                Kind::Int32 => "a 32-bit integer",
                Kind::Number => "a number",
                Kind::TextMap => "an object of strings",
            };
            return format!("{name} must be {wanted}, got {value}");
        }
    }
    if event
        .get("value")
        .and_then(Value::as_f64)
        .is_some_and(|v| v.is_nan() || v.abs() > MAX_VALUE)
    {
        return "value out of range for Decimal(18, 4)".to_owned();
    }
    match serde_json::from_slice::<Event<'_>>(raw) {
        Ok(_) => "not an event".to_owned(),
        Err(error) => error.to_string(),
    }
}

/// A JSON value as Python's `repr` would show the same value (the reasons read like Python's).
fn python_repr(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "None".to_owned(),
        Some(Value::Bool(true)) => "True".to_owned(),
        Some(Value::Bool(false)) => "False".to_owned(),
        Some(Value::String(text)) => format!("'{text}'"),
        Some(other) => other.to_string(),
    }
}

/// The 16 bytes of a UUID written `8-4-4-4-12` in hex digits of either case.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let text = text.as_bytes();
    if text.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = 0usize;
    for (i, &c) in text.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let nibble = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        out[digits / 2] |= if digits % 2 == 0 { nibble << 4 } else { nibble };
        digits += 1;
    }
    Some(out)
}

self_cell::self_cell!(
    /// An entry's bytes and the event parsed from them, its strings borrowed from the bytes.
    struct Parsed {
        owner: Vec<u8>,
        #[covariant]
        dependent: Event,
    }
    impl {Debug}
);

/// An event on its way in, with what the sink decides about it.
#[derive(Debug)]
pub struct Row {
    /// The stream entry's id.
    pub stream_id: Vec<u8>,
    parsed: Parsed,
    /// Browser and OS versions from the user agent, when the event has none.
    pub(crate) versions: Option<Arc<(String, String)>>,
    /// The country from the trusted header, when the event has none.
    pub(crate) country: Option<String>,
    /// 0, or the sequence rule that caught it (1 = sibling burst, 2 = sweep).
    pub(crate) mark: AtomicU8,
    /// The recipient's A/B variant, decided when the row is first encoded: a row emitted again
    /// by a sequence rule keeps it, whatever campaigns the later batch knows.
    variant: OnceLock<(usize, Arc<str>)>,
}

impl Row {
    /// The entry's bytes, as read.
    pub fn raw(&self) -> &[u8] {
        self.parsed.borrow_owner()
    }

    /// The parsed event.
    pub fn event(&self) -> &Event<'_> {
        self.parsed.borrow_dependent()
    }

    /// What the sink added to the event (`_browser_version`, `_os_version`, `_country`,
    /// `_variant`), as the webhook payload names it.
    pub fn added(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        if let Some(versions) = self.versions.as_deref() {
            if self.event().browser_version.is_none() && !versions.0.is_empty() {
                out.push(("_browser_version", versions.0.as_str()));
            }
            if self.event().os_version.is_none() && !versions.1.is_empty() {
                out.push(("_os_version", versions.1.as_str()));
            }
        }
        if let Some(country) = self.country.as_deref() {
            out.push(("_country", country));
        }
        let variant = self.variant();
        if !variant.is_empty() {
            out.push(("_variant", variant));
        }
        out
    }

    /// The name of the recipient's A/B variant, once encoded ("" for none).
    pub fn variant(&self) -> &str {
        self.variant.get().map_or("", |(_, name)| name)
    }

    /// The index of the recipient's A/B variant, once encoded.
    pub(crate) fn variant_index(&self) -> Option<usize> {
        self.variant.get().map(|(index, _)| *index)
    }

    /// The sequence rule that reclassified this event, if one did.
    pub fn reclassified(&self) -> Option<&'static str> {
        match self.mark.load(Ordering::Relaxed) {
            1 => Some(SIBLING_BURST),
            2 => Some(SWEEP),
            _ => None,
        }
    }
}

/// A checked batch: the events, in stream order, and the entries refused.
#[derive(Debug, Default)]
pub struct DecodedBatch {
    rows: Vec<Arc<Row>>,
    entries: Vec<usize>,
    dead: Vec<(usize, String)>,
}

impl DecodedBatch {
    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no entry was an event.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The events, in stream order.
    pub fn rows(&self) -> &[Arc<Row>] {
        &self.rows
    }

    /// For each event, the index of its entry in the decoded input.
    pub fn entries(&self) -> &[usize] {
        &self.entries
    }

    /// Refused entries: their index in the input and the reason.
    pub fn dead(&self) -> &[(usize, String)] {
        &self.dead
    }

    /// Campaigns of the events: the sibling rule needs each one's number of links (for its
    /// human clicks), and every event of a variant campaign gets its recipient's variant.
    pub fn campaigns(&self) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        let mut set = std::collections::HashSet::new();
        for row in &self.rows {
            if let Some(campaign) = row.event().campaign_id.as_deref().filter(|c| !c.is_empty()) {
                if set.insert(campaign) {
                    seen.push(campaign.to_owned());
                }
            }
        }
        seen
    }

    /// Positions (in [`Self::rows`]) of the events of type `kind`.
    pub fn of_kind(&self, kind: &str) -> Vec<usize> {
        (0..self.rows.len())
            .filter(|&i| self.rows[i].event().kind == kind)
            .collect()
    }

    /// Positions of the clicks whose event id is in `ids`.
    pub fn clicks(&self, ids: &[String]) -> Vec<usize> {
        let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        (0..self.rows.len())
            .filter(|&i| {
                let event = self.rows[i].event();
                event.kind == "click" && wanted.contains(&*event.event_id)
            })
            .collect()
    }

    /// Client addresses of the events with no country yet.
    pub fn addresses_without_country(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut set = std::collections::HashSet::new();
        for row in &self.rows {
            let ip = row.event().ip.as_deref().unwrap_or("");
            if row.event().country.is_none() && row.country.is_none() && !ip.is_empty() && set.insert(ip) {
                out.push(ip.to_owned());
            }
        }
        out
    }

    /// Replaces the event at `position` with `raw` (a conversion after attribution).
    ///
    /// # Errors
    /// The reason, when `raw` is not an event; the batch is unchanged then.
    pub fn replace(&mut self, position: usize, raw: Vec<u8>, decoder: &mut EventDecoder) -> Result<(), String> {
        let Some(old) = self.rows.get(position) else {
            return Err(format!("no event at position {position}"));
        };
        let row = decoder.row(old.stream_id.clone(), raw)?;
        self.rows[position] = Arc::new(row);
        Ok(())
    }
}

/// A batch's rows for `INSERT INTO events (EVENT_COLUMNS) FORMAT Native`: its events, then
/// events of earlier batches that a sequence rule reclassified now.
#[derive(Debug, Default)]
pub struct EncodedRows {
    rows: Vec<Arc<Row>>,
    batch_len: usize,
    /// Each row's mark when encoded (later batches may mark an event again).
    marks: Vec<u8>,
    countries: HashMap<String, String>,
    truncate_ip: bool,
    store_user_agent: bool,
}

impl EncodedRows {
    /// Rows in all.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there is nothing to insert.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows: the batch's events, then the earlier ones emitted again.
    pub fn rows(&self) -> &[Arc<Row>] {
        &self.rows
    }

    /// How many of [`Self::rows`] are the batch's own events.
    pub fn batch_len(&self) -> usize {
        self.batch_len
    }

    /// Each row's revision (1 for an event a sequence rule reclassified).
    pub fn revisions(&self) -> Vec<u8> {
        self.marks.iter().map(|&mark| u8::from(mark != 0)).collect()
    }

    /// Rows `start..end` as one `Native` block.
    ///
    /// # Panics
    /// When the range is out of bounds.
    pub fn native(&self, start: usize, end: usize) -> Vec<u8> {
        let rows = &self.rows[start..end];
        let marks = &self.marks[start..end];
        let n = rows.len();
        let lc = || Column::low_cardinality(n);
        let mut columns: Vec<Column> = vec![
            Column::fixed("UUID", n, 16),
            Column::fixed("DateTime64(3, 'UTC')", n, 8),
            lc(),
            lc(),
            Column::strings(n, 8),
            Column::strings(n, 20),
            lc(),
            Column::strings(n, 8),
            Column::fixed("Int64", n, 8),
            Column::fixed("Int32", n, 4),
            lc(),
            lc(),
            lc(),
            lc(),
            lc(),
            Column::strings(n, 16),
            Column::strings(n, if self.store_user_agent { 140 } else { 0 }),
            Column::maps(n),
            lc(),
            lc(),
            lc(),
            lc(),
            lc(),
            lc(),
            Column::strings(n, 36),
            Column::strings(n, 0),
            lc(),
            Column::fixed("Decimal(18, 4)", n, 8),
            lc(),
            Column::strings(n, 0),
            Column::strings(n, 0),
            Column::fixed("UInt8", n, 1),
            lc(),
        ];
        for (row, &mark) in rows.iter().zip(marks) {
            self.write_row(&mut columns, row, mark);
        }
        let named: Vec<(&str, Column)> = EVENT_COLUMNS.iter().copied().zip(columns).collect();
        native::block(n, &named)
    }

    fn write_row(&self, columns: &mut [Column], row: &Row, mark: u8) {
        let e = row.event();
        let versions = row.versions.as_deref();
        let ip = opt(e.ip.as_ref());
        let reason = match mark {
            1 => SIBLING_BURST,
            2 => SWEEP,
            _ => opt(e.reason.as_ref()),
        };
        let mut c = columns.iter_mut();
        let mut next = || c.next().expect("a column for each of EVENT_COLUMNS");
        next().push_fixed(&uuid_le(&e.event_id));
        next().push_fixed(&e.time.to_le_bytes());
        next().push_str(&e.kind);
        next().push_str(opt(e.outcome.as_ref()));
        next().push_str(opt(e.account.as_ref()));
        next().push_str(opt(e.campaign_id.as_ref()));
        next().push_str(opt(e.domain.as_ref()));
        next().push_str(opt(e.token.as_ref()));
        next().push_fixed(&e.recipient_index.unwrap_or(-1).to_le_bytes());
        next().push_fixed(&e.link_index.unwrap_or(-1).to_le_bytes());
        next().push_str(if mark == 0 { &e.class } else { "bot" });
        next().push_str(reason);
        next().push_str(&e.class);
        next().push_str(opt(e.reason.as_ref()));
        next().push_str(opt(e.method.as_ref()));
        if self.truncate_ip {
            next().push_str(&truncate_ip(ip));
        } else {
            next().push_str(ip);
        }
        next().push_str(if self.store_user_agent {
            opt(e.user_agent.as_ref())
        } else {
            ""
        });
        next().push_pairs(&e.headers);
        next().push_str(opt(e.browser.as_ref()));
        next().push_str(
            e.browser_version
                .as_deref()
                .or(versions.map(|v| v.0.as_str()))
                .unwrap_or(""),
        );
        next().push_str(opt(e.os.as_ref()));
        next().push_str(e.os_version.as_deref().or(versions.map(|v| v.1.as_str())).unwrap_or(""));
        next().push_str(opt(e.device.as_ref()));
        let country = e
            .country
            .as_deref()
            .or(row.country.as_deref())
            .or_else(|| self.countries.get(ip).map(String::as_str))
            .unwrap_or("");
        next().push_str(country);
        next().push_str(opt(e.click_id.as_ref()));
        next().push_str(opt(e.conversion_tag.as_ref()));
        next().push_str(opt(e.event_name.as_ref()));
        next().push_fixed(&decimal4(e.value.unwrap_or(0.0)).to_le_bytes());
        next().push_str(opt(e.currency.as_ref()));
        next().push_str(opt(e.order_id.as_ref()));
        next().push_str(opt(e.page.as_ref()));
        next().push_fixed(&[u8::from(mark != 0)]);
        next().push_str(row.variant());
    }
}

/// A string field's value, empty when absent or null.
fn opt<'a>(value: Option<&'a Text<'_>>) -> &'a str {
    value.map_or("", |text| text.as_ref())
}

/// A UUID as `ClickHouse` keeps it: two little-endian 64-bit halves.
fn uuid_le(text: &str) -> [u8; 16] {
    let uuid = parse_uuid(text).unwrap_or_default();
    let mut out = [0u8; 16];
    for i in 0..8 {
        out[i] = uuid[7 - i];
        out[8 + i] = uuid[15 - i];
    }
    out
}

/// Checks, enriches and encodes batches; keeps what the sequence rules must remember and a cache
/// of parsed user agents between batches.
#[derive(Debug)]
pub struct EventDecoder {
    options: SinkOptions,
    versions: FxHashMap<String, Arc<(String, String)>>,
    rules: SequenceRules,
}

impl EventDecoder {
    /// A decoder with `options`.
    pub fn new(options: SinkOptions) -> Self {
        let rules = SequenceRules::new(
            options.sibling_window_ms,
            options.sweep_window_ms,
            options.sweep_recipients,
        );
        Self {
            options,
            versions: FxHashMap::default(),
            rules,
        }
    }

    /// The options this decoder was made with.
    pub fn options(&self) -> &SinkOptions {
        &self.options
    }

    /// Checks and enriches a batch of entries `(stream id, event bytes)`; `None` bytes mean the
    /// entry has no event field.
    pub fn decode(&mut self, entries: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> DecodedBatch {
        let mut batch = DecodedBatch {
            rows: Vec::with_capacity(entries.len()),
            entries: Vec::with_capacity(entries.len()),
            dead: Vec::new(),
        };
        for (index, (stream_id, raw)) in entries.into_iter().enumerate() {
            let Some(raw) = raw else {
                batch.dead.push((index, "no 'e' field".to_owned()));
                continue;
            };
            match self.row(stream_id, raw) {
                Ok(row) => {
                    batch.rows.push(Arc::new(row));
                    batch.entries.push(index);
                }
                Err(reason) => batch.dead.push((index, reason)),
            }
        }
        batch
    }

    fn row(&mut self, stream_id: Vec<u8>, raw: Vec<u8>) -> Result<Row, String> {
        let parsed = Parsed::try_new(raw, |raw| parse_event(raw))?;
        let event = parsed.borrow_dependent();
        let versions = if event.browser_version.is_none() || event.os_version.is_none() {
            Some(self.versions_of(event.user_agent.as_deref().unwrap_or("")))
        } else {
            None
        };
        let country = if event.country.is_none() {
            self.header_country(event)
        } else {
            None
        };
        Ok(Row {
            stream_id,
            parsed,
            versions,
            country,
            mark: AtomicU8::new(0),
            variant: OnceLock::new(),
        })
    }

    fn versions_of(&mut self, ua: &str) -> Arc<(String, String)> {
        if let Some(found) = self.versions.get(ua) {
            return Arc::clone(found);
        }
        if self.versions.len() > 50_000 {
            self.versions.clear();
        }
        let parsed = parse_user_agent(ua);
        let versions = Arc::new((
            parsed
                .browser_version()
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default(),
            parsed.os_version().map(|v| v.as_str().to_owned()).unwrap_or_default(),
        ));
        self.versions.insert(ua.to_owned(), Arc::clone(&versions));
        versions
    }

    fn header_country(&self, event: &Event<'_>) -> Option<String> {
        let name = self.options.country_header.as_deref()?;
        let (_, value) = event.headers.iter().find(|(key, _)| key == name)?;
        let code = value.trim().to_ascii_uppercase();
        (code.len() == 2 && code.bytes().all(|c| c.is_ascii_uppercase()) && code != "XX").then_some(code)
    }

    /// Applies the sequence rules to `batch` (which reclassifies some of its events, and maybe
    /// earlier ones) and gives the rows to insert. `links` gives a campaign's number of links
    /// (unknown campaigns: no sibling rule) and its variants (each event of a recipient of a
    /// variant campaign gets the variant's name); `countries` a country for client addresses.
    pub fn encode(
        &mut self,
        batch: &DecodedBatch,
        links: &HashMap<String, CampaignLinks>,
        countries: HashMap<String, String>,
    ) -> EncodedRows {
        assign_variants(&batch.rows, links);
        let again = self.rules.apply(&batch.rows, links);
        let mut rows = Vec::with_capacity(batch.rows.len() + again.len());
        rows.extend(batch.rows.iter().cloned());
        rows.extend(again);
        let marks = rows.iter().map(|row| row.mark.load(Ordering::Relaxed)).collect();
        EncodedRows {
            rows,
            batch_len: batch.rows.len(),
            marks,
            countries,
            truncate_ip: self.options.truncate_ip,
            store_user_agent: self.options.store_user_agent,
        }
    }
}

/// Gives each row of a recipient of a variant campaign its variant's name, unless it has one.
fn assign_variants(rows: &[Arc<Row>], links: &HashMap<String, CampaignLinks>) {
    if !links.values().any(CampaignLinks::has_variants) {
        return;
    }
    // A batch comes mostly in runs of one campaign: comparing with the last one's id is cheaper
    // than hashing it again.
    let mut last: Option<(&str, Option<&CampaignLinks>)> = None;
    for row in rows {
        let event = row.event();
        let (Some(campaign), Some(recipient)) = (event.campaign_id.as_deref(), event.recipient_index) else {
            continue;
        };
        if recipient < 0 || row.variant.get().is_some() {
            continue;
        }
        let found = match last {
            Some((id, found)) if id == campaign => found,
            _ => {
                let found = links.get(campaign);
                last = Some((campaign, found));
                found
            }
        };
        if let Some((index, name)) = found.and_then(|l| l.variant(recipient)) {
            // Never refused: only this thread sets it, and only when unset.
            let _ = row.variant.set((index, Arc::clone(name)));
        }
    }
}

/// `value` as `Decimal(18, 4)` the way `ClickHouse`'s `toDecimal64(value, 4)` converts a float:
/// scaled, then cut toward zero.
#[allow(clippy::cast_possible_truncation)]
fn decimal4(value: f64) -> i64 {
    (value * 10_000.0).trunc() as i64
}

/// The network of a client address: /24 for IPv4, /48 for IPv6, written as `ClickHouse` writes
/// it; anything else is dropped.
pub fn truncate_ip(ip: &str) -> String {
    if let Ok(v4) = ip.parse::<Ipv4Addr>() {
        let [a, b, c, _] = v4.octets();
        return Ipv4Addr::new(a, b, c, 0).to_string();
    }
    if let Ok(v6) = ip.parse::<Ipv6Addr>() {
        let bits = u128::from(v6) & !((1u128 << 80) - 1);
        let mut text = String::new();
        let _ = write!(text, "{}", Ipv6Addr::from(bits));
        return text;
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sonic-rs` (the fast path of [`parse_event`]) reads entries exactly as `serde_json` (the
    /// reasons of refused ones) does: what one accepts the other accepts, with the same fields.
    #[test]
    fn the_fast_parser_agrees_with_serde_json() {
        let base = r#""event_id":"0190a6e4-7c2b-7000-8000-000000000001","type":"click","class":"human""#;
        let cases: Vec<Vec<u8>> = [
            format!(r#"{{"v":1,"time":1700000000000,{base}}}"#),
            format!(r#"{{"v":1,"time":1700000000000,{base},"user_agent":"a\"b\\c\u00e9\ud83d\ude00","ip":null}}"#),
            format!(r#"{{"v":1,"time":1700000000000,{base},"user_agent":"\ud800"}}"#),
            format!(r#"{{"v":1,"time":1.5,{base}}}"#),
            format!(r#"{{"v":1.0,"time":1700000000000,{base}}}"#),
            format!(r#"{{"v":1,"time":99999999999999999999,{base}}}"#),
            format!(r#"{{"v":1,"time":1700000000000,{base},"value":1e400}}"#),
            format!(r#"{{"v":1,"time":1700000000000,{base},"value":-0.5,"link_index":2147483648}}"#),
            format!(r#"{{"v":1,"time":1700000000000,{base},"headers":{{"a":"b","c":"d\n"}},"x":[1,{{}}]}}"#),
            format!(r#"{{"v":1,"time":1700000000000,{base},"headers":{{"a":1}}}}"#),
            format!(r#"{{"v":1,"time":1700000000000,{base},"campaign_id":"a","campaign_id":"b"}}"#),
            format!(r#"{{"v":1,"time":1700000000000,{base}}} trailing"#),
            format!(r#"{{"v":1,"time":1700000000000,{base},}}"#),
            format!(r#"  {{"v":1,"time":1700000000000,{base}}}  "#),
            format!(r#"{{"v":1,"time":-1,{base},"recipient_index":-5,"token":""}}"#),
            "[]".to_owned(),
            "{".to_owned(),
            String::new(),
        ]
        .into_iter()
        .map(String::into_bytes)
        .chain([
            format!("{{\"v\":1,\"time\":1,{base},\"ip\":\"\u{1}\"}}").into_bytes(),
            [
                &br#"{"v":1,"time":1,"ip":""#[..],
                &[0xff, 0xfe],
                br#"","#,
                base.as_bytes(),
                b"}",
            ]
            .concat(),
        ])
        .collect();
        for raw in &cases {
            let fast = sonic_rs::from_slice::<Event<'_>>(raw).map(|e| format!("{e:?}"));
            let slow = serde_json::from_slice::<Event<'_>>(raw).map(|e| format!("{e:?}"));
            assert_eq!(fast.ok(), slow.ok(), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed_from_the_entry() {
        let raw = br#"{"v":1,"event_id":"0190a6e4-7c2b-7000-8000-000000000001","time":1,"type":"click",
            "class":"human","campaign_id":"c1","user_agent":"a\"b","headers":{"accept":"text/html"}}"#;
        let event = parse_event(raw).expect("an event");
        assert!(matches!(event.event_id, Cow::Borrowed(_)));
        assert!(matches!(event.campaign_id, Some(Cow::Borrowed("c1"))));
        assert!(matches!(
            &event.headers[..],
            [(Cow::Borrowed("accept"), Cow::Borrowed("text/html"))]
        ));
        // An escape needs a copy, unescaped.
        assert!(matches!(event.user_agent.as_deref(), Some("a\"b")));
        assert!(matches!(event.user_agent, Some(Cow::Owned(_))));
    }

    const ID: &str = "0190a6e4-7c2b-7000-8000-00000000000a";

    fn event(extra: &str) -> Vec<u8> {
        format!(r#"{{"v":1,"event_id":"{ID}","time":1700000000000,"type":"click","class":"human"{extra}}}"#)
            .into_bytes()
    }

    #[test]
    fn reasons_name_the_field() {
        let cases: [(&[u8], &str); 9] = [
            (b"{\"v\":1", "not JSON"),
            (b"[1]", "not a JSON object"),
            (br#"{"v":99}"#, "unsupported event version 99"),
            (br#"{"v":"1"}"#, "unsupported event version '1'"),
            (br#"{"v":1,"event_id":"x"}"#, "event_id must be a UUID string"),
            (
                &event(r#","recipient_index":"seven""#),
                "recipient_index must be an integer",
            ),
            (&event(r#","browser":12"#), "browser must be a string, got 12"),
            (
                &event(r#","headers":{"a":["b"]}"#),
                "headers must be an object of strings",
            ),
            (&event(r#","value":1e300"#), "value out of range"),
        ];
        for (raw, reason) in cases {
            let got = parse_event(raw).unwrap_err();
            assert!(
                got.starts_with(reason),
                "{got:?} for {:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn uuid_halves_are_little_endian() {
        assert_eq!(
            uuid_le(ID),
            [0, 0x70, 0x2b, 0x7c, 0xe4, 0xa6, 0x90, 0x01, 0x0a, 0, 0, 0, 0, 0, 0, 0x80]
        );
    }

    #[test]
    fn a_block_has_every_column() {
        let mut decoder = EventDecoder::new(SinkOptions::default());
        let batch = decoder.decode(vec![(b"1-0".to_vec(), Some(event(r#","headers":{"a":"b"}"#)))]);
        let rows = decoder.encode(&batch, &HashMap::new(), HashMap::new());
        let block = rows.native(0, 1);
        assert_eq!(&block[..2], &[33, 1]);
        assert_eq!(&block[2..11], b"\x08event_id");
        let has = |part: &[u8]| block.windows(part.len()).any(|w| w == part);
        assert!(has(b"\x08revision\x05UInt8\x00"));
        assert!(has(b"\x07variant\x16LowCardinality(String)"));
        assert!(rows.native(0, 0).len() < block.len());
    }

    #[test]
    fn networks_as_clickhouse_writes_them() {
        assert_eq!(truncate_ip("203.0.113.77"), "203.0.113.0");
        assert_eq!(truncate_ip("2001:db8:abcd:12::1"), "2001:db8:abcd::");
        assert_eq!(truncate_ip("::ffff:1.2.3.4"), "::");
        assert_eq!(truncate_ip("01.2.3.4"), "");
        assert_eq!(truncate_ip(""), "");
    }

    #[test]
    fn decimals_are_cut_like_to_decimal64() {
        assert_eq!(decimal4(19.9), 199_000);
        assert_eq!(decimal4(0.1 + 0.2), 3_000);
        assert_eq!(decimal4(1.000_05), 10_000);
        assert_eq!(decimal4(-2.555_59), -25_555);
    }

    #[test]
    fn country_from_the_trusted_header() {
        let mut decoder = EventDecoder::new(SinkOptions {
            country_header: Some("cf-ipcountry".to_owned()),
            ..SinkOptions::default()
        });
        let batch = decoder.decode(vec![
            (b"1-0".to_vec(), Some(event(r#","headers":{"cf-ipcountry":" de "}"#))),
            (b"2-0".to_vec(), Some(event(r#","headers":{"cf-ipcountry":"XX"}"#))),
        ]);
        assert_eq!(batch.rows()[0].country.as_deref(), Some("DE"));
        assert_eq!(batch.rows()[1].country, None);
    }
}
