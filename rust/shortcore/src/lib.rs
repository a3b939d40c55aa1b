//! shortcore's core: everything on the hot paths of an SMS link-tracking engine, in pure Rust.
//!
//! * [`tokens`] — short-link tokens, a keyed format-preserving permutation of sequence numbers.
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

mod error;
pub mod tokens;

pub use error::{Error, Result};
pub use tokens::{Token, TokenCodec};
