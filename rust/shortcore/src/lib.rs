//! shortcore's core: everything on the hot paths of an SMS link-tracking engine, in pure Rust.
//!
//! * [`tokens`] — short-link tokens, a keyed format-preserving permutation of sequence numbers.
//! * [`classify`] — request classification: a person's click, a link preview, or a bot.
//! * [`useragent`] — user-agent parsing: browser, OS and device.
//! * [`links`] — finding links in SMS text and rewriting it with short links.
//! * [`phones`] — recipients' phone numbers validated and normalised to E.164.
//! * [`recipients`] — campaign recipient lists: CSV read as it arrives, phones checked, spooled.
//! * [`messages`] — a campaign's messages as `RowBinary` rows for the analytics store.
//! * [`sms`] — GSM-7 / UCS-2 encoding, length and segment count.
//! * [`eventrows`] — the edge's events checked, enriched and encoded as rows for `ClickHouse`.
//! * [`native`] — one block of `ClickHouse`'s `Native` format, column by column.
//! * [`sequence`] — the sink's sequence rules (`bot:sibling-burst`, `bot:sweep`).
//! * [`variants`] — A/B variants: which of a campaign's texts a recipient gets.
//! * [`resp`] — stream replies read as raw RESP bytes: where a reply ends, its entries.
//!
//! The Python binding (`rust/shortcore-python`) is a thin layer over this crate.
//!
//! # Examples
//! ```
//! use shortcore::TokenCodec;
//!
//! let codec = TokenCodec::new(b"secret", 7)?;
//! let token = codec.encode(1)?;
//! assert_eq!(codec.decode(token.as_str()), Some(1));
//! # Ok::<(), shortcore::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod classify;
pub mod edge_event;
mod error;
pub mod eventrows;
pub mod links;
pub mod messages;
pub mod native;
mod patterns;
pub mod phones;
pub mod recipients;
pub mod resp;
pub mod sequence;
pub mod sms;
pub mod tokens;
pub mod useragent;
pub mod variants;

pub use classify::{
    Classification, Classifier, Header, Label, OwnedHeaders, Request, RequestHeaders, CLASSIFIER_HEADERS,
};
pub use error::{Error, Result};
pub use links::{find_links, Link, MessageTemplate, RenderedMessage, RewriteOptions, SchemeMode};
pub use phones::{FirstSeen, PhoneError, PhoneNormalizer};
pub use sms::{measure, Encoding, MessageSize};
pub use tokens::{Token, TokenCodec};
pub use useragent::{parse_user_agent, Device, UserAgent, Version};
