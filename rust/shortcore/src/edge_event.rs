//! The edge's record of one request to a short link, written as the JSON object the event stream
//! carries (version 1; the fields are listed in `DESIGN.md`).
//!
//! The edge used to build this object as a Python dict and serialise it with orjson, after a
//! separate pass over the headers for the classifier; here one pass over the headers serves both,
//! and the text is written straight into one buffer.

use std::io::Write;

use crate::classify::{Classification, Header, RequestHeaders};

/// The version of the event format, the `v` field.
pub const EVENT_VERSION: u32 = 1;
/// Bytes of the token kept in an event (a path can be 10 KB of garbage).
pub const MAX_TOKEN_BYTES: usize = 64;
/// Bytes of the user agent and of each header value kept in an event.
pub const MAX_HEADER_BYTES: usize = 1024;
/// Characters of the method kept in an event.
pub const MAX_METHOD_CHARS: usize = 16;

/// What the edge knows of a request to a short link besides its headers and its verdict.
#[derive(Debug, Clone, Copy)]
pub struct ClickRecord<'a> {
    /// The event id (UUIDv7-shaped, made by the edge).
    pub event_id: &'a str,
    /// Unix time in milliseconds.
    pub time_ms: i64,
    /// `ok`, `unknown`, `malformed`, `expired`, `limited`, `method` or `unavailable`.
    pub outcome: &'a str,
    /// The campaign's account, empty when no campaign answered.
    pub account: &'a str,
    /// The campaign, empty when none answered.
    pub campaign_id: &'a str,
    /// The campaign's domain, or the request's host when no campaign answered.
    pub domain: &'a str,
    /// The token as requested (any bytes).
    pub token: &'a [u8],
    /// The recipient's index in the campaign, -1 when none.
    pub recipient_index: i64,
    /// The link's index in the message, -1 when none.
    pub link_index: i64,
    /// The HTTP method.
    pub method: &'a str,
    /// The client address.
    pub ip: &'a str,
    /// The click id given to the phone, empty unless the redirect succeeded.
    pub click_id: &'a str,
}

impl ClickRecord<'_> {
    /// Appends the event as one JSON object to `out`. `headers` are the request's headers as the
    /// classifier saw them; every one it reads but the user agent (which has a field of its own)
    /// goes into `headers`. Text that is not UTF-8 is written with replacement characters.
    ///
    /// # Examples
    /// ```
    /// use shortcore::classify::{Classifier, Request, RequestHeaders};
    /// use shortcore::edge_event::ClickRecord;
    ///
    /// let mut headers = RequestHeaders::new();
    /// headers.insert(b"user-agent", b"curl/8.5.0");
    /// let request = Request { user_agent: None, method: "GET", headers, seconds_since_send: None, ip: None };
    /// let verdict = Classifier::default().classify(&request);
    /// let record = ClickRecord {
    ///     event_id: "e1", time_ms: 1, outcome: "unknown", account: "", campaign_id: "", domain: "ul.example",
    ///     token: b"abc", recipient_index: -1, link_index: -1, method: "GET", ip: "192.0.2.1", click_id: "",
    /// };
    /// let mut out = Vec::new();
    /// record.write_json(&verdict, &headers, &mut out);
    /// let text = String::from_utf8(out).unwrap();
    /// assert!(text.starts_with(r#"{"v":1,"event_id":"e1","time":1,"type":"click","outcome":"unknown""#));
    /// assert!(text.contains(r#""class":"bot","reason":"bot:ua:curl""#));
    /// ```
    pub fn write_json(&self, verdict: &Classification, headers: &RequestHeaders<'_>, out: &mut Vec<u8>) {
        let ua = verdict.user_agent();
        out.extend_from_slice(b"{\"v\":");
        push_int(out, i64::from(EVENT_VERSION));
        field_str(out, "event_id", self.event_id);
        out.extend_from_slice(b",\"time\":");
        push_int(out, self.time_ms);
        out.extend_from_slice(b",\"type\":\"click\"");
        field_str(out, "outcome", self.outcome);
        field_str(out, "account", self.account);
        field_str(out, "campaign_id", self.campaign_id);
        field_str(out, "domain", self.domain);
        field_bytes(out, "token", self.token, MAX_TOKEN_BYTES);
        out.extend_from_slice(b",\"recipient_index\":");
        push_int(out, self.recipient_index);
        out.extend_from_slice(b",\"link_index\":");
        push_int(out, self.link_index);
        field_str(out, "class", verdict.label().as_str());
        field_str(out, "reason", verdict.reason());
        field_str(out, "browser", ua.browser().unwrap_or(""));
        field_str(out, "os", ua.os().unwrap_or(""));
        field_str(out, "device", ua.device().as_str());
        let method = match self.method.char_indices().nth(MAX_METHOD_CHARS) {
            Some((end, _)) => &self.method[..end],
            None => self.method,
        };
        field_str(out, "method", method);
        field_str(out, "ip", self.ip);
        field_bytes(
            out,
            "user_agent",
            headers.get(Header::UserAgent).unwrap_or_default(),
            MAX_HEADER_BYTES,
        );
        out.extend_from_slice(b",\"headers\":{");
        let mut first = true;
        for header in Header::ALL {
            if header == Header::UserAgent {
                continue;
            }
            if let Some(value) = headers.get(header) {
                if !first {
                    out.push(b',');
                }
                first = false;
                push_str(out, header.name());
                out.push(b':');
                push_bytes(out, value, MAX_HEADER_BYTES);
            }
        }
        out.push(b'}');
        field_str(out, "click_id", self.click_id);
        out.push(b'}');
    }
}

