//! Request classification: was a request to a short link a person's click, a link-preview
//! fetcher (a "view" of the message) or a bot?
//!
//! [`Classifier::classify`] looks at the request in a fixed order and stops at the first rule
//! that decides; the [`Classification`] carries the class and a short machine-readable reason:
//!
//! | order | rule | reason |
//! |---|---|---|
//! | 1 | `HEAD`, or a method other than `GET` | `bot:head`, `bot:method` |
//! | 2 | a prefetch or preview hint: `Purpose`, `Sec-Purpose`, `X-Purpose`, `X-Moz` | `bot:prefetch` |
//! | 3 | no user agent (unless `Sec-CH-UA` names a browser); `Sec-CH-UA` says headless | `bot:no-ua`, `bot:headless` |
//! | 4 | the user agent names a preview fetcher | `preview:<vendor>` |
//! | 5 | the user agent names a bot, or has a bot word outside its device model | `bot:ua:<name>` |
//! | 6 | the user agent is not a browser's (and no app's `X-Requested-With` vouches for it) | `bot:ua:non-browser` |
//! | 7 | a security scanner's `Referer`; a `From` address (only crawlers send one) | `bot:referer:<name>`, `bot:from` |
//! | 8 | headers were given but none a browser always sends (`Accept`, `Sec-Fetch-*`…) | `bot:no-browser-headers` |
//! | 9 | sooner after delivery than the threshold | `bot:too-soon` |
//! | 10 | everything else | `human` |
//!
//! The user agent is read once, by the automaton of all pattern lists (see `data/README.md`).
//!
//! # Examples
//! ```
//! use shortcore::classify::{Classifier, Label, Request};
//!
//! let classifier = Classifier::default();
//! let mut request = Request::new(Some("WhatsApp/2.23.20.0 A"));
//! assert_eq!(classifier.classify(&request).reason(), "preview:whatsapp");
//!
//! request.user_agent = Some("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36");
//! request.seconds_since_send = Some(0.4);
//! let too_soon = classifier.classify(&request);
//! assert_eq!((too_soon.label(), too_soon.reason()), (Label::Bot, "bot:too-soon"));
//!
//! request.seconds_since_send = Some(95.0);
//! assert_eq!(classifier.classify(&request).label(), Label::Human);
//! ```

use std::fmt;

use crate::error::{Error, Result};
use crate::patterns::{find_ignore_case, PATTERNS};
use crate::useragent::{analyse, Device, UserAgent, Verdict, Version};

/// The class of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    /// A person opened the link (in-app browsers included).
    Human,
    /// A link-preview fetcher: a view of the message.
    Preview,
    /// Everything automated: crawlers, scanners, libraries, prefetches, HEAD probes, and requests
    /// too soon after delivery to be a person's.
    Bot,
}

impl Label {
    /// The lowercase name: `human`, `preview` or `bot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Human => "human",
            Label::Preview => "preview",
            Label::Bot => "bot",
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request header the classifier reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Header {
    /// `User-Agent`, used when the request gives no user agent of its own.
    UserAgent,
    /// `Accept`.
    Accept,
    /// `Accept-Language`.
    AcceptLanguage,
    /// `Accept-Encoding`.
    AcceptEncoding,
    /// `Sec-Fetch-Mode`.
    SecFetchMode,
    /// `Sec-Fetch-Dest`.
    SecFetchDest,
    /// `Sec-Fetch-Site`.
    SecFetchSite,
    /// `Sec-Fetch-User`.
    SecFetchUser,
    /// `Sec-CH-UA`, the client-hint brand list.
    SecChUa,
    /// `Purpose` (a prefetch hint).
    Purpose,
    /// `Sec-Purpose` (a prefetch or prerender hint).
    SecPurpose,
    /// `X-Purpose` (a preview hint).
    XPurpose,
    /// `X-Moz` (Firefox's prefetch hint).
    XMoz,
    /// `From`, the e-mail address crawlers identify themselves with.
    From,
    /// `Referer`.
    Referer,
    /// `X-Requested-With`, the package of the app whose web view made the request.
    XRequestedWith,
    /// `Upgrade-Insecure-Requests`.
    UpgradeInsecureRequests,
}

impl Header {
    /// Every header the classifier reads, in the order of [`CLASSIFIER_HEADERS`].
    pub const ALL: [Header; 17] = [
        Header::UserAgent,
        Header::Accept,
        Header::AcceptLanguage,
        Header::AcceptEncoding,
        Header::SecFetchMode,
        Header::SecFetchDest,
        Header::SecFetchSite,
        Header::SecFetchUser,
        Header::SecChUa,
        Header::Purpose,
        Header::SecPurpose,
        Header::XPurpose,
        Header::XMoz,
        Header::From,
        Header::Referer,
        Header::XRequestedWith,
        Header::UpgradeInsecureRequests,
    ];

