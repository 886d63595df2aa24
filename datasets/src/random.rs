//! A small, portable, deterministic pseudo-random number generator.
//!
//! Every generator in this crate derives its randomness from [`SplitMix64`]
//! keyed by a seed and a position (event number, row index), so values are a
//! pure function of `(seed, position)` and any split of a range reproduces the
//! same rows. Only integer operations and correctly rounded IEEE-754 basic
//! operations are used, so results are identical on every platform.

/// The SplitMix64 increment (2^64 / golden ratio, odd).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Draws available in one [`SplitMix64::slot`] before slots overlap.
pub const SLOT_DRAWS: u64 = 64;

/// The SplitMix64 finaliser: a bijective 64-bit mix with good avalanche.
#[inline(always)]
pub(crate) const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Derives an independent stream key from a seed and a stream tag.
#[inline]
pub(crate) const fn stream_key(seed: u64, tag: u64) -> u64 {
    mix64(seed ^ mix64(tag.wrapping_add(GAMMA)))
}

/// The `index`-th output of the SplitMix64 sequence whose state starts at
/// `key`; random access, so row `i` needs no state from rows before it.
#[inline(always)]
pub(crate) const fn hash_at(key: u64, index: u64) -> u64 {
    mix64(key.wrapping_add(index.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014): one add and one 64-bit mix per output.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for position `index` of the stream `key`; used to give every
    /// event or row its own independent sequence.
    #[inline(always)]
    pub fn at(key: u64, index: u64) -> Self {
        Self {
            state: hash_at(key, index),
        }
    }

    /// The generator of slot `index` of the stream `key`, whose first
    /// [`SLOT_DRAWS`] outputs are the SplitMix64 outputs `index * SLOT_DRAWS + 1 ..`
    /// of `key`: the slots of consecutive indexes never overlap, and opening
    /// one costs no mixing (cheaper than [`SplitMix64::at`]). Callers needing
    /// more draws per slot must fork with [`SplitMix64::fork`].
    #[inline(always)]
    pub fn slot(key: u64, index: u64) -> Self {
        Self {
            state: key.wrapping_add(index.wrapping_mul(SLOT_DRAWS).wrapping_mul(GAMMA)),
        }
    }

    /// An independent generator seeded from this one's next output, for an
    /// unbounded number of draws (e.g. a long random string) inside a slot.
    #[inline(always)]
    pub fn fork(&mut self) -> Self {
        Self {
            state: mix64(self.next_u64()),
        }
    }

    /// The next 64 uniformly distributed bits.
    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// A value in `0..bound` (`0` when `bound` is 0), by multiply-shift
    /// (Lemire 2019); the bias is below `bound / 2^64`.
    #[inline(always)]
    pub fn next_below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A value in `[0, 1)` with 53 random bits.
    #[inline(always)]
    pub fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }
}

/// Maps 64 random bits to `[0, 1)` using the top 53 bits.
#[inline(always)]
pub(crate) fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Maps 64 random bits to `0..bound` (multiply-shift).
#[inline(always)]
pub(crate) fn below(bits: u64, bound: u64) -> u64 {
    ((u128::from(bits) * u128::from(bound)) >> 64) as u64
}

/// Entries of [`EXP2_TABLE`]: `2^(j / EXP2_STEPS)` for `j < EXP2_STEPS`.
const EXP2_STEPS: usize = 256;

/// `2^(j/256)`, built with [`exp2_poly`] at compile time.
const EXP2_TABLE: [f64; EXP2_STEPS] = {
    let mut table = [0.0; EXP2_STEPS];
    let mut j = 0;
    while j < EXP2_STEPS {
        table[j] = exp2_poly(j as f64 / EXP2_STEPS as f64);
        j += 1;
    }
    table
};

/// `2^x` for `x` in `[0, 1)` by a Taylor series of `e^(x ln 2)` (degree 20,
/// error far below one ulp); only used to build [`EXP2_TABLE`].
const fn exp2_poly(x: f64) -> f64 {
    let t = x * std::f64::consts::LN_2;
    let mut sum = 1.0;
    let mut term = 1.0;
    let mut k = 1;
    while k <= 20 {
        term = term * t / k as f64;
        sum += term;
        k += 1;
    }
    sum
}

/// `10^x` for `x` in `[0, 16)`, computed with basic IEEE operations only so
/// the result is bit-identical on every platform (unlike `f64::powf`).
///
/// A table of `2^(j/256)` times a cubic for `e^r`, `r < ln 2 / 256`: the
/// relative error is below 3e-12, plenty for prices, and the short
/// dependency chain matters because every bid draws a price.
#[inline(always)]
pub(crate) fn pow10(x: f64) -> f64 {
    let scaled = x * (std::f64::consts::LOG2_10 * EXP2_STEPS as f64);
    let whole = scaled as u64; // floor, as scaled >= 0
    let r = (scaled - whole as f64) * (std::f64::consts::LN_2 / EXP2_STEPS as f64);
    let exponent = whole / EXP2_STEPS as u64;
    let frac = EXP2_TABLE[whole as usize % EXP2_STEPS];
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0)));
    let pow2 = f64::from_bits((1023 + exponent) << 52);
    pow2 * frac * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_reproducible() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        // Reference value computed by hand from the published algorithm.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn at_matches_hash_at() {
        let key = stream_key(7, 3);
        let mut rng = SplitMix64::at(key, 11);
        assert_eq!(rng.next_u64(), mix64(hash_at(key, 11).wrapping_add(GAMMA)));
    }

    #[test]
    fn slots_are_consecutive_windows_of_one_stream() {
        let key = stream_key(1, 2);
        let mut stream = SplitMix64::new(key);
        for index in 0..3 {
            let mut slot = SplitMix64::slot(key, index);
            for _ in 0..SLOT_DRAWS {
                assert_eq!(slot.next_u64(), stream.next_u64());
            }
        }
    }

    #[test]
    fn next_below_stays_in_range() {
        let mut rng = SplitMix64::new(1);
        for bound in [1, 2, 3, 10, 1000, u64::MAX] {
            for _ in 0..1000 {
                assert!(rng.next_below(bound) < bound);
            }
        }
        assert_eq!(rng.next_below(0), 0);
    }

    #[test]
    fn next_f64_is_unit() {
        let mut rng = SplitMix64::new(9);
        let mut sum = 0.0;
        for _ in 0..10_000 {
            let v = rng.next_f64();
            assert!((0.0..1.0).contains(&v));
            sum += v;
        }
        assert!((sum / 10_000.0 - 0.5).abs() < 0.02);
    }

    #[test]
    fn pow10_is_accurate() {
        for i in 0..=600 {
            let x = f64::from(i) / 100.0;
            let expected = 10f64.powf(x);
            let got = pow10(x);
            assert!(
                ((got - expected) / expected).abs() < 3e-12,
                "10^{x}: {got} vs {expected}"
            );
        }
        assert_eq!(pow10(0.0), 1.0);
    }
}
