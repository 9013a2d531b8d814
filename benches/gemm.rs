//! GEMM throughput against the device's own FMA ceiling.
//!
//! Run: `cargo bench --bench gemm` (WGPU_BACKEND picks the backend).
//! Prints the FMA ceiling measured by shaders/fma_probe.wgsl, criterion's timings
//! (throughput in "elem/s" is flop/s), then a table: ms per GEMM, GFLOP/s and the
//! percentage of the ceiling, for 256³, 512³, 1024³ and the 4H×H product of an
//! LSTM step at H = 256 (M = 32, N = 1024, K = 256) recorded 64 times per submit
//! as a sequence of T = 64 steps would be. The table has rows for the context's
//! default kernels and for the storage-buffer kernels alone (`gemm_packed: Some(false)`).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rnn_wgpu::ops::{fma_probe, gemm};
use rnn_wgpu::{Context, ContextOptions, Recorder, Tensor};

struct Case {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
    /// GEMMs recorded per submit.
    reps: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "256^3",
        m: 256,
        n: 256,
        k: 256,
        reps: 8,
    },
    Case {
        name: "512^3",
        m: 512,
        n: 512,
        k: 512,
        reps: 2,
    },
    Case {
        name: "1024^3",
        m: 1024,
        n: 1024,
        k: 1024,
        reps: 1,
    },
    Case {
        name: "lstm_step_m32_n1024_k256",
        m: 32,
        n: 1024,
        k: 256,
        reps: 64,
    },
];

struct Operands {
    a: Tensor,
    b: Tensor,
    c: Tensor,
}

fn operands(ctx: &Context, case: &Case) -> Operands {
    let fill = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
            .collect()
    };
    Operands {
        a: Tensor::from_slice(ctx, &[case.m, case.k], &fill(case.m * case.k)).unwrap(),
        b: Tensor::from_slice(ctx, &[case.k, case.n], &fill(case.k * case.n)).unwrap(),
        c: Tensor::zeros(ctx, &[case.m, case.n]).unwrap(),
    }
}

/// Wall time of one submit of `case.reps` GEMMs, waited for.
fn run_once(ctx: &Context, case: &Case, ops: &Operands) -> Duration {
    let mut rec = Recorder::new(ctx, case.name);
    for _ in 0..case.reps {
        gemm::forward(
            &mut rec,
            &ops.c,
            &ops.a,
            &ops.b,
            None,
            gemm::Gemm::default(),
        )
        .unwrap();
    }
    let t = Instant::now();
    rec.submit();
    ctx.wait().unwrap();
    t.elapsed()
}

fn flops(case: &Case) -> u64 {
    (2 * case.m * case.n * case.k * case.reps) as u64
}

fn bench(c: &mut Criterion) {
    let ctx = Context::new()
        .expect("a GPU adapter (on Linux without a GPU: apt-get install mesa-vulkan-drivers)");
    println!("{}", ctx.adapter_info().name);
    let ceiling = fma_probe::measure(&ctx, 5).unwrap();
    println!("FMA ceiling: {ceiling:.1} GFLOP/s");

    let mut group = c.benchmark_group("gemm");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500));
    for case in CASES {
        let ops = operands(&ctx, case);
        run_once(&ctx, case, &ops); // compile and warm up
        group.throughput(Throughput::Elements(flops(case)));
        group.bench_function(case.name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run_once(&ctx, case, &ops)).sum())
        });
    }
    group.finish();

    let buffers_only =
        Context::with_options(&ContextOptions::default().with_gemm_packed(Some(false))).unwrap();
    println!(
        "\n{:<26} {:<9} {:>12} {:>10} {:>12}",
        "GEMM", "kernels", "ms / GEMM", "GFLOP/s", "% of FMA"
    );
    for (kernels, ctx) in [("default", &ctx), ("buffers", &buffers_only)] {
        for case in CASES {
            let ops = operands(ctx, case);
            run_once(ctx, case, &ops);
            let mut times: Vec<f64> = (0..5)
                .map(|_| run_once(ctx, case, &ops).as_secs_f64())
                .collect();
            times.sort_by(f64::total_cmp);
            let secs = times[times.len() / 2];
            let gflops = flops(case) as f64 / secs / 1e9;
            println!(
                "{:<26} {:<9} {:>12.3} {:>10.1} {:>11.1}%",
                case.name,
                kernels,
                secs * 1e3 / case.reps as f64,
                gflops,
                100.0 * gflops / ceiling
            );
        }
    }
    println!(
        "FMA ceiling {ceiling:.1} GFLOP/s on {}",
        ctx.adapter_info().name
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
