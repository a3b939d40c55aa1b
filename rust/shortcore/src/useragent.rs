//! User-agent parsing: browser family and major version, OS family and major version, device
//! kind, and whether the user agent alone names a preview fetcher or a bot.
//!
//! The parser reads the user agent once with the shared automaton of [`crate::patterns`]: every
//! browser, OS and device token of `data/` votes, the highest priority wins. The same pass finds
//! preview fetchers, named bots, generic bot words and human markers, which
//! [`crate::classify`] turns into a class.
//!
//! # Examples
//! ```
//! use shortcore::useragent::{parse_user_agent, Device};
//!
//! let ua = parse_user_agent(
//!     "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 \
//!      (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
//! );
//! assert_eq!(ua.browser(), Some("Mobile Safari"));
//! assert_eq!(ua.browser_version().unwrap().as_str(), "17");
//! assert_eq!(ua.os(), Some("iOS"));
//! assert_eq!(ua.os_version().unwrap().as_str(), "17");
//! assert_eq!(ua.device(), Device::Mobile);
//! ```

use std::fmt;

use crate::patterns::{find_ignore_case, DeviceToken, Kind, OsVersion, Pattern, PATTERNS};

/// The kind of device a user agent runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// A phone, smart or not.
    Mobile,
    /// A tablet.
    Tablet,
    /// A desktop or laptop computer.
    Desktop,
    /// An automated client: a crawler, library, scanner or preview fetcher.
    Bot,
    /// Anything else: TVs, consoles, or a user agent that says too little.
    Other,
}

impl Device {
    /// The lowercase name: `mobile`, `tablet`, `desktop`, `bot` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Desktop => "desktop",
            Device::Bot => "bot",
            Device::Other => "other",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A major version as written for reports: digits (`"17"`), or a name for Windows (`"8.1"`,
/// `"XP"`). Kept inline, so parsing allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    bytes: [u8; Version::CAPACITY],
    len: u8,
}

impl Version {
    const CAPACITY: usize = 7;

    pub(crate) fn new(text: &[u8]) -> Option<Self> {
        if text.is_empty() || text.len() > Self::CAPACITY || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0; Self::CAPACITY];
        bytes[..text.len()].copy_from_slice(text);
        Some(Self {
            bytes,
            len: text.len() as u8,
        })
    }

    /// The version as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored, so this never fails.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({:?})", self.as_str())
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a user agent says about the client: browser, OS and device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserAgent {
    pub(crate) browser: Option<&'static str>,
    pub(crate) browser_version: Option<Version>,
    pub(crate) os: Option<&'static str>,
    pub(crate) os_version: Option<Version>,
    pub(crate) device: Device,
}

impl UserAgent {
    /// A user agent that says nothing (an empty string).
    pub const UNKNOWN: UserAgent = UserAgent {
        browser: None,
        browser_version: None,
        os: None,
        os_version: None,
        device: Device::Other,
    };

    /// The browser family (`"Chrome"`, `"Mobile Safari"`, `"Instagram"`…), if recognised.
    pub fn browser(&self) -> Option<&'static str> {
        self.browser
    }

    /// The browser's major version, if written.
    pub fn browser_version(&self) -> Option<Version> {
        self.browser_version
    }

    /// The OS family (`"Android"`, `"iOS"`, `"Windows"`…), if recognised.
    pub fn os(&self) -> Option<&'static str> {
        self.os
    }

    /// The OS major version, if written.
    pub fn os_version(&self) -> Option<Version> {
        self.os_version
    }

    /// The kind of device.
    pub fn device(&self) -> Device {
        self.device
    }
}

