//! `TokenCodec`: round trips, uniqueness, every length, boundaries, foreign keys.

use proptest::prelude::*;
use shortcore::tokens::{MAX_LENGTH, MIN_LENGTH};
use shortcore::TokenCodec;
use std::collections::HashSet;

fn codec(length: usize) -> TokenCodec {
    TokenCodec::new(b"integration test secret", length).unwrap()
}

proptest! {
    #[test]
    fn round_trip_every_length(length in MIN_LENGTH..=MAX_LENGTH, seed in any::<u64>()) {
        let codec = codec(length);
        let seq = seed % codec.max_seq().saturating_add(1).max(1);
        let seq = if codec.max_seq() == u64::MAX { seed } else { seq };
        let token = codec.encode(seq).unwrap();
        prop_assert_eq!(token.as_str().len(), length);
        prop_assert!(token.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
        prop_assert_eq!(codec.decode(token.as_str()), Some(seq));
    }

    #[test]
    fn decode_never_panics(input in ".{0,20}") {
        let codec = codec(7);
        if let Some(seq) = codec.decode(&input) {
            let token = codec.encode(seq).unwrap();
            prop_assert_eq!(token.as_str(), input.as_str());
        }
    }

    #[test]
    fn decode_bytes_never_panics(input in proptest::collection::vec(any::<u8>(), 0..16)) {
        let codec = codec(7);
        if let Some(seq) = codec.decode_bytes(&input) {
            let token = codec.encode(seq).unwrap();
            prop_assert_eq!(token.as_str().as_bytes(), &input[..]);
        }
    }
}

#[test]
fn consecutive_sequences_are_unique_and_unrelated() {
    for length in MIN_LENGTH..=MAX_LENGTH {
        let codec = codec(length);
        let mut seen = HashSet::new();
        let mut tokens = Vec::new();
        codec.encode_range_into(1_000, 20_000, &mut tokens).unwrap();
        for (i, token) in tokens.iter().enumerate() {
            assert!(seen.insert(*token), "duplicate at length {length}");
            assert_eq!(codec.decode(token.as_str()), Some(1_000 + i as u64));
        }
        // Neighbours look unrelated: their last characters agree about 1 time in 62, not always
        // (lengths 11 and 12 always start with '0' or '1', as u64 ends below 62^11).
        let last = |t: &shortcore::Token| t.as_str().as_bytes()[length - 1];
        let same_last = tokens.windows(2).filter(|w| last(&w[0]) == last(&w[1])).count();
        assert!(
            same_last < tokens.len() / 20,
            "length {length}: {same_last} neighbours share a last char"
        );
    }
}

#[test]
fn boundaries() {
    for length in MIN_LENGTH..=MAX_LENGTH {
        let codec = codec(length);
        let max = codec.max_seq();
        for seq in [0, 1, 2, max / 2, max - 1, max] {
            let token = codec.encode(seq).unwrap();
            assert_eq!(codec.decode(token.as_str()), Some(seq), "length {length} seq {seq}");
        }
        if max < u64::MAX {
            assert!(codec.encode(max + 1).unwrap_err().is_invalid_argument());
            assert_eq!(max + 1, 62u64.pow(length as u32));
        }
        // A range that runs past the end appends nothing.
        let mut out = Vec::new();
        assert!(codec.encode_range_into(max, 2, &mut out).is_err());
        assert!(out.is_empty());
        assert!(codec.encode_range_into(max, 1, &mut out).is_ok());
        assert_eq!(out.len(), 1);
    }
    assert_eq!(codec(11).max_seq(), u64::MAX);
    assert_eq!(codec(10).max_seq(), 62u64.pow(10) - 1);
}

#[test]
fn rejects_what_is_not_a_token() {
    let codec = codec(7);
    let good = codec.encode(99).unwrap().to_string();
    for bad in [
        "", "abc", "abcdefgh", "abc-def", "abc def", "abcdéf", "ABCDEF\0", "zzzzzz/", "%41bcdef",
    ] {
        assert_eq!(codec.decode(bad), None, "{bad:?}");
    }
    assert_eq!(codec.decode(&good[..6]), None);
    assert_eq!(codec.decode(&format!("{good}0")), None);
    assert_eq!(codec.decode_bytes(b"\xff\xfe\x00abcd"), None);
    // Lengths 11 and 12 cover all of u64; larger base62 values are outside the range.
    let long = TokenCodec::new(b"k", 11).unwrap();
    assert_eq!(long.decode("zzzzzzzzzzz"), None); // 62^11 - 1 > u64::MAX
    assert!(long.decode("LygHa16AHYF").is_some()); // u64::MAX in base62
    assert_eq!(long.decode("LygHa16AHYG"), None); // u64::MAX + 1
}

#[test]
fn invalid_construction() {
    assert!(TokenCodec::new(b"", 7).unwrap_err().is_invalid_argument());
    for length in [0, 5, 13, 100] {
        assert!(
            TokenCodec::new(b"k", length).unwrap_err().is_invalid_argument(),
            "length {length}"
        );
    }
}

#[test]
fn keys_and_lengths_give_unrelated_tokens() {
    let a = TokenCodec::new(b"key a", 7).unwrap();
    let b = TokenCodec::new(b"key b", 7).unwrap();
    let same = (0..10_000)
        .filter(|&s| a.encode(s).unwrap() == b.encode(s).unwrap())
        .count();
    assert_eq!(same, 0);
}

/// A token minted under one key decodes under another to a uniformly random number of the
/// domain, so it hits one of `n` numbers in use with probability `n / 62^7` — here 10^5 tokens
/// against 10^5 numbers in use: an expected 0.003 hits, so any hit is a bug.
#[test]
fn foreign_tokens_miss_the_numbers_in_use() {
    let ours = codec(7);
    let theirs = TokenCodec::new(b"another deployment", 7).unwrap();
    let in_use = 0..100_000u64;
    let mut foreign = Vec::new();
    theirs.encode_range_into(0, 100_000, &mut foreign).unwrap();
    let hits = foreign
        .iter()
        .filter_map(|t| ours.decode(t.as_str()))
        .filter(|s| in_use.contains(s))
        .count();
    assert_eq!(hits, 0);
}
