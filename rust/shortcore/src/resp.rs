//! Stream replies (`XREAD`, `XREADGROUP`) read as raw RESP2 bytes, so the sink gets entry ids
//! and event bytes without a client library building objects for every entry.
//!
//! [`ReplyScanner`] tells, as the bytes arrive, where one reply ends (it keeps its place, so a
//! reply of megabytes is scanned once however it is cut). [`parse_stream_reply`] then walks the
//! complete reply and finds each entry's id and its `e` field.
//!
//! # Examples
//! ```
//! use shortcore::resp::{parse_stream_reply, ReplyScanner, StreamReply};
//!
//! let reply = b"*1\r\n*2\r\n$11\r\nsc:{events}\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\ne\r\n$2\r\n{}\r\n";
//! let mut scanner = ReplyScanner::default();
//! assert_eq!(scanner.scan(&reply[..20]).unwrap(), None);
//! assert_eq!(scanner.scan(reply).unwrap(), Some(reply.len()));
//! let StreamReply::Entries(entries) = parse_stream_reply(reply, b"e").unwrap() else { panic!() };
//! assert_eq!(&reply[entries[0].id.clone()], b"1-0");
//! assert_eq!(&reply[entries[0].event.clone().unwrap()], b"{}");
//! ```

use std::ops::Range;

use memchr::memchr;

/// Where one RESP2 reply ends, found incrementally.
#[derive(Debug, Default, Clone)]
pub struct ReplyScanner {
    /// The first byte not scanned yet.
    pos: usize,
    /// Elements still to come at each open array level.
    open: Vec<usize>,
    /// Whether the top-level value has started.
    started: bool,
}

/// The bytes are not RESP2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespError(pub String);

impl std::fmt::Display for RespError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RespError {}

impl ReplyScanner {
    /// Scans `buf` (everything received for this reply so far, the same prefix as before plus
    /// new bytes). Returns the reply's length once it is complete.
    ///
    /// # Errors
    /// When the bytes are not RESP2.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, RespError> {
        loop {
            if self.started && self.open.is_empty() {
                return Ok(Some(self.pos));
            }
            let Some((header, next)) = header(buf, self.pos)? else {
                return Ok(None);
            };
            let end = match header {
                Header::Array(n) if n > 0 => {
                    self.pos = next;
                    self.started = true;
                    self.open.push(n);
                    continue;
                }
                Header::Bulk(n) => {
                    let end = next + n + 2;
                    if buf.len() < end {
                        return Ok(None);
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err(RespError("bulk string without its CRLF".to_owned()));
                    }
                    end
                }
                Header::Array(_) | Header::Line(_) => next,
            };
            self.pos = end;
            self.started = true;
            // One element done: close every array it completes.
            while let Some(left) = self.open.last_mut() {
                *left -= 1;
                if *left > 0 {
                    break;
                }
                self.open.pop();
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Header {
    /// `*n`; a negative count (nil) is 0.
    Array(usize),
    /// `$n` with its `n` bytes to follow; nil bulk strings are [`Header::Line`].
    Bulk(usize),
    /// `+`, `-`, `:`, or a nil: the line is the whole element. The byte is its kind.
    Line(u8),
}

/// The element header at `pos`, and where its body starts; `None` when its line is not complete.
fn header(buf: &[u8], pos: usize) -> Result<Option<(Header, usize)>, RespError> {
    let Some(rest) = buf.get(pos..) else { return Ok(None) };
    let Some(cr) = memchr(b'\r', rest) else { return Ok(None) };
    if cr + 1 >= rest.len() {
        return Ok(None);
    }
    if rest[cr + 1] != b'\n' || cr == 0 {
        return Err(RespError(format!("not RESP at byte {pos}")));
    }
    let next = pos + cr + 2;
    let kind = rest[0];
    let line = &rest[1..cr];
    Ok(Some(match kind {
        b'*' | b'$' => {
            let n = number(line).ok_or_else(|| RespError(format!("bad length at byte {pos}")))?;
            match (kind, usize::try_from(n)) {
                (b'*', Ok(n)) => (Header::Array(n), next),
                (b'*', Err(_)) => (Header::Array(0), next),
                (_, Ok(n)) => (Header::Bulk(n), next),
                (_, Err(_)) => (Header::Line(b'_'), next),
            }
        }
        b'+' | b'-' | b':' => (Header::Line(kind), next),
        _ => {
            return Err(RespError(format!(
                "unexpected RESP type {:?} at byte {pos}",
                kind as char
            )))
        }
    }))
}

fn number(line: &[u8]) -> Option<i64> {
    std::str::from_utf8(line).ok()?.parse().ok()
}

/// One stream entry of a reply, as ranges of the reply's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRange {
    /// The entry's id.
    pub id: Range<usize>,
    /// The value of the event field; `None` when the entry has none (or was deleted).
    pub event: Option<Range<usize>>,
}

/// What a stream read answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamReply {
    /// The entries of every stream in the reply, in order (none for a nil reply).
    Entries(Vec<EntryRange>),
    /// An error reply: its text.
    Error(String),
}

/// A cursor over one complete reply.
struct Walk<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Walk<'_> {
    fn next(&mut self) -> Result<(Header, Range<usize>), RespError> {
        let start = self.pos;
        let (header, next) = header(self.buf, start)?.ok_or_else(|| RespError("reply cut short".to_owned()))?;
        let body = match header {
            Header::Bulk(n) => {
                let end = next + n;
                if self.buf.len() < end + 2 {
                    return Err(RespError("reply cut short".to_owned()));
                }
                self.pos = end + 2;
                next..end
            }
            Header::Line(_) | Header::Array(_) => {
                self.pos = next;
                start + 1..next - 2
            }
        };
        Ok((header, body))
    }

