//! A campaign's personalised messages written straight into `ClickHouse`'s `RowBinary` format for
//! the analytics store's `messages` table, so a million rows go in without an object per row.
//!
//! Column order and types are [`MESSAGE_COLUMNS`]; the table is defined by the Python package's
//! migrations (`shortcore.analytics`), and a test there inserts these bytes and reads them back.

use crate::links::{MessageTemplate, RenderedMessage};
use crate::recipients::Recipient;
use crate::tokens::TokenCodec;
use crate::variants::VariantAssigner;
use crate::{Error, Result};

/// The `messages` columns, in the order [`MessageRows::encode`] writes them; rows of a variant
/// campaign add [`VARIANT_COLUMN`].
pub const MESSAGE_COLUMNS: [&str; 16] = [
    "campaign_id",
    "account",
    "recipient_index",
    "line",
    "phone",
    "recipient_id",
    "fields",
    "text",
    "encoding",
    "characters",
    "units",
    "segments",
    "segments_before",
    "short_urls",
    "sent_at",
    "created_at",
];

/// The column a variant campaign's rows end with: the variant's name.
pub const VARIANT_COLUMN: &str = "variant";

/// What every message of one campaign shares.
#[derive(Debug, Clone)]
pub struct CampaignRows {
    /// The campaign's id.
    pub campaign_id: String,
    /// The owning account.
    pub account: String,
    /// The short domain's base URL (`https://ul.example`).
    pub base_url: String,
    /// The first sequence number of the campaign's token range.
    pub seq_start: u64,
    /// When the messages are sent, in milliseconds since the epoch, if known.
    pub sent_at_ms: Option<i64>,
    /// When the campaign is created, in milliseconds since the epoch.
    pub created_at_ms: i64,
}

/// Consecutive rows as one piece of work wrote them.
#[derive(Debug, Clone, Default)]
pub struct EncodedPart {
    /// Their `RowBinary` bytes.
    pub rows: Vec<u8>,
    /// Their counts.
    pub totals: MessageTotals,
    /// The first message and its variant.
    pub first: Option<(usize, RenderedMessage)>,
}

/// Totals over the messages encoded so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MessageTotals {
    /// Messages written.
    pub messages: u64,
    /// Their SMS segments.
    pub segments: u64,
    /// The segments the original text would have taken, summed over the messages.
    pub segments_before: u64,
    /// Messages of each variant (one count for a one-text campaign).
    pub per_variant: Vec<u64>,
}

impl MessageTotals {
    /// Adds other counts to these.
    pub fn add(&mut self, other: &MessageTotals) {
        if self.per_variant.len() < other.per_variant.len() {
            self.per_variant.resize(other.per_variant.len(), 0);
        }
        for (total, n) in self.per_variant.iter_mut().zip(&other.per_variant) {
            *total += n;
        }
        self.messages += other.messages;
        self.segments += other.segments;
        self.segments_before += other.segments_before;
    }
}

/// A campaign's text, or its A/B variants' texts with the assigner that picks one per recipient.
#[derive(Debug, Clone)]
pub struct CampaignTexts {
    templates: Vec<MessageTemplate>,
    /// Variant names, written in the `variant` column; empty for a one-text campaign.
    names: Vec<String>,
    assigner: Option<VariantAssigner>,
    /// Token slots per recipient: the most links any text has.
    slots: u64,
}

impl CampaignTexts {
    /// One text for every recipient; its rows leave the `variant` column out.
    pub fn one(template: MessageTemplate) -> Self {
        let slots = template.shortened_count() as u64;
        Self {
            templates: vec![template],
            names: Vec::new(),
            assigner: None,
            slots,
        }
    }

    /// Named variants, recipient `r` getting `variants[assigner.variant_of(r)]`; their rows end
    /// with the `variant` column.
    ///
    /// # Errors
    /// An invalid-argument error unless there is one variant per weight of the assigner.
    pub fn variants(variants: Vec<(String, MessageTemplate)>, assigner: VariantAssigner) -> Result<Self> {
        if variants.len() != assigner.len() {
            return Err(Error::invalid_argument(format!(
                "{} variant(s) for an assigner of {}",
                variants.len(),
                assigner.len()
            )));
        }
        let (names, templates): (Vec<_>, Vec<_>) = variants.into_iter().unzip();
        let slots = templates.iter().map(|t| t.shortened_count() as u64).max().unwrap_or(0);
        Ok(Self {
            templates,
            names,
            assigner: Some(assigner),
            slots,
        })
    }

    /// Whether the rows have the `variant` column.
    pub fn has_variants(&self) -> bool {
        self.assigner.is_some()
    }

    /// The texts, in variant order.
    pub fn templates(&self) -> &[MessageTemplate] {
        &self.templates
    }

    /// Token slots per recipient.
    pub fn slots(&self) -> u64 {
        self.slots
    }

