//! Recurrent layer step times against the device's own FMA ceiling.
//!
//! Run: `cargo bench --bench recurrent` (WGPU_BACKEND picks the backend).
//! The workload is one layer at B = 32, T = 64, I = 128, H = 256. "train" is a
//! training step's forward and full BPTT backward (parameter gradients included),
//! one submit; "forward" is inference alone. Prints criterion's timings for the
//! LSTM (throughput in "elem/s" is tokens/s), then a table for every cell: ms per
//! step, tokens/s, GFLOP/s of the GEMM arithmetic and its share of the ceiling.
//! Last, a full training step of the BiLSTM tagger (embedding, BiLSTM, linear,
//! cross-entropy, backward, Adam) at vocab 5000, embeddings 64, 64 units per
//! direction, 9 tags, B = 32, T = 40.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rnn_wgpu::data::Batch;
use rnn_wgpu::nn::recurrent::{Config, Mode, Recurrent};
use rnn_wgpu::nn::{BiLstmTagger, Module};
use rnn_wgpu::ops::fma_probe;
use rnn_wgpu::train::{Method, OptimConfig, Optimizer};
use rnn_wgpu::{Context, Recorder, Tensor};

const B: usize = 32;
const T: usize = 64;
const I: usize = 128;
const H: usize = 256;

struct Workload {
    model: Recurrent,
    x: Tensor,
    dy: Tensor,
}

fn workload(ctx: &Context, mode: Mode) -> Workload {
    let cfg = Config {
        mode,
        input_size: I,
        hidden_size: H,
        num_layers: 1,
        bidirectional: false,
    };
    let fill = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
            .collect()
    };
    Workload {
        model: Recurrent::new(ctx, cfg, 1).unwrap(),
        x: Tensor::from_slice(ctx, &[B, T, I], &fill(B * T * I)).unwrap(),
        dy: Tensor::from_slice(ctx, &[B, T, H], &fill(B * T * H)).unwrap(),
    }
}

/// Wall time of one step (recording, submit and wait).
fn step(ctx: &Context, w: &Workload, train: bool) -> Duration {
    let t = Instant::now();
    let mut rec = Recorder::new(ctx, "step");
    let (_, saved) = w
        .model
        .forward(&mut rec, &w.x, &[T; B], None, None)
        .unwrap();
    if train {
        w.model
            .backward(&mut rec, &saved, &w.dy, None, None)
            .unwrap();
    }
    rec.submit();
    ctx.wait().unwrap();
    t.elapsed()
}

/// GEMM flops: forward 2·B·T·G·(I + H); backward twice that (dh and dW_hh over
/// H, dW_ih and dx over I).
fn flops(mode: Mode, train: bool) -> f64 {
    let forward = 2.0 * (B * T * mode.gates() * H * (I + H)) as f64;
    if train {
        3.0 * forward
    } else {
        forward
    }
}

fn bench(c: &mut Criterion) {
    let ctx = Context::new()
        .expect("a GPU adapter (on Linux without a GPU: apt-get install mesa-vulkan-drivers)");
    println!("{}", ctx.adapter_info().name);
    let ceiling = fma_probe::measure(&ctx, 5).unwrap();
    println!("FMA ceiling: {ceiling:.1} GFLOP/s");

    let lstm = workload(&ctx, Mode::Lstm);
    let mut group = c.benchmark_group("recurrent");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .throughput(Throughput::Elements((B * T) as u64));
    for (name, train) in [("lstm_forward", false), ("lstm_train", true)] {
        step(&ctx, &lstm, train); // compile and warm up
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| step(&ctx, &lstm, train)).sum())
        });
    }
    group.finish();

    println!(
        "\nB={B} T={T} I={I} H={H}, 1 layer\n{:<9} {:<8} {:>10} {:>10} {:>9} {:>9}",
        "cell", "pass", "ms / step", "tokens/s", "GFLOP/s", "% of FMA"
    );
    for mode in [Mode::Lstm, Mode::Gru, Mode::RnnTanh] {
        let w = workload(&ctx, mode);
        for (pass, train) in [("forward", false), ("train", true)] {
            step(&ctx, &w, train);
            let mut times: Vec<f64> = (0..5)
                .map(|_| step(&ctx, &w, train).as_secs_f64())
                .collect();
            times.sort_by(f64::total_cmp);
            let secs = times[times.len() / 2];
            let gflops = flops(mode, train) / secs / 1e9;
            println!(
                "{:<9} {:<8} {:>10.1} {:>10.0} {:>9.1} {:>8.1}%",
                mode.name(),
                pass,
                secs * 1e3,
                (B * T) as f64 / secs,
                gflops,
                100.0 * gflops / ceiling
            );
        }
    }

    let (vocab, tags, b, t) = (5000u32, 9u32, 32, 40);
    let tagger = BiLstmTagger::new(&ctx, vocab as usize, 64, 64, tags as usize, 0, 1).unwrap();
    let mut opt =
        Optimizer::new(&ctx, OptimConfig::new(Method::ADAM, 1e-3), tagger.params()).unwrap();
    let batch = Batch {
        ids: (0..b * t)
            .map(|i| 1 + (i as u32 * 7919) % (vocab - 1))
            .collect(),
        targets: (0..b * t).map(|i| (i as u32 * 31) % tags).collect(),
        lengths: vec![t; b],
        size: b,
        steps: t,
    };
    tagger.train_step(&ctx, &batch, &mut opt).unwrap();
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            tagger.train_step(&ctx, &batch, &mut opt).unwrap();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let secs = times[times.len() / 2];
    println!(
        "\nBiLSTM tagger training step (vocab 5000, emb 64, 64 per direction, 9 tags, B={b}, T={t}): {:.1} ms, {:.0} tokens/s",
        secs * 1e3,
        (b * t) as f64 / secs
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