    fn array(&mut self) -> Result<Option<usize>, RespError> {
        match self.next()? {
            (Header::Array(n), _) => Ok(Some(n)),
            (Header::Line(b'_'), _) => Ok(None),
            _ => Err(RespError("expected an array".to_owned())),
        }
    }

    /// Skips one element, whatever it is.
    fn skip(&mut self) -> Result<(), RespError> {
        if let (Header::Array(n), _) = self.next()? {
            for _ in 0..n {
                self.skip()?;
            }
        }
        Ok(())
    }

    fn bulk(&mut self) -> Result<Option<Range<usize>>, RespError> {
        match self.next()? {
            (Header::Bulk(_), body) => Ok(Some(body)),
            (Header::Line(b'_'), _) => Ok(None),
            _ => Err(RespError("expected a bulk string".to_owned())),
        }
    }
}

/// The entries of a complete `XREAD`/`XREADGROUP` reply (RESP2: `[[stream, [[id, [field,
/// value, …]], …]], …]`), with the value of `field` as the event.
///
/// # Errors
/// When the reply is not shaped like a stream read.
pub fn parse_stream_reply(buf: &[u8], field: &[u8]) -> Result<StreamReply, RespError> {
    if buf.first() == Some(&b'-') {
        let end = memchr(b'\r', buf).unwrap_or(buf.len());
        return Ok(StreamReply::Error(String::from_utf8_lossy(&buf[1..end]).into_owned()));
    }
    let mut walk = Walk { buf, pos: 0 };
    let mut out = Vec::new();
    let Some(streams) = walk.array()? else {
        return Ok(StreamReply::Entries(out));
    };
    for _ in 0..streams {
        if walk.array()? != Some(2) {
            return Err(RespError("a stream must be [name, entries]".to_owned()));
        }
        walk.skip()?;
        let Some(entries) = walk.array()? else { continue };
        out.reserve(entries);
        for _ in 0..entries {
            if walk.array()? != Some(2) {
                return Err(RespError("an entry must be [id, fields]".to_owned()));
            }
            let id = walk
                .bulk()?
                .ok_or_else(|| RespError("an entry without an id".to_owned()))?;
            let mut event = None;
            if let Some(fields) = walk.array()? {
                for _ in 0..fields / 2 {
                    let name = walk.bulk()?;
                    let value = walk.bulk()?;
                    if event.is_none() && name.is_some_and(|name| &buf[name] == field) {
                        event = value;
                    }
                }
                if fields % 2 == 1 {
                    walk.skip()?;
                }
            }
            out.push(EntryRange { id, event });
        }
    }
    Ok(StreamReply::Entries(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(out: &mut Vec<u8>, data: &[u8]) {
        out.extend_from_slice(format!("${}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }

    fn reply(entries: &[(&[u8], &[&[u8]])]) -> Vec<u8> {
        let mut out = b"*1\r\n*2\r\n".to_vec();
        bulk(&mut out, b"sc:{events}");
        out.extend_from_slice(format!("*{}\r\n", entries.len()).as_bytes());
        for (id, fields) in entries {
            out.extend_from_slice(b"*2\r\n");
            bulk(&mut out, id);
            out.extend_from_slice(format!("*{}\r\n", fields.len()).as_bytes());
            for field in *fields {
                bulk(&mut out, field);
            }
        }
        out
    }

    fn events(buf: &[u8]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let StreamReply::Entries(entries) = parse_stream_reply(buf, b"e").unwrap() else {
            panic!("an error reply")
        };
        entries
            .into_iter()
            .map(|e| (buf[e.id].to_vec(), e.event.map(|r| buf[r].to_vec())))
            .collect()
    }

    #[test]
    fn finds_the_end_whatever_the_cuts() {
        let buf = reply(&[
            (b"1-0", &[b"e", b"{\"a\":\"x\\r\\n\"}"]),
            (b"2-0", &[b"other", b"1", b"e", b"\r\n$3\r\n"]),
            (b"3-5", &[b"f", b"g"]),
        ]);
        for step in 1..buf.len() {
            let mut scanner = ReplyScanner::default();
            let mut found = None;
            for end in (step..=buf.len()).step_by(step).chain([buf.len()]) {
                found = scanner.scan(&buf[..end]).unwrap();
                if found.is_some() {
                    break;
                }
            }
            assert_eq!(found, Some(buf.len()), "cut every {step} bytes");
        }
        assert_eq!(
            events(&buf),
            vec![
                (b"1-0".to_vec(), Some(b"{\"a\":\"x\\r\\n\"}".to_vec())),
                (b"2-0".to_vec(), Some(b"\r\n$3\r\n".to_vec())),
                (b"3-5".to_vec(), None),
            ]
        );
    }

    #[test]
    fn nil_and_error_replies() {
        for nil in [&b"*-1\r\n"[..], b"$-1\r\n", b"*0\r\n"] {
            let mut scanner = ReplyScanner::default();
            assert_eq!(scanner.scan(nil).unwrap(), Some(nil.len()));
            assert_eq!(events(nil), vec![]);
        }
        let error = b"-NOGROUP No such key\r\n";
        assert_eq!(ReplyScanner::default().scan(error).unwrap(), Some(error.len()));
        assert_eq!(
            parse_stream_reply(error, b"e").unwrap(),
            StreamReply::Error("NOGROUP No such key".to_owned())
        );
    }

    #[test]
    fn deleted_entries_have_no_event() {
        // XREADGROUP of pending entries deleted from the stream: nil fields.
        let mut buf = b"*1\r\n*2\r\n".to_vec();
        bulk(&mut buf, b"s");
        buf.extend_from_slice(b"*1\r\n*2\r\n");
        bulk(&mut buf, b"7-1");
        buf.extend_from_slice(b"*-1\r\n");
        assert_eq!(ReplyScanner::default().scan(&buf).unwrap(), Some(buf.len()));
        assert_eq!(events(&buf), vec![(b"7-1".to_vec(), None)]);
    }

    #[test]
    fn refuses_what_is_not_resp() {
        assert!(ReplyScanner::default().scan(b"hello\r\n").is_err());
        assert!(ReplyScanner::default().scan(b"$3\r\nabcd\r\n").is_err());
        assert!(ReplyScanner::default().scan(b"*x\r\n").is_err());
        assert!(parse_stream_reply(b"*1\r\n$1\r\na\r\n", b"e").is_err());
    }
}