    fn variant_of(&self, recipient: u64) -> usize {
        self.assigner.as_ref().map_or(0, |a| a.variant_of(recipient))
    }
}

/// Renders a campaign's recipients batch by batch into `RowBinary` rows; recipient `i` (counted
/// over every batch) gets the tokens of `seq_start + i × slots + l` for its text's links `l`.
#[derive(Debug)]
pub struct MessageRows<'a> {
    texts: &'a CampaignTexts,
    codec: &'a TokenCodec,
    campaign: &'a CampaignRows,
    next_index: u64,
    /// Totals so far.
    pub totals: MessageTotals,
}

impl<'a> MessageRows<'a> {
    /// Starts at recipient `first_index` (0 for a whole campaign).
    pub fn new(texts: &'a CampaignTexts, codec: &'a TokenCodec, campaign: &'a CampaignRows, first_index: u64) -> Self {
        Self {
            texts,
            codec,
            campaign,
            next_index: first_index,
            totals: MessageTotals::default(),
        }
    }

    /// Renders `recipients` (the next ones of the campaign, in order) and appends their rows to
    /// `out`; the work is spread over the machine's cores. Returns the first message rendered and
    /// its variant, for callers that answer with it.
    ///
    /// # Errors
    /// An invalid-argument error when a sequence number would overflow or not fit the codec.
    pub fn encode(&mut self, recipients: &[Recipient], out: &mut Vec<u8>) -> Result<Option<(usize, RenderedMessage)>> {
        let parts = self.encode_parts(recipients)?;
        out.reserve(parts.iter().map(|part| part.rows.len()).sum());
        let mut first_message = None;
        for part in parts {
            out.extend_from_slice(&part.rows);
            first_message = first_message.or(part.first);
        }
        Ok(first_message)
    }

    /// Like [`encode`](Self::encode), but the rows come in consecutive parts, one per piece of
    /// work, for a caller that copies them out itself.
    ///
    /// # Errors
    /// As [`encode`](Self::encode).
    pub fn encode_parts(&mut self, recipients: &[Recipient]) -> Result<Vec<EncodedPart>> {
        use rayon::prelude::*;
        // Parts of a few thousand rows keep every core busy and each part's buffers small.
        const PART: usize = 4_096;
        let first = self.next_index;
        let this = &*self;
        let parts = recipients
            .par_chunks(PART)
            .enumerate()
            .map(|(i, part)| this.encode_part(part, first + (i * PART) as u64))
            .collect::<Result<Vec<_>>>()?;
        self.next_index += recipients.len() as u64;
        for part in &parts {
            self.totals.add(&part.totals);
        }
        Ok(parts)
    }

    fn encode_part(&self, recipients: &[Recipient], first: u64) -> Result<EncodedPart> {
        let (campaign, texts) = (self.campaign, self.texts);
        let slots = texts.slots;
        let overflow = || Error::invalid_argument("the recipients' sequence numbers overflow 64 bits");
        let start = first
            .checked_mul(slots)
            .and_then(|o| o.checked_add(campaign.seq_start))
            .ok_or_else(overflow)?;
        let count = (recipients.len() as u64).checked_mul(slots).ok_or_else(overflow)?;
        let mut tokens = Vec::new();
        self.codec.encode_range_into(start, count, &mut tokens)?;
        let base = campaign.base_url.trim_end_matches('/');
        let mut urls: Vec<String> = Vec::with_capacity(slots as usize);
        let mut part = EncodedPart {
            rows: Vec::with_capacity(recipients.len() * 256),
            totals: MessageTotals {
                messages: recipients.len() as u64,
                per_variant: vec![0; texts.templates.len()],
                ..MessageTotals::default()
            },
            first: None,
        };
        let (out, totals) = (&mut part.rows, &mut part.totals);
        for (i, recipient) in recipients.iter().enumerate() {
            let index = first + i as u64;
            let variant = texts.variant_of(index);
            let template = &texts.templates[variant];
            let at = i * slots as usize;
            urls.clear();
            urls.extend(tokens[at..at + template.shortened_count()].iter().map(|token| {
                let mut url = String::with_capacity(base.len() + 1 + token.as_str().len());
                url.push_str(base);
                url.push('/');
                url.push_str(token.as_str());
                url
            }));
            let message = template.render(&urls)?;
            let after = message.after;
            let before = template.original_size().segments;
            totals.segments += after.segments as u64;
            totals.segments_before += before as u64;
            totals.per_variant[variant] += 1;
            string(out, &campaign.campaign_id);
            string(out, &campaign.account);
            out.extend_from_slice(&(index as u32).to_le_bytes());
            out.extend_from_slice(&recipient.line.to_le_bytes());
            string(out, &recipient.phone);
            string(out, recipient.id.as_deref().unwrap_or(""));
            varint(out, recipient.fields.len() as u64);
            for (key, value) in &recipient.fields {
                string(out, key);
                string(out, value);
            }
            string(out, &message.text);
            string(out, after.encoding.as_str());
            out.extend_from_slice(&(after.characters as u32).to_le_bytes());
            out.extend_from_slice(&(after.units as u32).to_le_bytes());
            out.extend_from_slice(&(after.segments as u16).to_le_bytes());
            out.extend_from_slice(&(before as u16).to_le_bytes());
            varint(out, message.short_urls.len() as u64);
            for url in &message.short_urls {
                string(out, url);
            }
            match campaign.sent_at_ms {
                None => out.push(1),
                Some(ms) => {
                    out.push(0);
                    out.extend_from_slice(&ms.to_le_bytes());
                }
            }
            out.extend_from_slice(&campaign.created_at_ms.to_le_bytes());
            if let Some(name) = texts.names.get(variant) {
                string(out, name);
            }
            if i == 0 {
                part.first = Some((variant, message));
            }
        }
        Ok(part)
    }
}

