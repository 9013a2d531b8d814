//! Trains a linear model `Y = X·W + b` by minibatch SGD on the GPU, every step one
//! submit of three dispatches built from the GEMM kernels:
//!   R  = X·W + b − Y                 (GEMM with beta = −1 over a copy of Y)
//!   W ← W − (2η/B)·Xᵀ·R              (GEMM with beta = 1: the update is a GEMM too)
//!   b ← b − (2η/B)·Σ_rows R          (the bias-gradient kernel with beta = 1)
//! The data come from a random "teacher" model plus Gaussian-like noise, so the
//! learned W and b can be checked against the truth.
//!
//! Run: `cargo run --release --example regression [-- --steps 400 --lr 0.1 --seed 7]`
//! Expect: the mean squared error falling from about 7 to the noise floor
//! (about 0.0025 for noise of standard deviation 0.05), and the largest error in
//! the learned W and b below 0.01.

use std::time::Instant;

use rnn_wgpu::ops::gemm::{self, BiasView, View};
use rnn_wgpu::{Context, DType, Recorder, Tensor};

const INPUTS: usize = 64;
const OUTPUTS: usize = 16;
const BATCH: usize = 256;
const BATCHES: usize = 16;
const NOISE: f32 = 0.05;

struct Args {
    steps: usize,
    lr: f32,
    seed: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        steps: 400,
        lr: 0.1,
        seed: 7,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--steps" => a.steps = value.parse().map_err(|e| bad(&e))?,
            "--lr" => a.lr = value.parse().map_err(|e| bad(&e))?,
            "--seed" => a.seed = value.parse().map_err(|e| bad(&e))?,
            _ => {
                return Err(format!(
                    "unknown flag {flag} (expected --steps, --lr, --seed)"
                ))
            }
        }
    }
    Ok(a)
}

/// SplitMix64 for reproducible data.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// Sum of 4 uniforms, scaled to standard deviation `sd` (near-Gaussian).
    fn noise(&mut self, sd: f32) -> f32 {
        (0..4).map(|_| self.uniform()).sum::<f32>() * sd * (3.0f32 / 4.0).sqrt()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let ctx = Context::new()?;
    println!("{}", ctx.adapter_info().name);
    let mut rng = Rng(args.seed);

    let w_true: Vec<f32> = (0..INPUTS * OUTPUTS).map(|_| rng.uniform()).collect();
    let b_true: Vec<f32> = (0..OUTPUTS).map(|_| rng.uniform()).collect();
    let mut batches = Vec::new();
    for _ in 0..BATCHES {
        let x: Vec<f32> = (0..BATCH * INPUTS).map(|_| rng.uniform()).collect();
        let mut y = vec![0.0f32; BATCH * OUTPUTS];
        for r in 0..BATCH {
            for o in 0..OUTPUTS {
                let dot: f32 = (0..INPUTS)
                    .map(|i| x[r * INPUTS + i] * w_true[i * OUTPUTS + o])
                    .sum();
                y[r * OUTPUTS + o] = dot + b_true[o] + rng.noise(NOISE);
            }
        }
        batches.push((
            Tensor::from_slice(&ctx, &[BATCH, INPUTS], &x)?,
            Tensor::from_slice(&ctx, &[BATCH, OUTPUTS], &y)?,
        ));
    }

    let w = Tensor::zeros(&ctx, &[INPUTS, OUTPUTS])?; // [I, O]
    let b = Tensor::zeros(&ctx, &[OUTPUTS])?; // [O]
    let residual = Tensor::empty(&ctx, &[BATCH, OUTPUTS], DType::F32)?; // [B, O]
    let step_size = -2.0 * args.lr / BATCH as f32;

    let start = Instant::now();
    for step in 0..=args.steps {
        let (x, y) = &batches[step % BATCHES];
        let mut rec = Recorder::new(&ctx, "sgd step");
        rec.copy(&residual, y)?;
        let xv = View::matrix(x, BATCH, INPUTS, false);
        let rv = View::matrix(&residual, BATCH, OUTPUTS, false);
        let wv = View::matrix(&w, INPUTS, OUTPUTS, false);
        gemm::forward_view(&mut rec, rv, xv, wv, Some(BiasView::from(&b)), 1, 1.0, -1.0)?;
        gemm::forward_view(&mut rec, wv, xv.t(), rv, None, 1, step_size, 1.0)?;
        gemm::bias_grad(&mut rec, (&b).into(), rv, 1, step_size, 1.0)?;
        rec.submit();
        if step % 50 == 0 || step == args.steps {
            // The residual was computed before this step's update: its mean square
            // is the loss of the weights the step started from.
            let r = residual.to_vec()?;
            let mse = r.iter().map(|v| v * v).sum::<f32>() / r.len() as f32;
            println!("step {step:>5}  mse {mse:.5}");
        }
    }
    let elapsed = start.elapsed().as_secs_f64();

    let err = |got: Vec<f32>, want: &[f32]| {
        got.iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f32, f32::max)
    };
    println!(
        "{} steps in {elapsed:.2} s ({:.2} ms/step); largest error: W {:.4}, b {:.4}",
        args.steps,
        1e3 * elapsed / args.steps.max(1) as f64,
        err(w.to_vec()?, &w_true),
        err(b.to_vec()?, &b_true)
    );
    Ok(())
}
