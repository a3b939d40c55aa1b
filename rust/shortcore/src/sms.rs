//! SMS encoding, length and segment count.
//!
//! A message is sent in GSM-7 when every character is in the GSM 03.38 (3GPP TS 23.038) default
//! alphabet or its extension table, else in UCS-2. Lengths are in the encoding's units: septets for
//! GSM-7, where an extension character costs two (an escape and the character), and UTF-16 code
//! units for UCS-2, where a character outside the BMP costs two (a surrogate pair).
//!
//! One segment carries 160 septets or 70 UCS-2 units. A longer message is split into parts of 153
//! septets or 67 units (the rest of each part is the concatenation header), and an escape pair or a
//! surrogate pair is never split across two parts, so a part can end one unit short.

/// The two encodings an SMS can be sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The GSM 03.38 7-bit default alphabet with its extension table.
    Gsm7,
    /// UCS-2 (UTF-16 code units, as phones send it today).
    Ucs2,
}

impl Encoding {
    /// The name used in the API and reports: `"GSM-7"` or `"UCS-2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gsm7 => "GSM-7",
            Self::Ucs2 => "UCS-2",
        }
    }

    /// Units that fit in a message of one segment.
    pub fn single_segment_units(self) -> usize {
        match self {
            Self::Gsm7 => 160,
            Self::Ucs2 => 70,
        }
    }

    /// Units that fit in each part of a concatenated message.
    pub fn multipart_segment_units(self) -> usize {
        match self {
            Self::Gsm7 => 153,
            Self::Ucs2 => 67,
        }
    }
}

/// The size of one message text as an SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageSize {
    /// The encoding the text needs.
    pub encoding: Encoding,
    /// Unicode scalar values (what Python's `len()` counts).
    pub characters: usize,
    /// Length in the encoding's units (septets or UTF-16 code units).
    pub units: usize,
    /// Segments (SMS parts) the message is billed as; an empty text is one segment.
    pub segments: usize,
}

/// Septets a character costs in GSM-7: 1 (default alphabet), 2 (extension table), or 0 when the
/// character cannot be written in GSM-7 at all.
pub fn gsm7_septets(c: char) -> usize {
    if c.is_ascii() {
        return usize::from(ASCII_SEPTETS[c as usize]);
    }
    match c {
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ' | 'Λ' | 'Ω' | 'Π'
        | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä' | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö'
        | 'ñ' | 'ü' | 'à' => 1,
        '€' => 2,
        _ => 0,
    }
}

/// Septets of every ASCII character in GSM-7 (0 = not representable). From the default alphabet
/// and extension table of 3GPP TS 23.038 §6.2.1.
const ASCII_SEPTETS: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut c = b' ';
    while c <= b'~' {
        table[c as usize] = 1;
        c += 1;
    }
    // Printable ASCII that the default alphabet lacks: '`' is missing altogether; the rest are in
    // the extension table (escape + character).
    table[b'`' as usize] = 0;
    table[b'^' as usize] = 2;
    table[b'{' as usize] = 2;
    table[b'}' as usize] = 2;
    table[b'\\' as usize] = 2;
    table[b'[' as usize] = 2;
    table[b'~' as usize] = 2;
    table[b']' as usize] = 2;
    table[b'|' as usize] = 2;
    table[b'\n' as usize] = 1;
    table[b'\r' as usize] = 1;
    table[0x0C] = 2; // form feed, the extension table's page break
    table
};

/// Greedy packing of characters into parts, never splitting a character's units.
#[derive(Clone, Copy)]
struct Packer {
    units: usize,
    parts: usize,
    in_part: usize,
}

impl Packer {
    const fn new() -> Self {
        Self {
            units: 0,
            parts: 1,
            in_part: 0,
        }
    }

    fn push(&mut self, cost: usize, part_units: usize) {
        self.units += cost;
        if self.in_part + cost > part_units {
            self.parts += 1;
            self.in_part = 0;
        }
        self.in_part += cost;
    }

    fn segments(&self, encoding: Encoding) -> usize {
        if self.units <= encoding.single_segment_units() {
            1
        } else {
            self.parts
        }
    }
}

/// Measures `text` as an SMS: encoding, characters, units and segments, in one pass.
///
/// # Examples
/// ```
/// use shortcore::sms::{measure, Encoding};
///
/// let size = measure("Sale! 20% off {today}");
/// assert_eq!(size.encoding, Encoding::Gsm7);
/// assert_eq!(size.units, 23); // '{' and '}' cost two septets each
/// assert_eq!(size.segments, 1);
///
/// let size = measure(&"😀".repeat(36));
/// assert_eq!((size.encoding, size.units, size.segments), (Encoding::Ucs2, 72, 2));
/// ```
pub fn measure(text: &str) -> MessageSize {
    let mut gsm = Packer::new();
    let mut ucs = Packer::new();
    let mut is_gsm = true;
    let mut characters = 0;
    for c in text.chars() {
        characters += 1;
        if is_gsm {
            match gsm7_septets(c) {
                0 => is_gsm = false,
                cost => gsm.push(cost, Encoding::Gsm7.multipart_segment_units()),
            }
        }
        ucs.push(c.len_utf16(), Encoding::Ucs2.multipart_segment_units());
    }
    let (encoding, packer) = if is_gsm {
        (Encoding::Gsm7, gsm)
    } else {
        (Encoding::Ucs2, ucs)
    };
    MessageSize {
        encoding,
        characters,
        units: packer.units,
        segments: packer.segments(encoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GSM 03.38 default alphabet, in code order; `\u{1b}` (escape) stands at 0x1B.
    const DEFAULT_ALPHABET: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "\u{c}^{}\\[~]|€";

    #[test]
    fn tables_match_3gpp_23_038() {
        assert_eq!(DEFAULT_ALPHABET.chars().count(), 128);
        for c in DEFAULT_ALPHABET.chars().filter(|&c| c != '\u{1b}') {
            assert_eq!(gsm7_septets(c), 1, "{c:?}");
        }
        for c in EXTENSION.chars() {
            assert_eq!(gsm7_septets(c), 2, "{c:?}");
        }
        // Everything else in Latin-1 and a few common lookalikes is outside GSM-7.
        let known: String = DEFAULT_ALPHABET.chars().chain(EXTENSION.chars()).collect();
        for c in (0u32..0x250).filter_map(char::from_u32).filter(|c| !known.contains(*c)) {
            assert_eq!(gsm7_septets(c), 0, "{c:?} U+{:04X}", c as u32);
        }
        for c in ['ç', '’', '“', '…', 'Ё', '\t'] {
            assert_eq!(gsm7_septets(c), 0, "{c:?}");
        }
    }
}
