//! Phone numbers: recipients' numbers validated and normalised to E.164.
//!
//! Parsing and validation are libphonenumber's rules and metadata, through the `phonenumber`
//! crate (a Rust port that tracks libphonenumber's releases). Python's `phonenumbers` gives the same
//! answers but validates about 40,000 numbers a second here; campaign uploads of a million rows need
//! the batch path below, which runs without the GIL on every core.

use phonenumber::country::Id;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Why a phone number was refused. `as_str` gives the reason shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhoneError {
    /// Nothing but blanks.
    Empty,
    /// Longer than any phone number with formatting can be.
    TooLong,
    /// Not shaped like a phone number at all.
    NotANumber,
    /// A national number with no default region to read it in.
    NoCountryCode,
    /// Shaped like a number, but not a valid one for its country.
    Invalid,
}

impl PhoneError {
    /// The reason, as reports show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong => "too long to be a phone number",
            Self::NotANumber => "not a phone number",
            Self::NoCountryCode => "no country code (start with + or set a default region)",
            Self::Invalid => "not a valid number for its country",
        }
    }
}

impl fmt::Display for PhoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for PhoneError {}

/// E.164 is `+`, the country code, the national number's leading zeros (Italy keeps them) and the
/// national number. The crate's general formatter looks up format metadata first and costs as much
/// as the parse; a test checks this against it.
fn e164(number: &phonenumber::PhoneNumber) -> String {
    use std::fmt::Write;
    let national = number.national();
    let mut out = String::with_capacity(16);
    let _ = write!(out, "+{}", number.code().value());
    out.extend(std::iter::repeat_n('0', usize::from(national.zeros())));
    let _ = write!(out, "{}", national.value());
    out
}

/// `phonenumber::is_valid`, answered faster and with the same result (a test checks it against
/// the crate on numbers of every region).
///
/// A number is valid when its region's general pattern and any one type's pattern match. The
/// crate tests every type in a fixed order to name the type (premium rate first, mobile last):
/// eleven regex searches for a mobile number. Testing mobile and fixed line first gives the answer
/// in three. And the crate's patterns live in one LRU cache of compiled regexes behind a global
/// mutex, looked up by hashing the pattern's text on every use; here each thread compiles the
/// patterns of the regions it meets once ([`RegionPatterns`]), the same sources with the same
/// options.
fn is_valid(number: &phonenumber::PhoneNumber) -> bool {
    use phonenumber::metadata::DATABASE;

    let database = &*DATABASE;
    let code = number.code().value();
    let national = number.national().to_string();
    let Some(regions) = database.region(&code) else {
        return false;
    };
    // Which region's rules apply: as the crate's `source_for` decides it.
    let meta = if let [region] = regions.as_slice() {
        if *region == "001" {
            database.by_code(&code).and_then(|metas| metas.into_iter().next())
        } else {
            region.parse::<Id>().ok().and_then(|id| database.by_id(id.as_ref()))
        }
    } else {
        regions.iter().find_map(|region| {
            let meta = database.by_id(*region)?;
            let applies = RegionPatterns::with(meta, |patterns| match &patterns.leading_digits {
                Some(pattern) => pattern.find(&national).is_some_and(|m| m.start() == 0),
                None => patterns.has_type(&national),
            });
            if applies {
                region.parse::<Id>().ok().and_then(|id| database.by_id(id.as_ref()))
            } else {
                None
            }
        })
    };
    meta.is_some_and(|meta| RegionPatterns::with(meta, |patterns| patterns.has_type(&national)))
}

/// One number-type pattern: the possible lengths and the national-number regex.
struct TypePattern {
    lengths: Vec<u16>,
    regex: Option<regex::Regex>,
}

impl TypePattern {
    fn new(desc: &phonenumber::metadata::Descriptor) -> Self {
        Self {
            lengths: desc.possible_length().to_vec(),
            regex: compile(desc.national_number().as_str()),
        }
    }

    /// As `Descriptor::is_match`: a possible length, and the pattern found at the start.
    fn is_match(&self, value: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(value.len() as u16)))
            && self
                .regex
                .as_ref()
                .is_some_and(|regex| regex.find(value).is_some_and(|m| m.start() == 0))
    }
}