    /// The lowercase header name.
    pub fn name(self) -> &'static str {
        CLASSIFIER_HEADERS[self as usize]
    }

    /// The header called `name` (any case), if the classifier reads it.
    pub fn from_name(name: &[u8]) -> Option<Header> {
        // Names differ in length or first letter often enough that this rarely compares twice.
        Header::ALL.iter().copied().find(|header| {
            let known = header.name().as_bytes();
            known.len() == name.len() && known.eq_ignore_ascii_case(name)
        })
    }

    /// True for headers every browser sends and simple HTTP clients usually do not.
    fn is_browser_signal(self) -> bool {
        !matches!(
            self,
            Header::UserAgent
                | Header::Purpose
                | Header::SecPurpose
                | Header::XPurpose
                | Header::XMoz
                | Header::From
                | Header::AcceptEncoding
        )
    }
}

/// The lowercase names of the headers the classifier reads. The edge stores these with each
/// event so that requests can be classified again later.
pub const CLASSIFIER_HEADERS: [&str; 17] = [
    "user-agent",
    "accept",
    "accept-language",
    "accept-encoding",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "sec-fetch-site",
    "sec-fetch-user",
    "sec-ch-ua",
    "purpose",
    "sec-purpose",
    "x-purpose",
    "x-moz",
    "from",
    "referer",
    "x-requested-with",
    "upgrade-insecure-requests",
];

/// The headers of a request that matter to the classifier, borrowed from wherever the caller
/// keeps them. Other headers are counted, not stored.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHeaders<'a> {
    values: [Option<&'a [u8]>; Header::ALL.len()],
    /// Headers inserted, known or not.
    count: u32,
    /// Headers inserted that browsers send and simple clients usually do not.
    browser_signals: u32,
}

impl<'a> RequestHeaders<'a> {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a header; `name` in any case. The first value of a repeated header is kept.
    ///
    /// # Examples
    /// ```
    /// use shortcore::classify::{Header, RequestHeaders};
    ///
    /// let mut headers = RequestHeaders::new();
    /// headers.insert(b"Sec-Purpose", b"prefetch");
    /// headers.insert(b"x-unrelated", b"1");
    /// assert_eq!(headers.get(Header::SecPurpose), Some(&b"prefetch"[..]));
    /// assert_eq!(headers.len(), 2);
    /// ```
    pub fn insert(&mut self, name: &[u8], value: &'a [u8]) {
        self.count = self.count.saturating_add(1);
        if let Some(header) = Header::from_name(name) {
            self.set(header, value);
        } else if is_client_hint(name) {
            self.browser_signals = self.browser_signals.saturating_add(1);
        }
    }

    /// Sets a known header, unless it already has a value.
    pub fn set(&mut self, header: Header, value: &'a [u8]) {
        let slot = &mut self.values[header as usize];
        if slot.is_none() {
            *slot = Some(value);
            if header.is_browser_signal() {
                self.browser_signals = self.browser_signals.saturating_add(1);
            }
        }
    }

    /// The value of a known header.
    pub fn get(&self, header: Header) -> Option<&'a [u8]> {
        self.values[header as usize]
    }

    /// How many headers were inserted, known or not.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when no header was inserted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The headers that matter to the classifier, owned: for batches, whose inputs are copied out of
/// the caller's objects before the work starts. Only the values the classifier reads are kept.
#[derive(Debug, Clone, Default)]
pub struct OwnedHeaders {
    known: Vec<(Header, Vec<u8>)>,
    count: u32,
    browser_signals: u32,
}

