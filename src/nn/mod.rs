//! Layers built from the ops: they own their parameters and gradients and record
//! their forward and backward into a [`Recorder`](crate::Recorder).

pub mod recurrent;

pub use recurrent::{Config, Mode, Recurrent};

/// Seeded SplitMix64 stream for parameter initialization, so that a seed gives
/// the same model on every platform.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `n` values uniform in `[-bound, bound)`.
    pub(crate) fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
                (2.0 * unit - 1.0) * bound
            })
            .collect()
    }
}