fn compile(source: &str) -> Option<regex::Regex> {
    regex::RegexBuilder::new(source).ignore_whitespace(true).build().ok()
}

/// A region's validity patterns, compiled once per thread.
struct RegionPatterns {
    general: TypePattern,
    /// Mobile and fixed line first: most numbers are one of them.
    types: Vec<TypePattern>,
    leading_digits: Option<regex::Regex>,
}

impl RegionPatterns {
    fn new(meta: &phonenumber::metadata::Metadata) -> Self {
        let d = meta.descriptors();
        let types = [
            d.mobile(),
            d.fixed_line(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ];
        Self {
            general: TypePattern::new(d.general()),
            types: types.into_iter().flatten().map(TypePattern::new).collect(),
            leading_digits: meta.leading_digits().and_then(|pattern| compile(pattern.as_str())),
        }
    }

    fn has_type(&self, national: &str) -> bool {
        self.general.is_match(national) && self.types.iter().any(|pattern| pattern.is_match(national))
    }

    /// Runs `f` with `meta`'s patterns. The metadata is a static database, so its address names
    /// the region for the life of the process.
    fn with<T>(meta: &phonenumber::metadata::Metadata, f: impl FnOnce(&Self) -> T) -> T {
        thread_local! {
            static COMPILED: std::cell::RefCell<std::collections::HashMap<usize, std::rc::Rc<RegionPatterns>>> =
                std::cell::RefCell::default();
        }
        let key = std::ptr::from_ref(meta) as usize;
        let patterns = COMPILED.with(|compiled| {
            std::rc::Rc::clone(
                compiled
                    .borrow_mut()
                    .entry(key)
                    .or_insert_with(|| std::rc::Rc::new(Self::new(meta))),
            )
        });
        f(&patterns)
    }
}

/// Longest raw input worth parsing: E.164 has at most 15 digits, and formatting, an extension or
/// a `tel:` prefix add a few dozen characters at most.
const MAX_RAW_LENGTH: usize = 64;

/// Validates phone numbers and writes them in E.164, reading national numbers in a default region.
///
/// # Examples
/// ```
/// use shortcore::phones::{PhoneNormalizer, PhoneError};
///
/// let de = PhoneNormalizer::new(Some("DE")).unwrap();
/// assert_eq!(de.normalize("0151 2345 6789").unwrap(), "+4915123456789");
/// assert_eq!(de.normalize("+44 7911 123456").unwrap(), "+447911123456");
/// assert_eq!(de.normalize("12"), Err(PhoneError::Invalid));
/// assert_eq!(PhoneNormalizer::new(None).unwrap().normalize("0151 2345 6789"), Err(PhoneError::NoCountryCode));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PhoneNormalizer {
    region: Option<Id>,
}

impl PhoneNormalizer {
    /// A normaliser that reads national numbers in `default_region` (ISO 3166 alpha-2, e.g.
    /// `"DE"`), or accepts only international numbers when it is `None`.
    ///
    /// # Errors
    /// An invalid-argument error for a region code libphonenumber does not know.
    pub fn new(default_region: Option<&str>) -> Result<Self> {
        let region = match default_region {
            None => None,
            Some(code) => Some(
                Id::from_str(&code.trim().to_ascii_uppercase())
                    .map_err(|_| Error::invalid_argument(format!("unknown region code {code:?}")))?,
            ),
        };
        Ok(Self { region })
    }