/// Parses a user agent into browser, OS and device. A user agent that names a preview fetcher
/// or a bot gets [`Device::Bot`]; the browser and OS are still filled in when written.
///
/// # Examples
/// ```
/// use shortcore::useragent::{parse_user_agent, Device};
///
/// let ua = parse_user_agent("Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36");
/// assert_eq!((ua.browser(), ua.os(), ua.device()), (Some("Chrome"), Some("Windows"), Device::Desktop));
/// assert_eq!(ua.os_version().unwrap().as_str(), "7");
/// assert_eq!(parse_user_agent("curl/8.5.0").device(), Device::Bot);
/// assert_eq!(parse_user_agent("").device(), Device::Other);
/// ```
pub fn parse_user_agent(ua: &str) -> UserAgent {
    let ua = ua.trim();
    if ua.is_empty() {
        return UserAgent::UNKNOWN;
    }
    let analysis = analyse(ua.as_bytes());
    let mut parsed = analysis.user_agent;
    if !matches!(analysis.verdict, Verdict::Human) {
        parsed.device = Device::Bot;
    }
    parsed
}

/// What the user agent alone says about the class of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A browser, as far as the user agent tells.
    Human,
    /// Not a browser, but nothing names it either (a bare product token, an app's HTTP stack).
    NonBrowser,
    /// A preview fetcher, with its reason.
    Preview(&'static str),
    /// A bot, with its reason.
    Bot(&'static str),
}

/// The result of reading a user agent once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Analysis {
    pub(crate) user_agent: UserAgent,
    pub(crate) verdict: Verdict,
}

/// Reads `ua` once and returns what it says.
pub(crate) fn analyse(ua: &[u8]) -> Analysis {
    let patterns: &'static crate::patterns::Patterns = &PATTERNS;
    let mask = device_model_span(ua);
    let mut scan = Scan::default();
    patterns.for_each_hit(ua, |index, pattern, start, end| {
        scan.hit(index, pattern, start, end, mask);
    });

    let verdict = if let Some((index, _)) = scan.preview {
        Verdict::Preview(&patterns.list[index].reason)
    } else if let Some((index, _)) = scan.bot {
        Verdict::Bot(&patterns.list[index].reason)
    } else if let Some(index) = scan.bot_word(ua, patterns) {
        Verdict::Bot(&patterns.list[index].reason)
    } else if scan.browser_like(ua) {
        Verdict::Human
    } else {
        Verdict::NonBrowser
    };
    Analysis {
        user_agent: scan.user_agent(ua, patterns),
        verdict,
    }
}

/// Running state of one pass over a user agent.
#[derive(Default)]
struct Scan {
    /// The longest preview and bot patterns found: `(index, length)`.
    preview: Option<(usize, usize)>,
    bot: Option<(usize, usize)>,
    /// Generic bot words outside the device model: `(index, start, end)`; the first few are
    /// enough, since any one that survives the app markers decides.
    words: Spans<8>,
    /// App tokens that hold generic words.
    apps: Spans<4>,
    browser_marker: bool,
    /// `(priority, index, end)` of the winning browser and OS tokens.
    browser: Option<(u8, usize, usize)>,
    os: Option<(u8, usize, usize)>,
    /// Device tokens seen, indexed by [`DeviceToken`].
    devices: [bool; 4],
}

impl Scan {
    fn hit(&mut self, index: usize, pattern: &Pattern, start: usize, end: usize, mask: Option<(usize, usize)>) {
        match pattern.kind {
            Kind::Preview => {
                if self.preview.is_none_or(|(_, len)| end - start > len) {
                    self.preview = Some((index, end - start));
                }
            }
            Kind::Bot => {
                // The longest name is the most specific: `headlesschrome` over `headless`.
                if self.bot.is_none_or(|(_, len)| end - start > len) {
                    self.bot = Some((index, end - start));
                }
            }
            Kind::BotWord => {
                let masked = mask.is_some_and(|(from, to)| start >= from && end <= to);
                if !masked {
                    self.words.push(index, start, end);
                }
            }
            Kind::BrowserMarker => self.browser_marker = true,
            Kind::AppMarker => self.apps.push(index, start, end),
            Kind::Browser { priority, .. } => {
                if self.browser.is_none_or(|(best, _, _)| priority >= best) {
                    self.browser = Some((priority, index, end));
                }
            }
            Kind::Os { priority, .. } => {
                if self.os.is_none_or(|(best, _, _)| priority >= best) {
                    self.os = Some((priority, index, end));
                }
            }
            Kind::Device(token) => self.devices[token as usize] = true,
        }
    }

