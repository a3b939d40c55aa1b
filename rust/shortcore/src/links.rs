//! Links in SMS text: finding them, and rewriting a message with short links.
//!
//! Detection is `linkify`'s (trailing punctuation, balanced brackets, IRIs), kept to what phones
//! make clickable in an SMS: `http://` and `https://` links, and bare links that start with
//! `www.`. One rule is added on top: text in scripts written without spaces (Chinese, Japanese,
//! Korean particles, Thai…) that follows a link directly ends it, so `詳細はhttps://a.jp/xをご覧`
//! yields `https://a.jp/x`.
//!
//! A [`MessageTemplate`] is built once per message text and renders the text for each recipient
//! from that recipient's short links, reporting the segments before and after shortening.

use linkify::{LinkFinder, LinkKind};
use std::sync::LazyLock;

use crate::error::{Error, Result};
use crate::sms::{measure, MessageSize};
use crate::tokens::TokenCodec;

static FINDER: LazyLock<LinkFinder> = LazyLock::new(|| {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url]).url_must_have_scheme(false);
    finder
});

/// One link found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Byte offset of the first byte of the link in the text.
    pub start: usize,
    /// Byte offset just past the link.
    pub end: usize,
    /// Where the link leads: the link as written, with `https://` put before a bare `www.` link.
    pub destination: String,
}

impl Link {
    /// The link as written in `text` (the text it was found in).
    pub fn as_written<'t>(&self, text: &'t str) -> &'t str {
        &text[self.start..self.end]
    }
}

/// Finds every link in `text`, in order.
///
/// # Examples
/// ```
/// use shortcore::links::find_links;
///
/// let text = "Sale (today only): https://shop.example/sale?utm=sms, or www.example.com.";
/// let found: Vec<&str> = find_links(text).iter().map(|l| l.as_written(text)).collect();
/// assert_eq!(found, ["https://shop.example/sale?utm=sms", "www.example.com"]);
/// assert_eq!(find_links(text)[1].destination, "https://www.example.com");
/// ```
pub fn find_links(text: &str) -> Vec<Link> {
    FINDER
        .links(text)
        .filter_map(|found| {
            let written = cut_at_link_end(found.as_str());
            let written = trim_trailing(written);
            let lower_prefix = written.get(..8).unwrap_or(written).to_ascii_lowercase();
            let destination = if lower_prefix.starts_with("https://") || lower_prefix.starts_with("http://") {
                written.to_owned()
            } else if lower_prefix.starts_with("www.") {
                format!("https://{written}")
            } else {
                return None;
            };
            has_host(&destination).then(|| Link {
                start: found.start(),
                end: found.start() + written.len(),
                destination,
            })
        })
        .collect()
}

/// Characters that end a link where they begin: scripts whose writers put no space after a
/// link, and emoji and symbols, which no one means as part of an address.
fn ends_a_link(c: char) -> bool {
    matches!(c,
        '\u{2190}'..='\u{21FF}'   // arrows
        | '\u{2300}'..='\u{23FF}' // technical symbols (⌚ ⏰)
        | '\u{25A0}'..='\u{27BF}' // shapes, symbols, dingbats
        | '\u{2B00}'..='\u{2BFF}' // more arrows and stars
        | '\u{FE0F}'               // emoji presentation selector
        | '\u{1F000}'..='\u{1FAFF}' // emoji
        |
        '\u{0E00}'..='\u{0EFF}'     // Thai, Lao
        | '\u{1000}'..='\u{109F}'   // Myanmar
        | '\u{1780}'..='\u{17FF}'   // Khmer
        | '\u{3000}'..='\u{303F}'   // CJK punctuation
        | '\u{3040}'..='\u{30FF}'   // Hiragana, Katakana
        | '\u{3400}'..='\u{4DBF}'   // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'   // CJK unified ideographs
        | '\u{AC00}'..='\u{D7AF}'   // Hangul syllables
        | '\u{F900}'..='\u{FAFF}'   // CJK compatibility ideographs
        | '\u{FF00}'..='\u{FFEF}'   // fullwidth forms
        | '\u{20000}'..='\u{3FFFF}' // CJK extensions B–H
    )
}

/// Cuts a link where text in an unspaced script, an emoji or a symbol begins. A host that itself starts in such a
/// script (an internationalised domain) keeps its host, and is cut only where such text follows
/// ASCII in the path.
fn cut_at_link_end(link: &str) -> &str {
    let after_scheme = link.find("://").map_or(0, |i| i + 3);
    let host_is_ascii = link[after_scheme..].chars().next().is_some_and(|c| c.is_ascii());
    let mut previous_ascii = false;
    for (i, c) in link[after_scheme..].char_indices() {
        if ends_a_link(c) && (host_is_ascii || previous_ascii) {
            return &link[..after_scheme + i];
        }
        previous_ascii = c.is_ascii() && !matches!(c, '.' | ':');
    }
    link
}