    /// The number in E.164 (`+4915123456789`), or why it was refused.
    ///
    /// # Errors
    /// A [`PhoneError`] naming the reason.
    pub fn normalize(&self, raw: &str) -> std::result::Result<String, PhoneError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(PhoneError::Empty);
        }
        if raw.len() > MAX_RAW_LENGTH {
            return Err(PhoneError::TooLong);
        }
        if self.region.is_none() && !raw.starts_with('+') && !raw.starts_with("00") {
            return Err(PhoneError::NoCountryCode);
        }
        let number = phonenumber::parse(self.region, raw).map_err(|_| PhoneError::NotANumber)?;
        if !is_valid(&number) {
            return Err(PhoneError::Invalid);
        }
        Ok(e164(&number))
    }

    /// Normalises many numbers, spread over the machine's cores; results are in input order.
    ///
    /// The work runs on rayon's pool of long-lived threads: threads started per call would each
    /// get a fresh malloc arena, and a million-row list would leave a dozen arenas of freed memory.
    pub fn normalize_many<S: AsRef<str> + Sync>(&self, raws: &[S]) -> Vec<std::result::Result<String, PhoneError>> {
        use rayon::prelude::*;
        raws.par_iter()
            // Below a few thousand numbers, handing work to other threads costs more than it saves.
            .with_min_len(2_048)
            .map(|raw| self.normalize(raw.as_ref()))
            .collect()
    }
}

/// The E.164 numbers of a list seen so far, each with the line it was first seen on: how a
/// recipient list finds its duplicates in 12 bytes a number rather than a Python dict's ~100.
#[derive(Debug, Default, Clone)]
pub struct FirstSeen {
    lines: std::collections::HashMap<u64, u32>,
}

impl FirstSeen {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `e164` at `line` if it is new and returns `None`; returns the first line it was
    /// seen on otherwise. A string that is not `+` and 1 to 15 digits is never a duplicate.
    ///
    /// # Examples
    /// ```
    /// use shortcore::phones::FirstSeen;
    ///
    /// let mut seen = FirstSeen::new();
    /// assert_eq!(seen.first_seen("+4915123456789", 2), None);
    /// assert_eq!(seen.first_seen("+4915123456789", 9), Some(2));
    /// assert_eq!(seen.len(), 1);
    /// ```
    pub fn first_seen(&mut self, e164: &str, line: u32) -> Option<u32> {
        let digits = e164.strip_prefix('+')?;
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let key = digits.parse::<u64>().ok()?;
        match self.lines.entry(key) {
            std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(line);
                None
            }
        }
    }

    /// How many distinct numbers were recorded.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_seen_ignores_what_is_not_e164() {
        let mut seen = FirstSeen::new();
        for bad in ["", "+", "4915123456789", "+49x", "+1234567890123456"] {
            assert_eq!(seen.first_seen(bad, 1), None);
            assert_eq!(seen.first_seen(bad, 2), None, "{bad:?}");
        }
        assert!(seen.is_empty());
        // Leading zeros cannot follow a country code, so digits map to distinct numbers.
        assert_eq!(seen.first_seen("+1555", 3), None);
        assert_eq!(seen.first_seen("+15550", 4), None);
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn validity_matches_the_crate() {
        use phonenumber::metadata::DATABASE;
        // Every region's example numbers, and variations of them that are valid or not.
        let mut checked = 0;
        for meta in DATABASE.iter() {
            let d = meta.descriptors();
            let examples = [
                d.general(),
                d.fixed_line().unwrap_or(d.general()),
                d.mobile().unwrap_or(d.general()),
            ]
            .into_iter()
            .chain(d.toll_free())
            .chain(d.voip())
            .filter_map(|desc| desc.example());
            for example in examples {
                for variant in [
                    example.to_owned(),
                    format!("{example}1"),
                    example[..example.len().saturating_sub(1)].to_owned(),
                    format!("9{example}"),
                    format!("1{example}"),
                    example.replace(|c: char| c != '0' && c.is_ascii_digit(), "7"),
                ] {
                    let raw = format!("+{}{variant}", meta.country_code());
                    if let Ok(number) = phonenumber::parse(None, &raw) {
                        assert_eq!(is_valid(&number), phonenumber::is_valid(&number), "{raw}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1_000, "{checked}");
    }

    #[test]
    fn e164_matches_the_crate_formatter() {
        for raw in [
            "+4915123456789",
            "+390612345678",
            "+39 3123456789",
            "+447911123456",
            "+14155552671",
            "+8613800138000",
        ] {
            let number = phonenumber::parse(None, raw).unwrap();
            assert_eq!(
                e164(&number),
                number.format().mode(phonenumber::Mode::E164).to_string(),
                "{raw}"
            );
        }
    }
}
