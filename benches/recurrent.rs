//! The workloads W1–W6 (benches/common/workloads.rs) under criterion, then every
//! recurrent cell at the W1 shape as a table against the device's FMA ceiling.
//!
//! Run: `cargo bench --bench recurrent` (WGPU_BACKEND picks the backend).
//! Criterion's throughput ("elem/s") is tokens/s (flop/s for W3). The table
//! gives, for one layer at B = 32, T = 64, I = 128, H = 256 of each cell, ms per
//! step, tokens/s, GFLOP/s of the GEMM arithmetic and its share of the ceiling;
//! "train" is forward, full BPTT (parameter gradients; x is data) and an SGD
//! step, one submit. For all five workloads in one table: `cargo run --release
//! --example bench`.

#[path = "common/workloads.rs"]
mod workloads;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rnn_wgpu::nn::recurrent::Mode;
use rnn_wgpu::nn::Module;
use rnn_wgpu::ops::fma_probe;
use rnn_wgpu::train::{Method, OptimConfig, Optimizer};
use rnn_wgpu::Context;
use workloads::{B, H, I, T};

fn bench(c: &mut Criterion) {
    let ctx = Context::new()
        .expect("a GPU adapter (on Linux without a GPU: apt-get install mesa-vulkan-drivers)");
    println!("{}", ctx.adapter_info().name);
    let ceiling = fma_probe::measure(&ctx, 5).unwrap();
    println!("FMA ceiling: {ceiling:.1} GFLOP/s");

    let mut group = c.benchmark_group("workloads");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500));
    for mut w in workloads::all(&ctx).unwrap() {
        println!("{}: {}", w.name, w.what);
        (w.run)().unwrap(); // compile and warm up
        let per_step = if w.tokens == 0 {
            w.flops as u64
        } else {
            w.tokens as u64
        };
        group.throughput(Throughput::Elements(per_step));
        group.bench_function(w.name, |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    (w.run)().unwrap();
                }
                t.elapsed()
            })
        });
    }
    group.finish();

    println!(
        "\nB={B} T={T} I={I} H={H}, 1 layer\n{:<9} {:<8} {:>10} {:>10} {:>9} {:>9}",
        "cell", "pass", "ms / step", "tokens/s", "GFLOP/s", "% of FMA"
    );
    for mode in [Mode::Lstm, Mode::Gru, Mode::RnnTanh] {
        let layer = workloads::layer(&ctx, mode, B, T).unwrap();
        let sgd = OptimConfig::new(Method::Sgd { momentum: 0.0 }, 0.01);
        let mut opt = Optimizer::new(&ctx, sgd, layer.model.params()).unwrap();
        for (pass, train) in [("forward", false), ("train", true)] {
            let mut step = || {
                let t = Instant::now();
                layer.step(&ctx, train.then_some(&mut opt)).unwrap();
                t.elapsed().as_secs_f64()
            };
            step();
            let mut times: Vec<f64> = (0..5).map(|_| step()).collect();
            times.sort_by(f64::total_cmp);
            let secs = times[times.len() / 2];
            let gflops = workloads::layer_flops(mode, B, T, train) / secs / 1e9;
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