/// `ClickHouse`'s variable-length integer (LEB128), as `RowBinary` prefixes strings and arrays.
fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::links::RewriteOptions;

    #[test]
    fn varints() {
        for (value, bytes) in [(0u64, &[0u8][..]), (127, &[127]), (128, &[0x80, 1]), (300, &[0xac, 2])] {
            let mut out = Vec::new();
            varint(&mut out, value);
            assert_eq!(out, bytes);
        }
    }

    fn campaign() -> CampaignRows {
        CampaignRows {
            campaign_id: "c".into(),
            account: "a".into(),
            base_url: "https://ul.example".into(),
            seq_start: 100,
            sent_at_ms: Some(5),
            created_at_ms: 6,
        }
    }

    fn recipients(n: u32) -> Vec<Recipient> {
        (0..n)
            .map(|i| Recipient {
                line: i + 2,
                phone: format!("+49151{i:08}"),
                id: (i % 2 == 0).then(|| format!("r{i}")),
                fields: vec![("name".into(), format!("N{i}"))],
            })
            .collect()
    }

    #[test]
    fn parallel_parts_match_one_pass() {
        let texts = CampaignTexts::one(MessageTemplate::new(
            "Hi https://a.example and https://b.example",
            RewriteOptions::default(),
        ));
        let codec = TokenCodec::new(b"k", 7).unwrap();
        let campaign = campaign();
        let recipients = recipients(5_000);
        let mut whole = Vec::new();
        let mut rows = MessageRows::new(&texts, &codec, &campaign, 0);
        let (variant, first) = rows.encode(&recipients, &mut whole).unwrap().unwrap();
        assert_eq!(variant, 0);
        assert_eq!(
            first.short_urls[1],
            format!("https://ul.example/{}", codec.encode(101).unwrap().as_str())
        );
        let serial = rows.encode_part(&recipients, 0).unwrap();
        assert_eq!(whole, serial.rows);
        assert_eq!(rows.totals.segments, serial.totals.segments);
        assert_eq!(rows.totals.messages, 5_000);
        assert_eq!(rows.totals.per_variant, [5_000]);
    }

    #[test]
    fn variants_get_their_own_text_tokens_and_name() {
        let options = RewriteOptions::default();
        let assigner = VariantAssigner::new(b"seed", &[1.0, 1.0]).unwrap();
        let texts = CampaignTexts::variants(
            vec![
                ("A".into(), MessageTemplate::new("One https://a.example", options)),
                (
                    "B".into(),
                    MessageTemplate::new("Two https://b.example https://c.example", options),
                ),
            ],
            assigner.clone(),
        )
        .unwrap();
        assert_eq!(texts.slots(), 2);
        let codec = TokenCodec::new(b"k", 7).unwrap();
        let campaign = campaign();
        let recipients = recipients(9_000);
        let mut rows = MessageRows::new(&texts, &codec, &campaign, 0);
        let parts = rows.encode_parts(&recipients).unwrap();
        let split = assigner.variants_of(0, 9_000);
        let b = split.iter().filter(|&&v| v == 1).count() as u64;
        assert_eq!(rows.totals.per_variant, [9_000 - b, b]);
        let (variant, first) = parts[0].first.clone().unwrap();
        assert_eq!(variant, split[0]);
        assert_eq!(first.short_urls.len(), variant + 1);
        assert_eq!(
            first.short_urls[0],
            format!("https://ul.example/{}", codec.encode(100).unwrap().as_str())
        );
        // Each row ends with its variant's name, after created_at.
        let last = parts.last().unwrap();
        let name = if split[8_999] == 0 { b"A" } else { b"B" };
        assert_eq!(&last.rows[last.rows.len() - 2..], &[1, name[0]]);
        assert!(CampaignTexts::variants(vec![("A".into(), MessageTemplate::new("x", options))], assigner).is_err());
    }
}
