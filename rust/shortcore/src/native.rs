//! One block of `ClickHouse`'s `Native` format, written column by column: what `INSERT … FORMAT
//! Native` reads fastest (a server copies most columns as they are, where `RowBinary` costs it a
//! call per value).
//!
//! Only the types the sink writes: fixed-width numbers (little-endian), `String`,
//! `LowCardinality(String)` (a dictionary per block) and `Map(String, String)`.

use rustc_hash::FxHashMap;

/// A `Native` block being written: a header, then each column in turn.
#[derive(Debug)]
pub struct NativeBlock {
    out: Vec<u8>,
    rows: usize,
}

impl NativeBlock {
    /// A block of `columns` columns of `rows` rows; `capacity` is a guess of its size in bytes.
    pub fn new(columns: usize, rows: usize, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        put_varint(&mut out, columns);
        put_varint(&mut out, rows);
        Self { out, rows }
    }

    fn header(&mut self, name: &str, kind: &str) {
        put_str(&mut self.out, name);
        put_str(&mut self.out, kind);
    }

    /// A column of fixed-width values, each given as its little-endian bytes.
    pub fn fixed<const N: usize>(&mut self, name: &str, kind: &str, values: impl Iterator<Item = [u8; N]>) {
        self.header(name, kind);
        self.out.reserve(self.rows * N);
        for value in values {
            self.out.extend_from_slice(&value);
        }
    }

    /// A `String` column.
    pub fn strings<'a>(&mut self, name: &str, values: impl Iterator<Item = &'a str>) {
        self.header(name, "String");
        for value in values {
            put_str(&mut self.out, value);
        }
    }

    /// A `LowCardinality(String)` column: the block's distinct values once, then an index per row.
    pub fn low_cardinality<'a>(&mut self, name: &str, values: impl Iterator<Item = &'a str>) {
        self.header(name, "LowCardinality(String)");
        let mut keys: Vec<&str> = Vec::new();
        let mut positions: FxHashMap<&str, u32> = FxHashMap::default();
        let mut indexes: Vec<u32> = Vec::with_capacity(self.rows);
        for value in values {
            let next = keys.len() as u32;
            let index = *positions.entry(value).or_insert_with(|| {
                keys.push(value);
                next
            });
            indexes.push(index);
        }
        // Serialization version 1: shared dictionaries with additional keys.
        self.out.extend_from_slice(&1u64.to_le_bytes());
        if indexes.is_empty() {
            return;
        }
        let width: u64 = match keys.len() {
            0..=0x100 => 0,
            0x101..=0x1_0000 => 1,
            _ => 2,
        };
        // The index width, plus "a dictionary follows" (bit 9) and "keys are in this block" (bit 10).
        self.out
            .extend_from_slice(&((1u64 << 9) | (1 << 10) | width).to_le_bytes());
        self.out.extend_from_slice(&(keys.len() as u64).to_le_bytes());
        for key in &keys {
            put_str(&mut self.out, key);
        }
        self.out.extend_from_slice(&(indexes.len() as u64).to_le_bytes());
        for index in indexes {
            match width {
                0 => self.out.push(index as u8),
                1 => self.out.extend_from_slice(&(index as u16).to_le_bytes()),
                _ => self.out.extend_from_slice(&index.to_le_bytes()),
            }
        }
    }

    /// A `Map(String, String)` column: the offsets of the rows' pairs, then all keys, then all
    /// values.
    pub fn string_maps<'a>(&mut self, name: &str, values: impl Iterator<Item = &'a [(String, String)]> + Clone) {
        self.header(name, "Map(String, String)");
        let mut end = 0u64;
        for pairs in values.clone() {
            end += pairs.len() as u64;
            self.out.extend_from_slice(&end.to_le_bytes());
        }
        for pairs in values.clone() {
            for (key, _) in pairs {
                put_str(&mut self.out, key);
            }
        }
        for pairs in values {
            for (_, value) in pairs {
                put_str(&mut self.out, value);
            }
        }
    }

    /// The finished block.
    pub fn finish(self) -> Vec<u8> {
        self.out
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
        let mut block = NativeBlock::new(1, 3, 0);
        block.low_cardinality("c", ["a", "b", "a"].into_iter());
        let out = block.finish();
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
    fn maps_are_offsets_then_keys_then_values() {
        let rows = [vec![("k".to_owned(), "v".to_owned())], vec![]];
        let mut block = NativeBlock::new(1, 2, 0);
        block.string_maps("m", rows.iter().map(Vec::as_slice));
        let out = block.finish();
        let tail = &out[out.len() - 20..];
        assert_eq!(&tail[..16], &[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&tail[16..], &[1, b'k', 1, b'v']);
    }
}
