//! SMS sizes against the shared golden table `tests/data/sms-segments.tsv`.

use shortcore::sms::measure;

const CASES: &str = include_str!("../../../tests/data/sms-segments.tsv");

/// Expands the table's text notation: `a*159+€+U+000A*2`.
fn expand(spec: &str) -> String {
    let mut text = String::new();
    for piece in spec.split('+').filter(|p| !p.is_empty()) {
        let (ch, count) = match piece.rsplit_once('*') {
            Some((ch, n)) if n.chars().all(|c| c.is_ascii_digit()) => (ch, n.parse().unwrap()),
            _ => (piece, 1),
        };
        let ch = match ch.strip_prefix('U') {
            Some(hex) if !hex.is_empty() => char::from_u32(u32::from_str_radix(hex, 16).unwrap()).unwrap(),
            _ => ch.chars().next().unwrap(),
        };
        text.extend(std::iter::repeat_n(ch, count));
    }
    text
}

#[test]
fn golden_table() {
    let mut checked = 0;
    for line in CASES.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 5, "bad line {line:?}");
        // `U+` pieces start with "U+" and so split on '+': rejoin them.
        let text = expand(&cols[0].replace("U+", "U"));
        let size = measure(&text);
        let got = (size.encoding.as_str(), size.characters, size.units, size.segments);
        let want = (
            cols[1],
            cols[2].parse().unwrap(),
            cols[3].parse().unwrap(),
            cols[4].parse().unwrap(),
        );
        assert_eq!(got, want, "case {:?}", cols[0]);
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} cases");
}

#[test]
fn segments_never_split_a_pair() {
    // Brute force the packing rule: an escape pair (GSM-7) or a surrogate pair (UCS-2) that would
    // straddle a part boundary starts the next part instead.
    for prefix in 140..170 {
        for (wide, part) in [('€', 153), ('😀', 67)] {
            let narrow = if wide == '€' { 'a' } else { 'я' };
            let text: String = std::iter::repeat_n(narrow, prefix)
                .chain(std::iter::once(wide))
                .chain(std::iter::repeat_n(narrow, 200))
                .collect();
            let size = measure(&text);
            let mut parts = 1;
            let mut used = 0;
            for c in text.chars() {
                let cost = if c == wide { 2 } else { 1 };
                if used + cost > part {
                    parts += 1;
                    used = 0;
                }
                used += cost;
            }
            assert_eq!(size.segments, parts, "prefix {prefix} wide {wide}");
        }
    }
}