    /// The first generic bot word that is not part of an app token (and, for `email`, is
    /// followed by an address).
    fn bot_word(&self, ua: &[u8], patterns: &crate::patterns::Patterns) -> Option<usize> {
        self.words.iter().find_map(|(index, start, end)| {
            let in_app = self.apps.iter().any(|(_, from, to)| start >= from && end <= to);
            let email = patterns.list[index].name == "email";
            (!in_app && (!email || is_address(&ua[end..]))).then_some(index)
        })
    }

    /// True when the user agent reads like a browser: `Mozilla/…` naming an engine or a
    /// browser, or a marker of a phone browser that predates the convention.
    fn browser_like(&self, ua: &[u8]) -> bool {
        let mozilla = ua.len() >= 8 && ua[..8].eq_ignore_ascii_case(b"mozilla/");
        (mozilla && self.browser.is_some()) || self.browser_marker
    }

    fn user_agent(&self, ua: &[u8], patterns: &'static crate::patterns::Patterns) -> UserAgent {
        let mut parsed = UserAgent::UNKNOWN;
        if let Some((_, index, end)) = self.browser {
            let pattern = &patterns.list[index];
            parsed.browser = Some(pattern.name);
            let version_at = match pattern.kind {
                Kind::Browser {
                    version_token: Some(token),
                    ..
                } => find_ignore_case(ua, token.as_bytes()).map_or(end, |at| at + token.len()),
                _ => end,
            };
            parsed.browser_version = number_after(ua, version_at);
        }
        if let Some((_, index, end)) = self.os {
            let pattern = &patterns.list[index];
            parsed.os = Some(pattern.name);
            parsed.os_version = match pattern.kind {
                Kind::Os {
                    version: OsVersion::Number,
                    ..
                } => number_after(ua, end),
                Kind::Os {
                    version: OsVersion::Windows,
                    ..
                } => windows_version(ua, end),
                _ => None,
            };
        }
        let seen = |token: DeviceToken| self.devices[token as usize];
        parsed.device = if seen(DeviceToken::Tv) {
            Device::Other
        } else if seen(DeviceToken::Tablet) || (seen(DeviceToken::Android) && !seen(DeviceToken::Mobile)) {
            Device::Tablet
        } else if seen(DeviceToken::Mobile) {
            Device::Mobile
        } else if matches!(
            parsed.os,
            Some("Windows" | "macOS" | "Linux" | "Chrome OS" | "Ubuntu" | "Fedora" | "FreeBSD" | "OpenBSD")
        ) {
            Device::Desktop
        } else {
            Device::Other
        };
        parsed
    }
}

/// True when `rest` starts like the rest of an e-mail address after its `@`: a name, a dot,
/// and a letter (`example.com`, not `3.0.1` or `calendar=gregorian`).
fn is_address(rest: &[u8]) -> bool {
    let name = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        .count();
    name > 0 && rest.get(name) == Some(&b'.') && rest.get(name + 1).is_some_and(u8::is_ascii_alphabetic)
}

/// Up to `N` byte ranges of hits, `(pattern index, start, end)`, on the stack; more are dropped.
struct Spans<const N: usize> {
    items: [(usize, usize, usize); N],
    len: usize,
}

impl<const N: usize> Default for Spans<N> {
    fn default() -> Self {
        Self {
            items: [(0, 0, 0); N],
            len: 0,
        }
    }
}

