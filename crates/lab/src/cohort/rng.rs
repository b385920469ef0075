//! Seeding and the few distributions the generator draws from.
//!
//! Every random choice comes from a `StdRng` seeded from `(cohort seed, case index, stream)`, so
//! each case — and each part of a case (demographics, anatomy, lesions, the noise of each series)
//! — can be regenerated on its own. No global or thread RNG is used anywhere.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Independent random streams of one case; adding a stream never changes the others.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Demographics = 1,
    Anatomy = 2,
    Lesions = 3,
    /// Noise of one series; the series number is added so each series has its own stream.
    Noise = 16,
}

/// SplitMix64 finaliser: spreads nearby integers (seed, index) into unrelated 64-bit values.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of one stream of one case.
pub(crate) fn case_seed(seed: u64, index: usize, stream: Stream, sub: u64) -> u64 {
    mix(mix(mix(seed) ^ index as u64) ^ ((stream as u64) << 8 | sub))
}

pub(crate) fn stream_rng(seed: u64, index: usize, stream: Stream, sub: u64) -> StdRng {
    StdRng::seed_from_u64(case_seed(seed, index, stream, sub))
}

/// Uniform in `[lo, hi)`.
pub(crate) fn uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// A standard normal draw (Box–Muller); used for the few per-case parameters, not per voxel.
pub(crate) fn normal(rng: &mut StdRng, mean: f64, sd: f64) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // in (0, 1], so ln is finite
    let u2: f64 = rng.random::<f64>();
    mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub(crate) fn chance(rng: &mut StdRng, p: f64) -> bool {
    rng.random::<f64>() < p
}

/// Fast approximately normal noise for every voxel: the sum of four 16-bit uniforms from one
/// 64-bit draw (Irwin–Hall, variance 4/12), rescaled to unit variance. Box–Muller per voxel would
/// cost most of the time budget; the tails are shorter than a Gaussian's, which MR noise never
/// shows at this scale anyway.
pub(crate) struct VoxelNoise {
    rng: StdRng,
}

impl VoxelNoise {
    pub(crate) fn new(rng: StdRng) -> Self {
        Self { rng }
    }

    /// Two independent unit-variance draws (the real and imaginary channel of one voxel).
    #[inline]
    pub(crate) fn pair(&mut self) -> (f32, f32) {
        let bits = self.rng.next_u64();
        let more = self.rng.next_u64();
        (irwin_hall4(bits), irwin_hall4(more))
    }
}

#[inline]
fn irwin_hall4(bits: u64) -> f32 {
    const SCALE: f32 = 1.0 / 65536.0;
    let a = (bits & 0xFFFF) as f32;
    let b = ((bits >> 16) & 0xFFFF) as f32;
    let c = ((bits >> 32) & 0xFFFF) as f32;
    let d = (bits >> 48) as f32;
    // Sum of 4 U(0,1) has mean 2 and variance 1/3; sqrt(3) rescales to unit variance.
    ((a + b + c + d) * SCALE - 2.0) * 1.732_050_8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voxel_noise_has_zero_mean_and_unit_variance() {
        let mut noise = VoxelNoise::new(StdRng::seed_from_u64(7));
        let n = 200_000;
        let (mut sum, mut sum2) = (0.0f64, 0.0f64);
        for _ in 0..n {
            let (a, b) = noise.pair();
            for v in [a as f64, b as f64] {
                sum += v;
                sum2 += v * v;
            }
        }
        let mean = sum / (2 * n) as f64;
        let var = sum2 / (2 * n) as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }

    #[test]
    fn streams_of_one_case_and_neighbouring_cases_differ() {
        let a = case_seed(1, 0, Stream::Anatomy, 0);
        let b = case_seed(1, 1, Stream::Anatomy, 0);
        let c = case_seed(1, 0, Stream::Lesions, 0);
        let d = case_seed(2, 0, Stream::Anatomy, 0);
        assert!(a != b && a != c && a != d && b != c);
    }
}