impl OwnedHeaders {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a header, as [`RequestHeaders::insert`] does, copying the value if it is read.
    pub fn insert(&mut self, name: &[u8], value: &[u8]) {
        self.count = self.count.saturating_add(1);
        if let Some(header) = Header::from_name(name) {
            if !self.known.iter().any(|(known, _)| *known == header) {
                self.known.push((header, value.to_vec()));
            }
        } else if is_client_hint(name) {
            self.browser_signals = self.browser_signals.saturating_add(1);
        }
    }

    /// The headers, borrowed, ready for a [`Request`].
    ///
    /// # Examples
    /// ```
    /// use shortcore::classify::{Header, OwnedHeaders};
    ///
    /// let mut owned = OwnedHeaders::new();
    /// owned.insert(b"Accept", b"text/html");
    /// owned.insert(b"Host", b"ul.example");
    /// let headers = owned.borrowed();
    /// assert_eq!(headers.get(Header::Accept), Some(&b"text/html"[..]));
    /// assert_eq!(headers.len(), 2);
    /// ```
    pub fn borrowed(&self) -> RequestHeaders<'_> {
        let mut headers = RequestHeaders::new();
        for (header, value) in &self.known {
            headers.set(*header, value);
        }
        headers.count = self.count;
        headers.browser_signals = headers.browser_signals.saturating_add(self.browser_signals);
        headers
    }
}

/// A request to classify.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The user agent; when `None`, the `User-Agent` header is used.
    pub user_agent: Option<&'a str>,
    /// The HTTP method, `GET` when empty.
    pub method: &'a str,
    /// The headers that matter.
    pub headers: RequestHeaders<'a>,
    /// Seconds between the delivery of the message and this request, when known.
    pub seconds_since_send: Option<f64>,
    /// The client address, when known. Accepted for the edge's sake; no rule reads it yet.
    pub ip: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A `GET` with this user agent, no headers, and no timing.
    pub fn new(user_agent: Option<&'a str>) -> Self {
        Self {
            user_agent,
            method: "GET",
            headers: RequestHeaders::new(),
            seconds_since_send: None,
            ip: None,
        }
    }
}

/// The verdict on a request: its class, why, and what its user agent says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Classification {
    label: Label,
    reason: &'static str,
    user_agent: UserAgent,
}

impl Classification {
    /// The class.
    pub fn label(&self) -> Label {
        self.label
    }

    /// Why, e.g. `human`, `preview:whatsapp`, `bot:ua:python-requests`, `bot:head`,
    /// `bot:prefetch`, `bot:too-soon`, `bot:no-ua`.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// What the user agent says about browser, OS and device. The device is [`Device::Bot`]
    /// when the user agent itself names a bot or a preview fetcher.
    pub fn user_agent(&self) -> &UserAgent {
        &self.user_agent
    }
}

/// Classifies requests to short links. Cheap to build after the first (the pattern automaton is
/// built once per process and shared); immutable, so one classifier serves every thread.
#[derive(Debug, Clone, Copy)]
pub struct Classifier {
    too_soon_seconds: f64,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::with_threshold(Self::DEFAULT_TOO_SOON_SECONDS)
    }
}

impl Classifier {
    /// Requests sooner than this after delivery are bots unless told otherwise. Must match the
    /// default of `Classifier` in `python/shortcore/_core.pyi`.
    pub const DEFAULT_TOO_SOON_SECONDS: f64 = 2.0;

    /// A classifier that calls a request `bot:too-soon` when it comes less than
    /// `too_soon_seconds` after the message was delivered (0 turns the rule off).
    ///
    /// # Errors
    /// An invalid-argument error when `too_soon_seconds` is negative, infinite or NaN.
    ///
    /// # Examples
    /// ```
    /// use shortcore::classify::Classifier;
    ///
    /// assert_eq!(Classifier::new(5.0)?.too_soon_seconds(), 5.0);
    /// assert!(Classifier::new(-1.0).is_err());
    /// # Ok::<(), shortcore::Error>(())
    /// ```
    pub fn new(too_soon_seconds: f64) -> Result<Self> {
        if !too_soon_seconds.is_finite() || too_soon_seconds < 0.0 {
            return Err(Error::invalid_argument(format!(
                "too_soon_seconds must be a finite number of seconds >= 0, got {too_soon_seconds}"
            )));
        }
        Ok(Self::with_threshold(too_soon_seconds))
    }

