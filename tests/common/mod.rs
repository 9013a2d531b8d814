//! Shared by the integration tests: one GPU context per test binary, a seeded RNG,
//! f64 reference math and comparisons that name the worst element.
#![allow(dead_code)] // each test binary uses its own subset

pub mod recurrent_ref;

use std::sync::OnceLock;

use rnn_wgpu::nn::State;
use rnn_wgpu::{Context, ContextOptions};

/// An LSTM's state when `c` is given, else a hidden state.
pub fn state_of<T>(h: T, c: Option<T>) -> State<T> {
    match c {
        Some(c) => State::Lstm { h, c },
        None => State::Hidden { h },
    }
}

/// A context of its own (for tests that count its allocations).
pub fn open(gemm_packed: Option<bool>) -> Context {
    open_with(&ContextOptions::default().with_gemm_packed(gemm_packed))
}

/// A context opened with `options`.
pub fn open_with(options: &ContextOptions) -> Context {
    Context::with_options(options).unwrap_or_else(|e| {
        panic!(
            "GPU tests need an adapter (CI={:?}): {e}",
            std::env::var("CI").ok()
        )
    })
}

/// The test binary's context. No adapter is a failure, not a skip: a missing
/// driver must not turn the suite green.
pub fn ctx() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| open(None))
}

/// Three contexts whose recurrent steps run unfused (a recurrent GEMM and a cell
/// each): one with the adapter's GEMM kernels, one that packs every GEMM into
/// textures and one that never does, so both kernel families are checked on
/// every adapter.
pub fn gemm_contexts() -> [&'static Context; 3] {
    static DEFAULT: OnceLock<Context> = OnceLock::new();
    static PACKED: OnceLock<Context> = OnceLock::new();
    static UNPACKED: OnceLock<Context> = OnceLock::new();
    let unfused = |gemm_packed| {
        open_with(
            &ContextOptions::default()
                .with_gemm_packed(gemm_packed)
                .with_fused_steps(Some(false))
                .with_persistent_steps(Some(false)),
        )
    };
    [
        DEFAULT.get_or_init(|| unfused(None)),
        PACKED.get_or_init(|| unfused(Some(true))),
        UNPACKED.get_or_init(|| unfused(Some(false))),
    ]
}

/// A context whose recurrent steps all run fused (one dispatch per step) where
/// the adapter can, the path small batches take, so that it is checked on every
/// adapter.
pub fn fused() -> &'static Context {
    static FUSED: OnceLock<Context> = OnceLock::new();
    FUSED.get_or_init(|| {
        open_with(
            &ContextOptions::default()
                .with_fused_steps(Some(true))
                .with_persistent_steps(Some(false)),
        )
    })
}

/// A context whose recurrent layers run persistently (all steps of a pass in
/// one dispatch) where the adapter can fuse steps.
pub fn persistent() -> &'static Context {
    static PERSISTENT: OnceLock<Context> = OnceLock::new();
    PERSISTENT
        .get_or_init(|| open_with(&ContextOptions::default().with_persistent_steps(Some(true))))
}

/// `shaders/hash.wgsl`'s hash, from which the library draws its masks.
pub fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// p·2³² rounded: the library's masks choose an element whose hash is below it.
pub fn hash_threshold(p: f32) -> u32 {
    (f64::from(p) * 4_294_967_296.0)
        .round()
        .min(u32::MAX as f64) as u32
}

/// The multipliers of the library's dropout of probability `p` with mask seed
/// `seed` over `n` elements: 0, or 1 / (1 − p) in f32 where the hash of
/// `shaders/dropout.wgsl` keeps the element (pcg(pcg(i) ^ seed) ≥ p·2³²).
pub fn dropout_multipliers(n: usize, p: f32, seed: u32) -> Vec<f64> {
    let threshold = hash_threshold(p);
    let scale = f64::from(1.0 / (1.0 - p));
    (0..n as u32)
        .map(|i| {
            if pcg(pcg(i) ^ seed) >= threshold {
                scale
            } else {
                0.0
            }
        })
        .collect()
}

/// The library's SplitMix64 stream: small, seeded, and the same on every platform.
pub struct Rng(rnn_wgpu::nn::SplitMix);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(rnn_wgpu::nn::SplitMix::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.uniform()).collect()
    }
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Asserts |got - want| <= atol + rtol·|want| everywhere; on failure names the
/// worst element with both values.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g as f64 - w).abs() - (atol + rtol * w.abs());
        if excess.is_nan() || excess > worst.1 || (worst.1 == 0.0 && excess > 0.0) {
            worst = (
                i,
                if excess.is_nan() {
                    f64::INFINITY
                } else {
                    excess
                },
            );
        }
    }
    let (i, excess) = worst;
    assert!(
        excess <= 0.0,
        "{what}: element {i} is {} but the reference says {} (tolerance {} + {}·|ref|)",
        got[i],
        want[i],
        atol,
        rtol
    );
}

/// Asserts two f64 vectors agree within `tol` relative to max(1, |a|).
pub fn assert_close_f64(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (i, err) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .enumerate()
        .fold((0, 0.0), |acc, (i, e)| if e > acc.1 { (i, e) } else { acc });
    assert!(
        err <= tol,
        "{what}: element {i} is {} but should be {} (rel err {err:e})",
        got[i],
        want[i]
    );
}

/// The central difference of `loss` along `dir` in the values of `param`, by
/// steps of `eps`; the values are put back afterwards.
pub fn fd_along(
    param: &rnn_wgpu::nn::Param,
    dir: &[f32],
    eps: f32,
    mut loss: impl FnMut() -> f64,
) -> f64 {
    let value = param.value.to_vec().unwrap();
    let mut shifted = |sign: f32| -> f64 {
        let v: Vec<f32> = value
            .iter()
            .zip(dir)
            .map(|(x, d)| x + sign * eps * d)
            .collect();
        param.value.write(&v).unwrap();
        loss()
    };
    let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps as f64);
    param.value.write(&value).unwrap();
    fd
}
