//! A/B variants: which of a campaign's texts a recipient gets.
//!
//! Recipient `r` gets the variant whose share of `[0, 2^64)` holds the 8-byte Blake2b of `r`
//! (8 bytes, little-endian) keyed with the campaign's seed, read as a little-endian number. The
//! shares follow the weights. This must give exactly what the Python package's
//! `shortcore.variants.VariantAssigner` gives (the edge, the renderer and the sink all judge a
//! recipient's variant, and campaigns created before this module existed were split by Python), so
//! the bounds are computed with the same float operations, down to `math.fsum` and `round`.

use blake2::digest::core_api::{Block, Buffer, UpdateCore, VariableOutputCore};
use blake2::digest::Output;
use blake2::Blake2bVarCore;

use crate::{Error, Result};

/// The longest key Blake2b takes.
pub const MAX_SEED_BYTES: usize = 64;

/// Recipient index → variant index, from a campaign's seed and its variants' weights.
///
/// # Examples
/// ```
/// use shortcore::variants::VariantAssigner;
///
/// let assigner = VariantAssigner::new(&[7; 16], &[1.0, 3.0])?;
/// let split = assigner.variants_of(0, 10_000);
/// let b = split.iter().filter(|&&v| v == 1).count();
/// assert!((7_000..8_000).contains(&b));
/// # Ok::<(), shortcore::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct VariantAssigner {
    /// The keyed state with the key block already compressed: a hash is then one compression, of
    /// the recipient's 8 bytes as the last block (a keyed Blake2b compresses its key block first,
    /// as a block that is not the last, which is what `update_blocks` does).
    base: Blake2bVarCore,
    /// `bounds[i]` is the upper end of variant `i`'s share; the last is 2^64.
    bounds: Vec<u128>,
}

impl VariantAssigner {
    /// An assigner for a seed of 1 to 64 bytes and one weight (> 0, finite) per variant.
    ///
    /// # Errors
    /// An invalid-argument error for an empty or longer seed, no weights, or a weight that is not
    /// a finite number above 0.
    pub fn new(seed: &[u8], weights: &[f64]) -> Result<Self> {
        if weights.is_empty() || weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
            return Err(Error::invalid_argument("variant weights must be numbers > 0"));
        }
        if seed.is_empty() || seed.len() > MAX_SEED_BYTES {
            return Err(Error::invalid_argument("the variant seed must be 1 to 64 bytes"));
        }
        let space = 2f64.powi(64);
        let total = fsum(weights);
        let mut running = 0.0;
        let mut bounds = Vec::with_capacity(weights.len());
        for weight in &weights[..weights.len() - 1] {
            running += weight;
            // Python's round() of a float: halves to even, exact as an integer.
            let bound = (running / total * space).round_ties_even();
            // In [0, 2^64] because every weight is > 0; the cast of such an integer is exact.
            #[allow(clippy::cast_sign_loss)]
            bounds.push((bound as u128).min(1 << 64));
        }
        bounds.push(1 << 64);
        let mut base = Blake2bVarCore::new_with_params(&[], &[], seed.len(), 8);
        let mut key_block = Block::<Blake2bVarCore>::default();
        key_block[..seed.len()].copy_from_slice(seed);
        base.update_blocks(&[key_block]);
        Ok(Self { base, bounds })
    }

    /// How many variants there are.
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    /// Never: an assigner has at least one variant.
    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }

    /// The hash of `recipient` that picks its variant.
    pub fn hash(&self, recipient: u64) -> u64 {
        let mut state = self.base.clone();
        let mut last = Buffer::<Blake2bVarCore>::new(&recipient.to_le_bytes());
        let mut out = Output::<Blake2bVarCore>::default();
        state.finalize_variable_core(&mut last, &mut out);
        // The 8-byte digest is the first 8 bytes of the state (the length is in the parameters).
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&out[..8]);
        u64::from_le_bytes(bytes)
    }

    /// The index of recipient `recipient`'s variant.
    pub fn variant_of(&self, recipient: u64) -> usize {
        let hash = u128::from(self.hash(recipient));
        self.bounds.partition_point(|&bound| bound <= hash)
    }

    /// The variants of `count` consecutive recipients from `first`.
    pub fn variants_of(&self, first: u64, count: u64) -> Vec<usize> {
        (first..first.saturating_add(count))
            .map(|r| self.variant_of(r))
            .collect()
    }
}

