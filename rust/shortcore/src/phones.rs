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
        if !phonenumber::is_valid(&number) {
            return Err(PhoneError::Invalid);
        }
        Ok(e164(&number))
    }

    /// Normalises many numbers, spread over the machine's cores; results are in input order.
    pub fn normalize_many<S: AsRef<str> + Sync>(&self, raws: &[S]) -> Vec<std::result::Result<String, PhoneError>> {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        // Below a few thousand numbers, starting threads costs more than it saves.
        if threads == 1 || raws.len() < 4_096 {
            return raws.iter().map(|raw| self.normalize(raw.as_ref())).collect();
        }
        let chunk = raws.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = raws
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || part.iter().map(|raw| self.normalize(raw.as_ref())).collect::<Vec<_>>())
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
