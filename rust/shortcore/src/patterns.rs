//! The pattern lists of `data/`, compiled in, and the one automaton that finds them all.
//!
//! Every list (previews, named bots, generic bot words, human markers, and the parser's browser,
//! OS and device tokens) goes into a single ASCII case-insensitive Aho-Corasick DFA, so a user
//! agent is read once, whatever the number of patterns. Each hit then passes the cheap checks
//! the pattern asks for (anchored at the start, word boundaries) before it counts.
//!
//! The automaton is built on first use and shared by every classifier in the process.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};

const PREVIEWS: &str = include_str!("../data/previews.txt");
const BOTS: &str = include_str!("../data/bots.txt");
const BOT_WORDS: &str = include_str!("../data/bot-words.txt");
const HUMANS: &str = include_str!("../data/humans.txt");
const BROWSERS: &str = include_str!("../data/browsers.txt");
const OPERATING_SYSTEMS: &str = include_str!("../data/os.txt");
const DEVICES: &str = include_str!("../data/devices.txt");
const REFERERS: &str = include_str!("../data/referers.txt");

/// How the parser reads an OS version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OsVersion {
    None,
    /// The number after the token.
    Number,
    /// A Windows NT version, named as Microsoft names it.
    Windows,
}

/// The device kind a token suggests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceToken {
    Tv,
    Tablet,
    Mobile,
    Android,
}

/// What a pattern means when found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A link-preview fetcher.
    Preview,
    /// A named automated client: a bot wherever it appears.
    Bot,
    /// A generic word: a bot outside the device model, unless a human marker is present.
    BotWord,
    /// A marker of a person's browser that does not start with `Mozilla/`.
    BrowserMarker,
    /// An app token holding a generic bot word, which then does not count.
    AppMarker,
    /// A browser family token for the parser.
    Browser {
        priority: u8,
        version_token: Option<&'static str>,
    },
    /// An OS token for the parser.
    Os { priority: u8, version: OsVersion },
    /// A device kind token for the parser.
    Device(DeviceToken),
}

/// One compiled pattern.
#[derive(Debug)]
pub(crate) struct Pattern {
    pub(crate) kind: Kind,
    /// The vendor, client or family name.
    pub(crate) name: &'static str,
    /// The classification reason for previews and bots (`preview:<name>`, `bot:ua:<name>`).
    pub(crate) reason: String,
    at_start: bool,
    bound_before: bool,
    bound_after: bool,
}

/// All patterns and their automaton.
pub(crate) struct Patterns {
    pub(crate) list: Vec<Pattern>,
    automaton: AhoCorasick,
    /// Referer hosts of security scanners, `(reason, host)`.
    pub(crate) referers: Vec<(String, &'static str)>,
    referer_automaton: AhoCorasick,
    /// Lines of the data files that did not parse; empty (a test holds it so).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) malformed: Vec<&'static str>,
}

pub(crate) static PATTERNS: LazyLock<Patterns> = LazyLock::new(Patterns::build);

/// The patterns of every list, read line by line.
#[derive(Default)]
struct Builder {
    list: Vec<Pattern>,
    literals: Vec<&'static str>,
    malformed: Vec<&'static str>,
}

impl Builder {
    fn push(&mut self, kind: Kind, name: &'static str, reason: String, spec: &'static str) {
        let (text, at_start, bound_before, bound_after) = literal(spec);
        self.literals.push(text);
        self.list.push(Pattern {
            kind,
            name,
            reason,
            at_start,
            bound_before,
            bound_after,
        });
    }

    /// Previews, named bots and generic bot words: `pattern` or `name | pattern`.
    fn named_lists(&mut self) {
        for (text, kind, prefix) in [
            (PREVIEWS, Kind::Preview, "preview:"),
            (BOTS, Kind::Bot, "bot:ua:"),
            (BOT_WORDS, Kind::BotWord, "bot:ua:"),
        ] {
            for (line, cols) in rows(text) {
                match cols[..] {
                    [spec] if !literal(spec).0.is_empty() => {
                        let name = slug(literal(spec).0);
                        self.push(kind, "", format!("{prefix}{name}"), spec);
                    }
                    [name, spec] if !name.is_empty() && !literal(spec).0.is_empty() => {
                        self.push(kind, name, format!("{prefix}{name}"), spec);
                    }
                    _ => self.malformed.push(line),
                }
            }
        }
    }

    /// `browser | pattern` and `app | pattern`.
    fn human_markers(&mut self) {
        for (line, cols) in rows(HUMANS) {
            match cols[..] {
                ["browser", spec] if !literal(spec).0.is_empty() => {
                    self.push(Kind::BrowserMarker, "", String::new(), spec);
                }
                ["app", spec] if !literal(spec).0.is_empty() => self.push(Kind::AppMarker, "", String::new(), spec),
                _ => self.malformed.push(line),
            }
        }
    }

    /// `priority | family | token | version token`.
    fn browsers(&mut self) {
        for (line, cols) in rows(BROWSERS) {
            match cols[..] {
                [priority, family, spec, version] if !spec.is_empty() => match priority.parse() {
                    Ok(priority) => {
                        let version_token = (!version.is_empty()).then_some(version);
                        self.push(
                            Kind::Browser {
                                priority,
                                version_token,
                            },
                            family,
                            String::new(),
                            spec,
                        );
                    }
                    Err(_) => self.malformed.push(line),
                },
                _ => self.malformed.push(line),
            }
        }
    }

