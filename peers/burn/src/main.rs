//! The benchmark workloads W1–W5 of rnn-wgpu (benches/common/workloads.rs) with
//! Burn's wgpu backend, for the peer columns of rnn-wgpu's bench table.
//!
//! Burn is built with its default features (kernel fusion and autotuning) plus
//! `wgpu` and `autodiff`. Run (from this folder; the first build takes a quarter
//! of an hour on two cores, and the first run autotunes for a few minutes):
//!
//!     cargo run --release -- --out ../../runs/peers_burn.csv
//!     cd ../.. && cargo run --release --example bench -- --peers runs/peers_burn.csv
//!
//! Writes `name,ms` lines (median ms per step after a warm-up) under a `# label`
//! line, the format the bench example's `--peers` reads. Each step ends with a
//! device sync (W4 and W5 read their loss or output back, as ours do). The
//! shapes, inputs, losses and optimizers are those of rnn-wgpu's workloads;
//! parameters start from Burn's own initializers (speed does not depend on them).

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{BiLstmConfig, EmbeddingConfig, LinearConfig, LstmConfig, LstmState};
use burn::optim::{grad_clipping::GradientClippingConfig, AdamConfig, GradientsParams, SgdConfig};
use burn::prelude::{Device, DeviceKind, Int, Tensor, TensorData};

const B: usize = 32;
const T: usize = 64;
const I: usize = 128;
const H: usize = 256;

/// rnn-wgpu's deterministic inputs in [-0.5, 0.5).
fn fill(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect()
}

fn tensor<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(fill(n), shape), device)
}

/// Median ms of `runs` calls after one warm-up call.
fn timed(runs: usize, mut step: impl FnMut()) -> f64 {
    step();
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            step();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn sync(device: &Device) {
    device.sync().expect("the device ran the step");
}

/// W1: LSTM forward, loss Σ y·dy (so dy reaches y), full BPTT and an SGD step.
fn w1(device: &Device, runs: usize) -> f64 {
    let device = device.clone().autodiff();
    let mut lstm = LstmConfig::new(I, H, true).init(&device);
    let mut sgd = SgdConfig::new().init();
    let x = tensor([B, T, I], &device);
    let dy = tensor([B, T, H], &device);
    timed(runs, || {
        let (y, _) = lstm.forward(x.clone(), None);
        let grads = (y * dy.clone()).sum().backward();
        let grads = GradientsParams::from_grads(grads, &lstm);
        lstm = sgd.step(0.01, lstm.clone(), grads);
        sync(&device);
    })
}

/// W2: the W1 forward alone, without autodiff.
fn w2(device: &Device, runs: usize) -> f64 {
    let lstm = LstmConfig::new(I, H, true).init(device);
    let x = tensor([B, T, I], device);
    timed(runs, || {
        let _ = lstm.forward(x.clone(), None);
        sync(device);
    })
}

/// W3: GEMM 1024³.
fn w3(device: &Device, runs: usize) -> f64 {
    let n = 1024;
    let a = tensor([n, n], device);
    let b = tensor([n, n], device);
    timed(runs, || {
        let _ = a.clone().matmul(b.clone());
        sync(device);
    })
}

/// W4: the BiLSTM tagger's training step: embedding 5000 × 64, BiLSTM 64 per
/// direction, linear 128 → 9, mean cross-entropy, Adam 1e-3 with the gradient
/// norm clipped at 5; the loss read back.
fn w4(device: &Device, runs: usize) -> f64 {
    let device = device.clone().autodiff();
    let (vocab, tags, b, t) = (5000usize, 9usize, 32usize, 40usize);
    let mut model = (
        EmbeddingConfig::new(vocab, 64).init(&device),
        BiLstmConfig::new(64, 64, true).init(&device),
        LinearConfig::new(128, tags).init(&device),
    );
    let mut adam = AdamConfig::new()
        .with_grad_clipping(Some(GradientClippingConfig::Norm(5.0)))
        .init();
    let ids: Vec<i64> = (0..b * t)
        .map(|i| 1 + (i as i64 * 7919) % (vocab as i64 - 1))
        .collect();
    let targets: Vec<i64> = (0..b * t).map(|i| (i as i64 * 31) % tags as i64).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [b * t]), &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    timed(runs, || {
        let (emb, lstm, out) = &model;
        let (y, _) = lstm.forward(emb.forward(ids.clone()), None);
        let logits = out.forward(y).reshape([b * t, tags]);
        let loss = loss_fn.forward(logits, targets.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let _ = loss.into_scalar::<f32>();
        model = adam.step(1e-3, model.clone(), grads);
        sync(&device);
    })
}

/// W5: streaming inference, batch 1, one token per step with the state carried,
/// the output read back.
fn w5(device: &Device, runs: usize) -> f64 {
    let lstm = LstmConfig::new(I, H, true).init(device);
    let x = tensor([1, 1, I], device);
    let mut state: Option<LstmState<2>> = None;
    timed(runs * 20, || {
        let (y, s) = lstm.forward(x.clone(), state.take());
        let _ = y.into_data();
        state = Some(s);
    })
}

fn main() {
    let mut out = None;
    let mut runs = 7;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next(),
            "--runs" => runs = args.next().and_then(|r| r.parse().ok()).unwrap_or(runs),
            _ => {
                eprintln!("usage: rnn-wgpu-peer-burn --out FILE [--runs N]");
                std::process::exit(2);
            }
        }
    }
    let Some(out) = out else {
        eprintln!("usage: rnn-wgpu-peer-burn --out FILE [--runs N]");
        std::process::exit(2);
    };
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    let mut rows = Vec::new();
    for (name, run) in [
        ("W1", w1 as fn(&Device, usize) -> f64),
        ("W2", w2),
        ("W3", w3),
        ("W4", w4),
        ("W5", w5),
    ] {
        let ms = run(&device, runs);
        println!("{name} {ms:.3} ms");
        rows.push(format!("{name},{ms:.4}\n"));
    }
    // Burn's Auto API is the first of Vulkan, DX12, GL with an adapter: lavapipe's
    // Vulkan where only it is installed, the adapter rnn-wgpu's bench uses.
    let text = format!(
        "# Burn 0.22.1 wgpu backend (Auto API: Vulkan where it has an adapter)\n{}",
        rows.concat()
    );
    std::fs::write(&out, text).expect("the peers file is writable");
}