/// Trims what a sentence puts after a link: punctuation and unbalanced closing brackets. Needed
/// again after a cut, because `linkify` trimmed only the end it saw.
fn trim_trailing(mut link: &str) -> &str {
    loop {
        let Some(last) = link.chars().next_back() else {
            return link;
        };
        let drop = match last {
            '.' | ',' | ':' | ';' | '!' | '?' | '\'' | '"' | '*' | '>' => true,
            ')' => link.matches('(').count() < link.matches(')').count(),
            ']' => link.matches('[').count() < link.matches(']').count(),
            '}' => link.matches('{').count() < link.matches('}').count(),
            _ => false,
        };
        if !drop {
            return link;
        }
        link = &link[..link.len() - last.len_utf8()];
    }
}

/// True when an absolute `http(s)://` URL has a host with a dot and something on both sides.
fn has_host(url: &str) -> bool {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next().unwrap_or("");
    host.split('.').filter(|label| !label.is_empty()).count() >= 2 && !host.starts_with('.')
}

/// How short links are written in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemeMode {
    /// As given: `https://ul.example/7fQ2xZa`.
    #[default]
    Keep,
    /// Without the scheme: `ul.example/7fQ2xZa`, saving eight characters per link.
    Drop,
    /// Keep the scheme, except on as many links (from the last one back) as it takes to bring the
    /// message to its fewest segments.
    Fit,
}

/// Options of a [`MessageTemplate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RewriteOptions {
    /// How short links are written.
    pub scheme: SchemeMode,
    /// Shorten only the last link of the message; the others stay as written.
    pub only_last: bool,
}

/// A message text prepared for rendering with each recipient's short links.
///
/// # Examples
/// ```
/// use shortcore::links::{MessageTemplate, RewriteOptions, SchemeMode};
///
/// let template = MessageTemplate::new("Hi! Your offer: https://shop.example/offers/spring?id=1234", RewriteOptions::default());
/// assert_eq!(template.destinations(), ["https://shop.example/offers/spring?id=1234"]);
/// let message = template.render(&["https://ul.example/7fQ2xZa"]).unwrap();
/// assert_eq!(message.text, "Hi! Your offer: https://ul.example/7fQ2xZa");
/// assert_eq!(message.links, [(16, 42)]);
/// ```
#[derive(Debug, Clone)]
pub struct MessageTemplate {
    /// Text between shortened links: `pieces[i]` comes before link `i`, the last after all.
    pieces: Vec<String>,
    piece_chars: Vec<usize>,
    links: Vec<Link>,
    /// Indices into `links` of the links that get short links.
    shortened: Vec<usize>,
    options: RewriteOptions,
    original: MessageSize,
}

/// One recipient's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMessage {
    /// The message text with short links.
    pub text: String,
    /// Character offsets `(start, end)` of each short link in `text`, in order.
    pub links: Vec<(usize, usize)>,
    /// The short links, each with its scheme whether or not the text drops it.
    pub short_urls: Vec<String>,
    /// The original text's size.
    pub before: MessageSize,
    /// The rendered text's size.
    pub after: MessageSize,
}

impl MessageTemplate {
    /// Finds the links of `text` and prepares it for rendering.
    pub fn new(text: &str, options: RewriteOptions) -> Self {
        let links = find_links(text);
        let shortened: Vec<usize> = if options.only_last {
            links.len().checked_sub(1).into_iter().collect()
        } else {
            (0..links.len()).collect()
        };
        let mut pieces = Vec::with_capacity(shortened.len() + 1);
        let mut at = 0;
        for &i in &shortened {
            pieces.push(text[at..links[i].start].to_owned());
            at = links[i].end;
        }
        pieces.push(text[at..].to_owned());
        let piece_chars = pieces.iter().map(|p| p.chars().count()).collect();
        Self {
            pieces,
            piece_chars,
            links,
            shortened,
            options,
            original: measure(text),
        }
    }

    /// Every link found in the text, shortened or not.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The destinations that get a short link, in order: one token per recipient for each.
    pub fn destinations(&self) -> Vec<&str> {
        self.shortened
            .iter()
            .map(|&i| self.links[i].destination.as_str())
            .collect()
    }

    /// How many links get a short link.
    pub fn shortened_count(&self) -> usize {
        self.shortened.len()
    }

    /// The original text's size.
    pub fn original_size(&self) -> MessageSize {
        self.original
    }

    /// Renders the message with `short_urls`, one per [destination](Self::destinations), each
    /// written with its scheme (`https://ul.example/7fQ2xZa`).
    ///
    /// # Errors
    /// An invalid-argument error when the number of short URLs is not the number of destinations.
    pub fn render<S: AsRef<str>>(&self, short_urls: &[S]) -> Result<RenderedMessage> {
        if short_urls.len() != self.shortened.len() {
            return Err(Error::invalid_argument(format!(
                "the message has {} link(s) to shorten, got {} short URL(s)",
                self.shortened.len(),
                short_urls.len()
            )));
        }
        let rendered = match self.options.scheme {
            SchemeMode::Keep => self.render_with(short_urls, 0),
            SchemeMode::Drop => self.render_with(short_urls, short_urls.len()),
            SchemeMode::Fit => {
                let fewest = self.render_with(short_urls, short_urls.len()).after.segments;
                (0..=short_urls.len())
                    .map(|dropped| self.render_with(short_urls, dropped))
                    .find(|message| message.after.segments <= fewest)
                    .unwrap_or_else(|| self.render_with(short_urls, short_urls.len()))
            }
        };
        Ok(rendered)
    }