    fn with_threshold(too_soon_seconds: f64) -> Self {
        // Build the shared automaton now rather than on the first request.
        std::sync::LazyLock::force(&PATTERNS);
        Self { too_soon_seconds }
    }

    /// The threshold of the too-soon rule, in seconds.
    pub fn too_soon_seconds(&self) -> f64 {
        self.too_soon_seconds
    }

    /// Classifies one request. Never fails: whatever the input, there is a class.
    ///
    /// # Examples
    /// ```
    /// use shortcore::classify::{Classifier, Label, Request};
    ///
    /// let classifier = Classifier::default();
    /// let mut request = Request::new(Some("python-requests/2.32.3"));
    /// assert_eq!(classifier.classify(&request).reason(), "bot:ua:python-requests");
    ///
    /// request.user_agent = Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36");
    /// request.headers.insert(b"sec-purpose", b"prefetch;anonymous-client-ip");
    /// assert_eq!(classifier.classify(&request).reason(), "bot:prefetch");
    /// ```
    pub fn classify(&self, request: &Request<'_>) -> Classification {
        let headers = &request.headers;
        let ua: &[u8] = match request.user_agent {
            Some(ua) => ua.as_bytes(),
            None => headers.get(Header::UserAgent).unwrap_or_default(),
        };
        let ua = ua.trim_ascii();
        let analysis = if ua.is_empty() { None } else { Some(analyse(ua)) };
        let mut user_agent = analysis.map_or(UserAgent::UNKNOWN, |a| a.user_agent);
        let verdict = analysis.map(|a| a.verdict);
        let client_hints = headers.get(Header::SecChUa).map(client_hint_brand);
        if let (None, Some(Brand::Browser(family, version))) = (verdict, &client_hints) {
            // A browser that sent its brands but no user agent: the brands stand in for it.
            user_agent.browser = Some(family);
            user_agent.browser_version = *version;
        }
        let (label, reason) = self.decide(request, verdict, client_hints.as_ref());
        let named_by_ua = match verdict {
            Some(Verdict::Preview(_) | Verdict::Bot(_)) => true,
            Some(Verdict::NonBrowser) => label == Label::Bot,
            _ => false,
        };
        if named_by_ua {
            user_agent.device = Device::Bot;
        }
        Classification {
            label,
            reason,
            user_agent,
        }
    }

    /// The class and reason, by the rules of the module documentation, in order.
    fn decide(self, request: &Request<'_>, verdict: Option<Verdict>, hints: Option<&Brand>) -> (Label, &'static str) {
        let headers = &request.headers;
        let method = request.method.trim();
        if method.eq_ignore_ascii_case("HEAD") {
            return (Label::Bot, "bot:head");
        }
        if !method.is_empty() && !method.eq_ignore_ascii_case("GET") {
            return (Label::Bot, "bot:method");
        }
        if is_prefetch(headers) {
            return (Label::Bot, "bot:prefetch");
        }
        if matches!(hints, Some(Brand::Headless)) {
            return (Label::Bot, "bot:headless");
        }
        match verdict {
            None if !matches!(hints, Some(Brand::Browser(..))) => return (Label::Bot, "bot:no-ua"),
            Some(Verdict::Preview(reason)) => return (Label::Preview, reason),
            Some(Verdict::Bot(reason)) => return (Label::Bot, reason),
            Some(Verdict::NonBrowser) if !headers.get(Header::XRequestedWith).is_some_and(is_app_package) => {
                return (Label::Bot, "bot:ua:non-browser");
            }
            _ => {}
        }
        if let Some(reason) = headers.get(Header::Referer).and_then(|r| PATTERNS.referer_reason(r)) {
            return (Label::Bot, reason);
        }
        if headers.get(Header::From).is_some_and(|from| from.contains(&b'@')) {
            return (Label::Bot, "bot:from");
        }
        if !headers.is_empty() && headers.browser_signals == 0 {
            return (Label::Bot, "bot:no-browser-headers");
        }
        if request.seconds_since_send.is_some_and(|s| s < self.too_soon_seconds) {
            return (Label::Bot, "bot:too-soon");
        }
        (Label::Human, "human")
    }
}

