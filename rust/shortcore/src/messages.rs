//! A campaign's personalised messages written straight into `ClickHouse`'s `RowBinary` format for
//! the analytics store's `messages` table, so a million rows go in without an object per row.
//!
//! Column order and types are [`MESSAGE_COLUMNS`]; the table is defined by the Python package's
//! migrations (`shortcore.analytics`), and a test there inserts these bytes and reads them back.

use crate::links::{MessageTemplate, RenderedMessage};
use crate::recipients::Recipient;
use crate::tokens::TokenCodec;
use crate::Result;

/// The `messages` columns, in the order [`MessageRows::encode`] writes them.
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

/// Consecutive rows: their `RowBinary` bytes, their SMS segments, and the first one's message.
pub type EncodedPart = (Vec<u8>, u64, Option<RenderedMessage>);

/// Totals over the messages encoded so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MessageTotals {
    /// Messages written.
    pub messages: u64,
    /// Their SMS segments.
    pub segments: u64,
    /// The segments the original text would have taken, summed over the messages.
    pub segments_before: u64,
}

/// Renders a campaign's recipients batch by batch into `RowBinary` rows; recipient `i` (counted
/// over every batch) gets the tokens of `seq_start + i × links + l`.
#[derive(Debug)]
pub struct MessageRows<'a> {
    template: &'a MessageTemplate,
    codec: &'a TokenCodec,
    campaign: &'a CampaignRows,
    next_index: u64,
    /// Totals so far.
    pub totals: MessageTotals,
}

impl<'a> MessageRows<'a> {
    /// Starts at recipient `first_index` (0 for a whole campaign).
    pub fn new(
        template: &'a MessageTemplate,
        codec: &'a TokenCodec,
        campaign: &'a CampaignRows,
        first_index: u64,
    ) -> Self {
        Self {
            template,
            codec,
            campaign,
            next_index: first_index,
            totals: MessageTotals::default(),
        }
    }

    /// Renders `recipients` (the next ones of the campaign, in order) and appends their rows to
    /// `out`; the work is spread over the machine's cores. Returns the first message rendered,
    /// for callers that answer with it.
    ///
    /// # Errors
    /// An invalid-argument error when a sequence number would overflow or not fit the codec.
    pub fn encode(&mut self, recipients: &[Recipient], out: &mut Vec<u8>) -> Result<Option<RenderedMessage>> {
        let parts = self.encode_parts(recipients)?;
        out.reserve(parts.iter().map(|part| part.0.len()).sum());
        let mut first_message = None;
        for (bytes, _, message) in parts {
            out.extend_from_slice(&bytes);
            first_message = first_message.or(message);
        }
        Ok(first_message)
    }

    /// Like [`encode`](Self::encode), but the rows come in consecutive parts, one per piece of
    /// work, for a caller that copies them out itself: `(rows, segments, first message)`.
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
        let n = recipients.len() as u64;
        self.next_index += n;
        self.totals.messages += n;
        self.totals.segments += parts.iter().map(|part| part.1).sum::<u64>();
        self.totals.segments_before += self.template.original_size().segments as u64 * n;
        Ok(parts)
    }

    fn encode_part(&self, recipients: &[Recipient], first: u64) -> Result<EncodedPart> {
        let campaign = self.campaign;
        let messages = self.template.render_recipients(
            self.codec,
            &campaign.base_url,
            campaign.seq_start,
            first,
            recipients.len() as u64,
        )?;
        let before = self.template.original_size().segments;
        let mut out = Vec::with_capacity(recipients.len() * 256);
        let mut segments = 0;
        for (i, (recipient, message)) in recipients.iter().zip(&messages).enumerate() {
            let after = message.after;
            segments += after.segments as u64;
            string(&mut out, &campaign.campaign_id);
            string(&mut out, &campaign.account);
            out.extend_from_slice(&((first + i as u64) as u32).to_le_bytes());
            out.extend_from_slice(&recipient.line.to_le_bytes());
            string(&mut out, &recipient.phone);
            string(&mut out, recipient.id.as_deref().unwrap_or(""));
            varint(&mut out, recipient.fields.len() as u64);
            for (key, value) in &recipient.fields {
                string(&mut out, key);
                string(&mut out, value);
            }
            string(&mut out, &message.text);
            string(&mut out, after.encoding.as_str());
            out.extend_from_slice(&(after.characters as u32).to_le_bytes());
            out.extend_from_slice(&(after.units as u32).to_le_bytes());
            out.extend_from_slice(&(after.segments as u16).to_le_bytes());
            out.extend_from_slice(&(before as u16).to_le_bytes());
            varint(&mut out, message.short_urls.len() as u64);
            for url in &message.short_urls {
                string(&mut out, url);
            }
            match campaign.sent_at_ms {
                None => out.push(1),
                Some(ms) => {
                    out.push(0);
                    out.extend_from_slice(&ms.to_le_bytes());
                }
            }
            out.extend_from_slice(&campaign.created_at_ms.to_le_bytes());
        }
        Ok((out, segments, messages.into_iter().next()))
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

    #[test]
    fn parallel_parts_match_one_pass() {
        let template = MessageTemplate::new("Hi https://a.example and https://b.example", RewriteOptions::default());
        let codec = TokenCodec::new(b"k", 7).unwrap();
        let campaign = CampaignRows {
            campaign_id: "c".into(),
            account: "a".into(),
            base_url: "https://ul.example".into(),
            seq_start: 100,
            sent_at_ms: Some(5),
            created_at_ms: 6,
        };
        let recipients: Vec<Recipient> = (0..5_000)
            .map(|i| Recipient {
                line: i + 2,
                phone: format!("+49151{i:08}"),
                id: (i % 2 == 0).then(|| format!("r{i}")),
                fields: vec![("name".into(), format!("N{i}"))],
            })
            .collect();
        let mut whole = Vec::new();
        let mut rows = MessageRows::new(&template, &codec, &campaign, 0);
        let first = rows.encode(&recipients, &mut whole).unwrap().unwrap();
        assert_eq!(
            first.short_urls[1],
            format!("https://ul.example/{}", codec.encode(101).unwrap().as_str())
        );
        let (serial, segments, _) = rows.encode_part(&recipients, 0).unwrap();
        assert_eq!(whole, serial);
        assert_eq!(rows.totals.segments, segments);
        assert_eq!(rows.totals.messages, 5_000);
    }
}
