//! One block of `ClickHouse`'s `Native` format: what `INSERT … FORMAT Native` reads fastest (a
//! server copies most columns as they are, where `RowBinary` costs it a call per value).
//!
//! The format is column after column, but the rows are read once, each value appended to its
//! column's buffer ([`Column`]): reading every row once per column would fetch each row's memory
//! from RAM again for each column.
//!
//! Only the types the sink writes: fixed-width numbers (little-endian), `String`,
//! `LowCardinality(String)` (a dictionary per block) and `Map(String, String)`.

use rustc_hash::FxHashMap;

/// One column of a block being filled a row at a time.
#[derive(Debug)]
pub enum Column {
    /// Fixed-width values, little-endian; the type is named.
    Fixed(&'static str, Vec<u8>),
    /// `String`.
    Strings(Vec<u8>),
    /// `LowCardinality(String)`.
    LowCardinality(Dictionary),
    /// `Map(String, String)`: offsets, keys and values.
    Maps {
        /// The end of each row's pairs, as little-endian `u64`.
        offsets: Vec<u8>,
        /// Every key.
        keys: Vec<u8>,
        /// Every value.
        values: Vec<u8>,
        /// Pairs so far.
        pairs: u64,
    },
}

impl Column {
    /// A column of fixed-width values of type `kind`.
    pub fn fixed(kind: &'static str, rows: usize, width: usize) -> Self {
        Self::Fixed(kind, Vec::with_capacity(rows * width))
    }

    /// A `String` column.
    pub fn strings(rows: usize, average: usize) -> Self {
        Self::Strings(Vec::with_capacity(rows * (average + 1)))
    }

    /// A `LowCardinality(String)` column.
    pub fn low_cardinality(rows: usize) -> Self {
        Self::LowCardinality(Dictionary {
            keys: Vec::new(),
            prints: Vec::new(),
            positions: FxHashMap::default(),
            last: None,
            indexes: Vec::with_capacity(rows),
        })
    }

    /// A `Map(String, String)` column.
    pub fn maps(rows: usize) -> Self {
        Self::Maps {
            offsets: Vec::with_capacity(rows * 8),
            keys: Vec::new(),
            values: Vec::new(),
            pairs: 0,
        }
    }

    /// Appends a fixed-width value (a [`Column::Fixed`]).
    pub fn push_fixed(&mut self, value: &[u8]) {
        if let Self::Fixed(_, out) = self {
            out.extend_from_slice(value);
        }
    }

    /// Appends a string (a [`Column::Strings`] or [`Column::LowCardinality`]).
    pub fn push_str(&mut self, value: &str) {
        match self {
            Self::Strings(out) => put_str(out, value),
            Self::LowCardinality(dictionary) => dictionary.push(value),
            _ => {}
        }
    }

    /// Appends a row's pairs (a [`Column::Maps`]).
    pub fn push_pairs<S: AsRef<str>>(&mut self, row: &[(S, S)]) {
        if let Self::Maps {
            offsets,
            keys,
            values,
            pairs,
        } = self
        {
            for (key, value) in row {
                put_str(keys, key.as_ref());
                put_str(values, value.as_ref());
            }
            *pairs += row.len() as u64;
            offsets.extend_from_slice(&pairs.to_le_bytes());
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Fixed(kind, _) => kind,
            Self::Strings(_) => "String",
            Self::LowCardinality(_) => "LowCardinality(String)",
            Self::Maps { .. } => "Map(String, String)",
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Fixed(_, data) | Self::Strings(data) => out.extend_from_slice(data),
            Self::LowCardinality(dictionary) => dictionary.write(out),
            Self::Maps {
                offsets, keys, values, ..
            } => {
                out.extend_from_slice(offsets);
                out.extend_from_slice(keys);
                out.extend_from_slice(values);
            }
        }
    }
}

/// The length and the last 8 bytes of `value`: values of one column mostly differ there (names
/// in length, ids in their last digits), and values of up to 8 bytes (a class, a method, a
/// version) are equal exactly when their fingerprints are, without a call to `memcmp`.
fn fingerprint(value: &str) -> u64 {
    let bytes = value.as_bytes();
    let mut tail = [0u8; 8];
    let n = bytes.len().min(8);
    tail[..n].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_le_bytes(tail) ^ (bytes.len() as u64).rotate_right(8)
}

/// A `LowCardinality(String)` column: the block's distinct values once, then an index per row.
#[derive(Debug)]
pub struct Dictionary {
    keys: Vec<String>,
    /// [`fingerprint`] of each key.
    prints: Vec<u64>,
    positions: FxHashMap<String, u32>,
    last: Option<u32>,
    indexes: Vec<u32>,
}

impl Dictionary {
    fn push(&mut self, value: &str) {
        // Few distinct values per block is the rule (a class, a browser): the last value and a
        // scan of a short list find them faster than hashing; a map takes over past 16.
        let print = fingerprint(value);
        let same = |i: usize| {
            let key = &self.keys[i];
            self.prints[i] == print
                && if value.len() <= 8 {
                    key.len() == value.len()
                } else {
                    key == value
                }
        };
        let index = match self.last {
            Some(last) if same(last as usize) => last,
            _ => {
                let found = if self.keys.len() <= 16 {
                    (0..self.keys.len()).find(|&i| same(i)).map(|i| i as u32)
                } else {
                    self.positions.get(value).copied()
                };
                found.unwrap_or_else(|| self.add(value))
            }
        };
        self.last = Some(index);
        self.indexes.push(index);
    }