fn field_str(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    push_str(out, value);
}

fn field_bytes(out: &mut Vec<u8>, name: &str, value: &[u8], limit: usize) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    push_bytes(out, value, limit);
}

fn push_int(out: &mut Vec<u8>, value: i64) {
    write!(out, "{value}").expect("writing to memory");
}

/// At most `limit` bytes of `value` as a JSON string, invalid UTF-8 replaced (the cut may split a
/// character; its remains are replaced too, as Python's `value[:limit].decode(errors="replace")`).
fn push_bytes(out: &mut Vec<u8>, value: &[u8], limit: usize) {
    let value = &value[..value.len().min(limit)];
    push_str(out, &String::from_utf8_lossy(value));
}

fn push_str(out: &mut Vec<u8>, value: &str) {
    // serde_json escapes exactly what JSON requires; writing to a Vec cannot fail.
    serde_json::to_writer(&mut *out, value).expect("writing JSON to memory");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classifier, Request};

    fn record<'a>(token: &'a [u8], method: &'a str) -> ClickRecord<'a> {
        ClickRecord {
            event_id: "0190-e",
            time_ms: 1_700_000_000_123,
            outcome: "ok",
            account: "acc\"1",
            campaign_id: "cmp_1",
            domain: "ul.example",
            token,
            recipient_index: 7,
            link_index: 1,
            method,
            ip: "2001:db8::1",
            click_id: "c1",
        }
    }

    fn encode(record: &ClickRecord<'_>, headers: &[(&[u8], &[u8])]) -> serde_json::Value {
        let mut request_headers = RequestHeaders::new();
        for (name, value) in headers {
            request_headers.insert(name, value);
        }
        let request = Request {
            user_agent: None,
            method: record.method,
            headers: request_headers,
            seconds_since_send: None,
            ip: None,
        };
        let verdict = Classifier::default().classify(&request);
        let mut out = Vec::new();
        record.write_json(&verdict, &request_headers, &mut out);
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn every_field_of_the_format() {
        let iphone: &[u8] = b"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 \
            (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
        let event = encode(
            &record(b"Ab3dE9x", "GET"),
            &[
                (b"host", b"ul.example"),
                (b"user-agent", iphone),
                (b"accept", b"text/html"),
                (b"accept-language", b"en-GB"),
                (b"x-other", b"not kept"),
            ],
        );
        let expected = serde_json::json!({
            "v": 1, "event_id": "0190-e", "time": 1_700_000_000_123_i64, "type": "click", "outcome": "ok",
            "account": "acc\"1", "campaign_id": "cmp_1", "domain": "ul.example", "token": "Ab3dE9x",
            "recipient_index": 7, "link_index": 1, "class": "human", "reason": "human",
            "browser": "Mobile Safari", "os": "iOS", "device": "mobile", "method": "GET",
            "ip": "2001:db8::1", "user_agent": String::from_utf8_lossy(iphone),
            "headers": {"accept": "text/html", "accept-language": "en-GB"}, "click_id": "c1",
        });
        assert_eq!(event, expected);
    }

    #[test]
    fn garbage_is_cut_replaced_and_escaped() {
        let token = [b'\xff'; 100];
        let long_value = vec![b'a'; 5000];
        let event = encode(
            &record(&token, "PROPFINDPROPFINDPROPFIND"),
            &[(b"accept", b"\x00\"\\\n\xc3"), (b"accept-language", &long_value)],
        );
        assert_eq!(event["token"].as_str().unwrap().chars().count(), MAX_TOKEN_BYTES);
        assert!(event["token"].as_str().unwrap().chars().all(|c| c == '\u{fffd}'));
        assert_eq!(event["headers"]["accept"], "\u{0}\"\\\n\u{fffd}");
        assert_eq!(
            event["headers"]["accept-language"].as_str().unwrap().len(),
            MAX_HEADER_BYTES
        );
        assert_eq!(event["method"], "PROPFINDPROPFIND");
        assert_eq!(event["user_agent"], "");
        assert_eq!(event["class"], "bot");
    }
}
