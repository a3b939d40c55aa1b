//! The one error type of the core.

use std::fmt;

/// An error from the shortcore core.
///
/// The kind is private so that new kinds can be added without breaking callers; ask with the
/// `is_*` methods. The binding maps every kind to a Python exception in exactly one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: Kind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An argument the caller gave is outside what the function accepts.
    InvalidArgument,
}

impl Error {
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::InvalidArgument,
            message: message.into(),
        }
    }

    /// True when the caller passed a value the function does not accept (a bad length, an
    /// out-of-range sequence number, an empty key…). Python sees these as `ValueError`.
    pub fn is_invalid_argument(&self) -> bool {
        self.kind == Kind::InvalidArgument
    }

    /// The human-readable message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The result type of the core.
pub type Result<T> = std::result::Result<T, Error>;