impl<const N: usize> Spans<N> {
    fn push(&mut self, index: usize, start: usize, end: usize) {
        if self.len < N {
            self.items[self.len] = (index, start, end);
            self.len += 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.items[..self.len].iter().copied()
    }
}

/// The major version written at `at`: after separators (and an "OS" word, as in
/// `Windows Phone OS 7.5`), the digits up to the first non-digit.
fn number_after(ua: &[u8], at: usize) -> Option<Version> {
    let mut at = at;
    let skip = |at: &mut usize| {
        while ua
            .get(*at)
            .is_some_and(|b| matches!(b, b' ' | b'/' | b'_' | b':' | b'-' | b'('))
        {
            *at += 1;
        }
    };
    skip(&mut at);
    if ua.get(at..at + 3).is_some_and(|w| w.eq_ignore_ascii_case(b"os ")) {
        at += 3;
        skip(&mut at);
    }
    let digits = ua.get(at..)?.iter().take_while(|b| b.is_ascii_digit()).count();
    Version::new(&ua[at..at + digits.min(Version::CAPACITY)])
}

/// The Windows version named by the NT version written at `at`.
fn windows_version(ua: &[u8], at: usize) -> Option<Version> {
    let rest = ua.get(at..)?;
    let rest = &rest[rest.iter().take_while(|b| **b == b' ').count()..];
    let end = rest.iter().take_while(|b| b.is_ascii_digit() || **b == b'.').count();
    let name: &[u8] = match &rest[..end] {
        b"10.0" | b"10" => b"10",
        b"6.3" => b"8.1",
        b"6.2" => b"8",
        b"6.1" => b"7",
        b"6.0" => b"Vista",
        b"5.1" | b"5.2" => b"XP",
        b"5.0" => b"2000",
        b"4.0" => b"NT 4.0",
        _ => return None,
    };
    Version::new(name)
}

/// The byte range of the device model in the first parenthesised group of an Android or
/// Windows Phone user agent: everything after the OS segment, where makers put model names
/// ("Discovery", "Radar 4G", `XBot_Senior`) that must not read as bot words.
fn device_model_span(ua: &[u8]) -> Option<(usize, usize)> {
    let open = ua.iter().position(|&b| b == b'(')?;
    let mut depth = 0usize;
    let mut close = ua.len();
    for (i, &b) in ua[open..].iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    close = open + i;
                    break;
                }
            }
            _ => {}
        }
    }
    let group = &ua[open + 1..close];
    // Bots write their name and address in this group too: then it is no device model.
    if find_ignore_case(group, b"+http").is_some() || find_ignore_case(group, b"compatible").is_some() {
        return None;
    }
    let os_at = find_ignore_case(group, b"android").or_else(|| find_ignore_case(group, b"windows phone"))?;
    let after_os = group[os_at..].iter().position(|&b| b == b';')? + os_at + 1;
    Some((open + 1 + after_os, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_model_span_skips_the_os() {
        let ua = b"Mozilla/5.0 (Linux; Android 8.1.0; XBot_Senior Build/O11019) AppleWebKit/537.36";
        let (from, to) = device_model_span(ua).unwrap();
        assert_eq!(&ua[from..to], b" XBot_Senior Build/O11019");
        assert_eq!(device_model_span(b"Mozilla/5.0 (compatible; Googlebot/2.1)"), None);
    }

    #[test]
    fn nested_parentheses_stay_in_the_group() {
        let ua = b"Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; Ainol Novo 7 (TabletWarehouseUSA.com) Build/IML74K) X";
        let (from, to) = device_model_span(ua).unwrap();
        assert!(std::str::from_utf8(&ua[from..to]).unwrap().ends_with("Build/IML74K"));
    }

    #[test]
    fn versions() {
        assert_eq!(number_after(b"Android 10; K", 7).unwrap().as_str(), "10");
        assert_eq!(number_after(b"Windows Phone OS 7.5;", 13).unwrap().as_str(), "7");
        assert_eq!(windows_version(b"Windows NT 6.3;", 10).unwrap().as_str(), "8.1");
        assert_eq!(number_after(b"Chrome/", 7), None);
    }
}