/// True for the client hints other than `Sec-CH-UA` (platform, mobile, model…): only browsers
/// send them.
fn is_client_hint(name: &[u8]) -> bool {
    name.len() > 7 && name[..7].eq_ignore_ascii_case(b"sec-ch-")
}

/// True when a hint header asks for a prefetch, prerender or preview rather than a navigation.
fn is_prefetch(headers: &RequestHeaders<'_>) -> bool {
    [Header::Purpose, Header::SecPurpose, Header::XPurpose, Header::XMoz]
        .into_iter()
        .filter_map(|header| headers.get(header))
        .any(|value| {
            find_ignore_case(value, b"prefetch").is_some()
                || find_ignore_case(value, b"prerender").is_some()
                || find_ignore_case(value, b"preview").is_some()
        })
}

/// True for an Android package name (`com.example.app`), which web views send in
/// `X-Requested-With`; pages' scripts send `XMLHttpRequest` instead.
fn is_app_package(value: &[u8]) -> bool {
    value.contains(&b'.')
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_'))
}

/// What a `Sec-CH-UA` brand list says.
enum Brand {
    Headless,
    Browser(&'static str, Option<Version>),
    Unknown,
}

/// Reads a `Sec-CH-UA` value such as `"Opera";v="81", " Not;A Brand";v="99", "Chromium";v="95"`:
/// the most specific real brand wins over Chromium; GREASE brands ("Not A Brand") are skipped.
fn client_hint_brand(value: &[u8]) -> Brand {
    const BRANDS: [(&str, &str); 12] = [
        ("google chrome", "Chrome"),
        ("microsoft edge", "Edge"),
        ("opera", "Opera"),
        ("yabrowser", "Yandex Browser"),
        ("brave", "Brave"),
        ("vivaldi", "Vivaldi"),
        ("duckduckgo", "DuckDuckGo"),
        ("samsung internet", "Samsung Internet"),
        ("avast secure browser", "Avast Browser"),
        ("avg secure browser", "AVG Browser"),
        ("android webview", "Android WebView"),
        ("chromium", "Chromium"),
    ];
    if find_ignore_case(value, b"headless").is_some() {
        return Brand::Headless;
    }
    let mut best: Option<(usize, Option<Version>)> = None;
    for entry in value.split(|&b| b == b',') {
        let mut parts = entry.split(|&b| b == b'"').filter(|p| !p.trim_ascii().is_empty());
        let (Some(name), version) = (parts.next(), parts.nth(1)) else {
            continue;
        };
        let name = name.trim_ascii();
        let Some(rank) = BRANDS
            .iter()
            .position(|(brand, _)| name.eq_ignore_ascii_case(brand.as_bytes()))
        else {
            continue;
        };
        if best.is_none_or(|(best_rank, _)| rank < best_rank) {
            let major = version.map(|v| &v[..v.iter().take_while(|b| b.is_ascii_digit()).count()]);
            best = Some((rank, major.and_then(Version::new)));
        }
    }
    best.map_or(Brand::Unknown, |(rank, version)| {
        Brand::Browser(BRANDS[rank].1, version)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_line_up() {
        for (header, name) in Header::ALL.iter().zip(CLASSIFIER_HEADERS) {
            assert_eq!(header.name(), name);
            assert_eq!(Header::from_name(name.to_ascii_uppercase().as_bytes()), Some(*header));
        }
    }

    #[test]
    fn client_hints() {
        let opera = br#""Opera";v="81", " Not;A Brand";v="99", "Chromium";v="95""#;
        assert!(matches!(client_hint_brand(opera), Brand::Browser("Opera", Some(v)) if v.as_str() == "81"));
        assert!(matches!(
            client_hint_brand(br#""HeadlessChrome";v="113""#),
            Brand::Headless
        ));
        assert!(matches!(client_hint_brand(b"garbage"), Brand::Unknown));
    }

    #[test]
    fn app_packages() {
        assert!(is_app_package(b"com.instagram.android"));
        assert!(!is_app_package(b"XMLHttpRequest"));
    }
}