    /// `priority | family | token | version`.
    fn operating_systems(&mut self) {
        for (line, cols) in rows(OPERATING_SYSTEMS) {
            let version = match cols.get(3).copied() {
                Some("") => Some(OsVersion::None),
                Some("num") => Some(OsVersion::Number),
                Some("windows") => Some(OsVersion::Windows),
                _ => None,
            };
            match (&cols[..], version) {
                ([priority, family, spec, _], Some(version)) if !spec.is_empty() => match priority.parse() {
                    Ok(priority) => self.push(Kind::Os { priority, version }, family, String::new(), spec),
                    Err(_) => self.malformed.push(line),
                },
                _ => self.malformed.push(line),
            }
        }
    }

    /// `kind | token`.
    fn devices(&mut self) {
        for (line, cols) in rows(DEVICES) {
            let device = match cols.first().copied() {
                Some("tv") => Some(DeviceToken::Tv),
                Some("tablet") => Some(DeviceToken::Tablet),
                Some("mobile") => Some(DeviceToken::Mobile),
                Some("android") => Some(DeviceToken::Android),
                _ => None,
            };
            match (&cols[..], device) {
                ([_, spec], Some(device)) if !spec.is_empty() => {
                    self.push(Kind::Device(device), "", String::new(), spec);
                }
                _ => self.malformed.push(line),
            }
        }
    }
}

/// The non-comment lines of a data file, split on `|` and trimmed.
fn rows(text: &'static str) -> impl Iterator<Item = (&'static str, Vec<&'static str>)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| (line, line.split('|').map(str::trim).collect()))
}

/// A pattern's literal and its checks: `^` anchors at the start, `\b` bounds either end.
fn literal(spec: &'static str) -> (&'static str, bool, bool, bool) {
    let (at_start, rest) = spec.strip_prefix('^').map_or((false, spec), |rest| (true, rest));
    let (bound_before, rest) = rest.strip_prefix("\\b").map_or((false, rest), |rest| (true, rest));
    let (bound_after, rest) = rest.strip_suffix("\\b").map_or((false, rest), |rest| (true, rest));
    (rest, at_start, bound_before, bound_after)
}

/// The default name of a pattern: its literal without surrounding punctuation, spaces as dashes.
fn slug(literal: &str) -> String {
    literal
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .map(|c| if c == ' ' { '-' } else { c.to_ascii_lowercase() })
        .collect()
}

impl Patterns {
    fn build() -> Self {
        let mut builder = Builder::default();
        builder.named_lists();
        builder.human_markers();
        builder.browsers();
        builder.operating_systems();
        builder.devices();
        let mut referers = Vec::new();
        for (line, cols) in rows(REFERERS) {
            match cols[..] {
                [name, host] if !name.is_empty() && !host.is_empty() => {
                    referers.push((format!("bot:referer:{name}"), host));
                }
                _ => builder.malformed.push(line),
            }
        }
        debug_assert!(
            builder.malformed.is_empty(),
            "malformed data lines: {:?}",
            builder.malformed
        );
        Self {
            automaton: build_automaton(&builder.literals),
            list: builder.list,
            referer_automaton: build_automaton(referers.iter().map(|(_, host)| *host)),
            referers,
            malformed: builder.malformed,
        }
    }

    /// Calls `hit` for every pattern found in `haystack` (overlapping, in order of their end),
    /// with its index in [`Patterns::list`] and its byte range, once its checks pass.
    pub(crate) fn for_each_hit(&self, haystack: &[u8], mut hit: impl FnMut(usize, &Pattern, usize, usize)) {
        for found in self.automaton.find_overlapping_iter(Input::new(haystack)) {
            let index = found.pattern().as_usize();
            let pattern = &self.list[index];
            let (start, end) = (found.start(), found.end());
            if pattern.at_start && start != 0 {
                continue;
            }
            if pattern.bound_before && start > 0 && haystack[start - 1].is_ascii_alphanumeric() {
                continue;
            }
            if pattern.bound_after && haystack.get(end).is_some_and(u8::is_ascii_alphanumeric) {
                continue;
            }
            hit(index, pattern, start, end);
        }
    }

    /// The reason of the first scanner host found in a Referer value.
    pub(crate) fn referer_reason(&self, referer: &[u8]) -> Option<&str> {
        self.referer_automaton
            .find(Input::new(referer))
            .map(|found| self.referers[found.pattern().as_usize()].0.as_str())
    }
}

fn build_automaton<I, P>(patterns: I) -> AhoCorasick
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    let patterns: Vec<P> = patterns.into_iter().collect();
    let builder = || {
        let mut builder = AhoCorasick::builder();
        builder.ascii_case_insensitive(true).match_kind(MatchKind::Standard);
        builder
    };
    // A DFA is the fastest to search; should it ever grow past aho-corasick's size limits, the
    // default (a contiguous NFA) still works, only slower.
    builder()
        .kind(Some(AhoCorasickKind::DFA))
        .build(&patterns)
        .unwrap_or_else(|_| {
            builder()
                .build(&patterns)
                .expect("the compiled-in patterns always build (a test builds them)")
        })
}

/// Position of `needle` in `haystack`, ASCII case-insensitively (`needle` in lower case).
pub(crate) fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_line_parses() {
        assert!(
            PATTERNS.malformed.is_empty(),
            "malformed data lines: {:?}",
            PATTERNS.malformed
        );
        assert!(PATTERNS.list.len() > 300);
    }

    #[test]
    fn duplicate_literals_are_all_reported() {
        let mut kinds = Vec::new();
        PATTERNS.for_each_hit(b"blackberry", |_, p, _, _| kinds.push(p.kind));
        assert!(kinds.contains(&Kind::Device(DeviceToken::Mobile)));
        assert!(kinds.iter().any(|k| matches!(k, Kind::Os { .. })));
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("python-requests"), "python-requests");
        assert_eq!(slug("Screaming Frog"), "screaming-frog");
        assert_eq!(slug("yeti/"), "yeti");
    }
}
