//! Phone normalisation: a table of numbers from several countries, bad input, batch order.

use proptest::prelude::*;
use shortcore::phones::{PhoneError, PhoneNormalizer};

#[test]
fn table() {
    let de = PhoneNormalizer::new(Some("de")).unwrap();
    let none = PhoneNormalizer::new(None).unwrap();
    let cases: &[(&PhoneNormalizer, &str, Result<&str, PhoneError>)] = &[
        (&de, "+4915123456789", Ok("+4915123456789")),
        (&de, "+49 151 23456789", Ok("+4915123456789")),
        (&de, "0151/23456789", Ok("+4915123456789")),
        (&de, "(0151) 234-567-89", Ok("+4915123456789")),
        (&de, "004915123456789", Ok("+4915123456789")),
        (&de, "+1 (415) 555-2671", Ok("+14155552671")),
        (&de, "+33 6 12 34 56 78", Ok("+33612345678")),
        (&de, "+44 7911 123456", Ok("+447911123456")),
        (&de, "+91 98765 43210", Ok("+919876543210")),
        (&de, "  +4915123456789  ", Ok("+4915123456789")),
        (&none, "+4915123456789", Ok("+4915123456789")),
        (&none, "0151 23456789", Err(PhoneError::NoCountryCode)),
        (&de, "", Err(PhoneError::Empty)),
        (&de, "   ", Err(PhoneError::Empty)),
        (&de, "hello", Err(PhoneError::NotANumber)),
        (&de, "+49 1", Err(PhoneError::NotANumber)),
        (&de, "+49 151 234", Err(PhoneError::Invalid)),
        (&de, "+999 123456789", Err(PhoneError::NotANumber)),
        (&de, "+1 555 0100", Err(PhoneError::Invalid)),
        (&de, &"9".repeat(200), Err(PhoneError::TooLong)),
    ];
    for (normalizer, raw, want) in cases {
        let got = normalizer.normalize(raw);
        assert_eq!(got.as_deref().map_err(|e| *e), *want, "{raw:?}");
    }
}

#[test]
fn unknown_region_is_an_argument_error() {
    assert!(PhoneNormalizer::new(Some("XX")).unwrap_err().is_invalid_argument());
    assert!(PhoneNormalizer::new(Some("")).unwrap_err().is_invalid_argument());
}

#[test]
fn batch_keeps_order_across_threads() {
    let de = PhoneNormalizer::new(Some("DE")).unwrap();
    let raws: Vec<String> = (0..10_000)
        .map(|i| {
            if i % 7 == 0 {
                format!("bad{i}")
            } else {
                format!("+49151{i:08}")
            }
        })
        .collect();
    let results = de.normalize_many(&raws);
    assert_eq!(results.len(), raws.len());
    for (raw, result) in raws.iter().zip(&results) {
        assert_eq!(result.as_ref().ok(), de.normalize(raw).as_ref().ok(), "{raw}");
    }
}

proptest! {
    #[test]
    fn never_panics(raw in "\\PC{0,40}") {
        let de = PhoneNormalizer::new(Some("DE")).unwrap();
        let _ = de.normalize(&raw);
    }

    #[test]
    fn never_panics_on_number_shapes(raw in "[+0-9 ()./-]{0,30}") {
        let de = PhoneNormalizer::new(Some("DE")).unwrap();
        if let Ok(e164) = de.normalize(&raw) {
            prop_assert!(e164.starts_with('+'));
            prop_assert_eq!(de.normalize(&e164), Ok(e164.clone()));
        }
    }
}