    /// Renders with the scheme dropped from the last `dropped` short links.
    fn render_with<S: AsRef<str>>(&self, short_urls: &[S], dropped: usize) -> RenderedMessage {
        let keep_until = short_urls.len() - dropped;
        let written: Vec<&str> = short_urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                if i < keep_until {
                    url.as_ref()
                } else {
                    without_scheme(url.as_ref())
                }
            })
            .collect();
        let capacity =
            self.pieces.iter().map(String::len).sum::<usize>() + written.iter().map(|w| w.len()).sum::<usize>();
        let mut text = String::with_capacity(capacity);
        let mut links = Vec::with_capacity(written.len());
        let mut chars = 0;
        for (i, url) in written.iter().enumerate() {
            text.push_str(&self.pieces[i]);
            chars += self.piece_chars[i];
            let url_chars = if url.is_ascii() { url.len() } else { url.chars().count() };
            links.push((chars, chars + url_chars));
            text.push_str(url);
            chars += url_chars;
        }
        text.push_str(&self.pieces[written.len()]);
        let after = measure(&text);
        RenderedMessage {
            text,
            links,
            short_urls: short_urls.iter().map(|u| u.as_ref().to_owned()).collect(),
            before: self.original,
            after,
        }
    }
}

impl MessageTemplate {
    /// Renders the messages of `count` consecutive recipients from `first_recipient`, for a
    /// campaign whose token range starts at `seq_start`: recipient `r`'s link `l` is the token of
    /// `seq_start + r × links + l` on `base_url` (`https://ul.example`).
    ///
    /// # Errors
    /// An invalid-argument error when a sequence number would overflow or not fit the codec.
    ///
    /// # Examples
    /// ```
    /// use shortcore::{MessageTemplate, RewriteOptions, TokenCodec};
    ///
    /// let codec = TokenCodec::new(b"secret", 7)?;
    /// let template = MessageTemplate::new("A https://a.example B https://b.example", RewriteOptions::default());
    /// let messages = template.render_recipients(&codec, "https://ul.example/", 1000, 0, 3)?;
    /// assert_eq!(messages.len(), 3);
    /// let token = codec.encode(1000 + 2 * 2 + 1)?; // recipient 2, link 1
    /// assert_eq!(messages[2].short_urls[1], format!("https://ul.example/{token}"));
    /// # Ok::<(), shortcore::Error>(())
    /// ```
    pub fn render_recipients(
        &self,
        codec: &TokenCodec,
        base_url: &str,
        seq_start: u64,
        first_recipient: u64,
        count: u64,
    ) -> Result<Vec<RenderedMessage>> {
        let links = self.shortened.len() as u64;
        let overflow = || Error::invalid_argument("the recipients' sequence numbers overflow 64 bits");
        let first = first_recipient
            .checked_mul(links)
            .and_then(|o| o.checked_add(seq_start))
            .ok_or_else(overflow)?;
        let total = count.checked_mul(links).ok_or_else(overflow)?;
        let mut tokens = Vec::new();
        codec.encode_range_into(first, total, &mut tokens)?;
        let base = base_url.trim_end_matches('/');
        let mut urls: Vec<String> = Vec::with_capacity(self.shortened.len());
        let count = usize::try_from(count).map_err(|_| overflow())?;
        if links == 0 {
            return Ok(vec![self.render_with::<&str>(&[], 0); count]);
        }
        let mut messages = Vec::with_capacity(count);
        for chunk in tokens.chunks(self.shortened.len()) {
            urls.clear();
            urls.extend(chunk.iter().map(|token| {
                let mut url = String::with_capacity(base.len() + 1 + token.as_str().len());
                url.push_str(base);
                url.push('/');
                url.push_str(token.as_str());
                url
            }));
            messages.push(self.render(&urls)?);
        }
        Ok(messages)
    }
}

/// A URL without its `http://` or `https://`.
pub fn without_scheme(url: &str) -> &str {
    for scheme in ["https://", "http://"] {
        if url.len() >= scheme.len() && url[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return &url[scheme.len()..];
        }
    }
    url
}

/// Converts byte offsets of `text` to character offsets, for offsets given in increasing order.
pub fn char_offsets(text: &str, byte_offsets: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut bytes_seen, mut chars_seen) = (0, 0);
    for offset in byte_offsets {
        chars_seen += text[bytes_seen..offset].chars().count();
        bytes_seen = offset;
        out.push(chars_seen);
    }
    out
}