    fn add(&mut self, value: &str) -> u32 {
        let index = self.keys.len() as u32;
        self.keys.push(value.to_owned());
        self.prints.push(fingerprint(value));
        if self.keys.len() == 17 {
            self.positions = self.keys.iter().cloned().zip(0..).collect();
        } else if self.keys.len() > 17 {
            self.positions.insert(value.to_owned(), index);
        }
        index
    }

    fn write(&self, out: &mut Vec<u8>) {
        // Serialization version 1: shared dictionaries with additional keys.
        out.extend_from_slice(&1u64.to_le_bytes());
        if self.indexes.is_empty() {
            return;
        }
        let width: u64 = match self.keys.len() {
            0..=0x100 => 0,
            0x101..=0x1_0000 => 1,
            _ => 2,
        };
        // The index width, plus "a dictionary follows" (bit 9) and "keys are in this block" (bit 10).
        out.extend_from_slice(&((1u64 << 9) | (1 << 10) | width).to_le_bytes());
        out.extend_from_slice(&(self.keys.len() as u64).to_le_bytes());
        for key in &self.keys {
            put_str(out, key);
        }
        out.extend_from_slice(&(self.indexes.len() as u64).to_le_bytes());
        for &index in &self.indexes {
            match width {
                0 => out.push(index as u8),
                1 => out.extend_from_slice(&(index as u16).to_le_bytes()),
                _ => out.extend_from_slice(&index.to_le_bytes()),
            }
        }
    }
}

/// A whole block: `rows` rows of the named columns, in order.
pub fn block(rows: usize, columns: &[(&str, Column)]) -> Vec<u8> {
    let size: usize = columns.iter().map(|(_, column)| column_size(column)).sum();
    let mut out = Vec::with_capacity(size + 64 * columns.len() + 16);
    put_varint(&mut out, columns.len());
    put_varint(&mut out, rows);
    for (name, column) in columns {
        put_str(&mut out, name);
        put_str(&mut out, column.kind());
        column.write(&mut out);
    }
    out
}

fn column_size(column: &Column) -> usize {
    match column {
        Column::Fixed(_, data) | Column::Strings(data) => data.len(),
        Column::LowCardinality(dictionary) => dictionary.indexes.len() + 64,
        Column::Maps {
            offsets, keys, values, ..
        } => offsets.len() + keys.len() + values.len(),
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_cardinality_writes_each_value_once() {
        let mut column = Column::low_cardinality(3);
        for value in ["a", "b", "a"] {
            column.push_str(value);
        }
        let out = block(3, &[("c", column)]);
        let mut expected = vec![1, 3, 1, b'c'];
        expected.push(22);
        expected.extend_from_slice(b"LowCardinality(String)");
        expected.extend_from_slice(&1u64.to_le_bytes());
        expected.extend_from_slice(&((1u64 << 9) | (1 << 10)).to_le_bytes());
        expected.extend_from_slice(&2u64.to_le_bytes());
        expected.extend_from_slice(&[1, b'a', 1, b'b']);
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(&[0, 1, 0]);
        assert_eq!(out, expected);
    }

    #[test]
    fn values_alike_in_their_fingerprint_stay_apart() {
        // Same last bytes, lengths on either side of 8, a control byte where the length is folded
        // in, and empty strings: each distinct value gets its own key, each repeat finds it.
        let values = [
            "",
            "\0",
            "abcdefg",
            "xabcdefg",
            "abcdefg\x0f",
            "\x0fabcdefg",
            "yabcdefg",
            "a-long-value-ending-abcdefg",
            "b-long-value-ending-abcdefg",
            "abcdefg\x08",
        ];
        let mut column = Column::low_cardinality(values.len() * 2);
        for value in values.iter().chain(values.iter().rev()) {
            column.push_str(value);
        }
        let Column::LowCardinality(dictionary) = &column else {
            unreachable!()
        };
        assert_eq!(dictionary.keys, values.map(str::to_owned));
        let n = values.len() as u32;
        let expected: Vec<u32> = (0..n).chain((0..n).rev()).collect();
        assert_eq!(dictionary.indexes, expected);
    }

    #[test]
    fn many_distinct_values_move_to_a_map() {
        let mut column = Column::low_cardinality(40);
        for i in 0..40 {
            column.push_str(&format!("v{}", i % 20));
        }
        let Column::LowCardinality(dictionary) = &column else {
            unreachable!()
        };
        assert_eq!(dictionary.keys.len(), 20);
        assert_eq!(dictionary.indexes[25], 5);
    }

    #[test]
    fn maps_are_offsets_then_keys_then_values() {
        let mut column = Column::maps(2);
        column.push_pairs(&[("k", "v")]);
        column.push_pairs::<&str>(&[]);
        let out = block(2, &[("m", column)]);
        let tail = &out[out.len() - 20..];
        assert_eq!(&tail[..16], &[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&tail[16..], &[1, b'k', 1, b'v']);
    }
}