/// The correctly rounded sum of `values`, as Python's `math.fsum` gives it (Shewchuk's exact
/// partials, then `CPython`'s rounding of the last half-way case); for finite values.
// Exact float comparisons are the algorithm: each one asks whether a rounding error is zero.
#[allow(clippy::float_cmp)]
fn fsum(values: &[f64]) -> f64 {
    let mut partials: Vec<f64> = Vec::new();
    for &value in values {
        let mut x = value;
        let mut kept = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        partials.truncate(kept);
        partials.push(x);
    }
    let Some(mut n) = partials.len().checked_sub(1) else {
        return 0.0;
    };
    let mut hi = partials[n];
    let mut lo = 0.0;
    while n > 0 {
        let x = hi;
        n -= 1;
        let y = partials[n];
        hi = x + y;
        lo = y - (hi - x);
        if lo != 0.0 {
            break;
        }
    }
    if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        if y == x - hi {
            hi = x;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_pythons_keyed_blake2b() {
        // hashlib.blake2b((r).to_bytes(8, "little"), key=bytes(range(16)), digest_size=8)
        // .digest().hex(), computed once in CPython.
        let key: Vec<u8> = (0..16).collect();
        let assigner = VariantAssigner::new(&key, &[1.0]).unwrap();
        let expected = [
            (0u64, "9dc6e1a99def21d3"),
            (1, "26c5f6c1b718ffa8"),
            (1_000_000, "590f8cc8299075a0"),
        ];
        for (recipient, hex) in expected {
            let bytes: Vec<u8> = (0..8)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let want = u64::from_le_bytes(bytes.try_into().unwrap());
            assert_eq!(assigner.hash(recipient), want, "recipient {recipient}");
        }
    }

    #[test]
    fn bounds_match_pythons() {
        // The bounds shortcore.variants computed in CPython for these weights (fsum, round).
        let cases: [(&[f64], &[u128]); 4] = [
            (
                &[0.1, 0.2, 0.7],
                &[1_844_674_407_370_955_264, 5_534_023_222_112_866_304],
            ),
            (
                &[1.0 / 3.0; 3],
                &[6_148_914_691_236_516_864, 12_297_829_382_473_033_728],
            ),
            (&[1e-6, 1e6], &[18_446_744]),
            (
                &[0.3, 1e-9, 0.7, 2.5e-7],
                &[
                    5_534_021_833_073_385_472,
                    5_534_021_851_520_125_952,
                    18_446_739_462_024_693_760,
                ],
            ),
        ];
        for (weights, bounds) in cases {
            let assigner = VariantAssigner::new(b"k", weights).unwrap();
            assert_eq!(&assigner.bounds[..bounds.len()], bounds, "{weights:?}");
            assert_eq!(assigner.bounds.last(), Some(&(1 << 64)));
        }
    }

    #[test]
    #[allow(clippy::float_cmp)] // exactness is the point
    fn fsum_is_exact() {
        assert_eq!(fsum(&[0.1; 10]), 1.0);
        assert_eq!(fsum(&[1e16, 1.0, -1e16]), 1.0);
        assert_eq!(fsum(&[]), 0.0);
    }

    #[test]
    fn shares_follow_the_weights() {
        let assigner = VariantAssigner::new(b"seed", &[1.0, 1.0, 2.0]).unwrap();
        let mut counts = [0usize; 3];
        for v in assigner.variants_of(0, 40_000) {
            counts[v] += 1;
        }
        assert!((9_000..11_000).contains(&counts[0]), "{counts:?}");
        assert!((19_000..21_000).contains(&counts[2]), "{counts:?}");
        assert_eq!(
            VariantAssigner::new(b"seed", &[5.0]).unwrap().variants_of(0, 100),
            vec![0; 100]
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(VariantAssigner::new(b"", &[1.0]).is_err());
        assert!(VariantAssigner::new(&[0; 65], &[1.0]).is_err());
        assert!(VariantAssigner::new(b"k", &[]).is_err());
        assert!(VariantAssigner::new(b"k", &[1.0, 0.0]).is_err());
        assert!(VariantAssigner::new(b"k", &[1.0, f64::NAN]).is_err());
    }
}
