//! The benchmark workloads W1–W6 as one table: ms per step, tokens/s, achieved
//! GFLOP/s of the GEMM arithmetic, its share of the device's FMA ceiling
//! (measured in the same run by shaders/fma_probe.wgsl), and each time as a
//! multiple of its arithmetic floor (its flops at that ceiling).
//!
//! Run: `cargo run --release --example bench` (`-- --help` for the options;
//! WGPU_BACKEND picks the backend). `--profile` adds the profiler's table of
//! one step of each workload. `--peers FILE` (repeatable) adds a peer's times
//! and the ratio to ours: FILE holds `name,ms` lines under a `# label` line, as
//! `python3 tools/peers_torch.py --out FILE` writes them for PyTorch on the CPU.
//! `--gemm packed|buffers` runs every GEMM through one kernel family instead of the
//! adapter's choice; `--steps fused|unfused|persistent` runs every recurrent step
//! fused (one dispatch), or not, or every step of a pass in one dispatch. The workloads are defined in benches/common/workloads.rs.

#[path = "common/run.rs"]
mod run;
#[path = "../benches/common/workloads.rs"]
mod workloads;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use rnn_wgpu::ops::fma_probe;
use rnn_wgpu::{Context, ContextOptions, Error, Result};

#[derive(Parser, Debug)]
#[command(about = "Time the benchmark workloads W1-W6 and print one table")]
struct Args {
    /// Timed steps per workload (the median is reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Workloads to run, comma separated (W1..W6, W4-f16, W6-fwd, W6-stream).
    #[arg(long, default_value = "W1,W2,W3,W4,W4-f16,W5,W6,W6-fwd,W6-stream")]
    only: String,
    /// Also print the profiler's table of one step of each workload.
    #[arg(long)]
    profile: bool,
    /// A peer's times per workload (`name,ms` lines under a `# label` line).
    #[arg(long)]
    peers: Vec<PathBuf>,
    /// GEMM kernels, to see what each family costs per workload.
    #[arg(long, value_enum, default_value_t = Kernels::Auto)]
    gemm: Kernels,
    /// Recurrent steps: fused (the recurrent product inside the cell's
    /// dispatch), unfused, persistent (a pass's steps in one dispatch), or the
    /// adapter's choice.
    #[arg(long, value_enum, default_value_t = Steps::Auto)]
    steps: Steps,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Steps {
    /// By adapter and batch (`ContextOptions::fused_steps: None`).
    Auto,
    /// One dispatch per step wherever the adapter can.
    Fused,
    /// A recurrent product and a cell per step.
    Unfused,
    /// Every step of a pass in one dispatch wherever steps can fuse.
    Persistent,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Kernels {
    /// The adapter's default (`ContextOptions::gemm_packed: None`).
    Auto,
    /// Every product through packed textures.
    Packed,
    /// Every product from the buffers.
    Buffers,
}

/// A peer's label and its ms per step by workload name.
struct Peer {
    label: String,
    ms: Vec<(String, f64)>,
}

fn read_peer(path: &Path) -> Result<Peer> {
    let text = std::fs::read_to_string(path).map_err(|e| run::file_err(path, e))?;
    let mut peer = Peer {
        label: path.display().to_string(),
        ms: Vec::new(),
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(label) = line.strip_prefix('#') {
            peer.label = label.trim().to_string();
        } else if !line.is_empty() {
            let (name, ms) = line
                .split_once(',')
                .and_then(|(n, ms)| Some((n.trim(), ms.trim().parse::<f64>().ok()?)))
                .ok_or_else(|| Error::Parse {
                    path: path.display().to_string(),
                    line: i + 1,
                    reason: "expected `name,ms`".into(),
                })?;
            peer.ms.push((name.to_uppercase(), ms));
        }
    }
    Ok(peer)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let peers = args
        .peers
        .iter()
        .map(|p| read_peer(p))
        .collect::<Result<Vec<_>>>()?;
    let ctx = Context::with_options(&ContextOptions {
        gemm_packed: match args.gemm {
            Kernels::Auto => None,
            Kernels::Packed => Some(true),
            Kernels::Buffers => Some(false),
        },
        fused_steps: match args.steps {
            Steps::Auto | Steps::Persistent => None,
            Steps::Fused => Some(true),
            Steps::Unfused => Some(false),
        },
        persistent_steps: match args.steps {
            Steps::Auto => None,
            Steps::Persistent => Some(true),
            Steps::Fused | Steps::Unfused => Some(false),
        },
        ..Default::default()
    })?;
    let info = ctx.adapter_info();
    println!("device: {} ({:?})", info.name, info.backend);
    let ceiling = fma_probe::measure(&ctx, 5)?;
    println!("FMA ceiling: {ceiling:.1} GFLOP/s\n");
    let wanted: Vec<String> = args
        .only
        .split(',')
        .map(|s| s.trim().to_uppercase())
        .collect();
    let mut rows = Vec::new();
    let mut profiles = Vec::new();
    for mut w in workloads::all(&ctx)? {
        if !wanted.iter().any(|n| n.eq_ignore_ascii_case(w.name)) {
            continue;
        }
        // The workload's own memory: the bytes in use above what was in use before
        // it (every workload's tensors are made up front), and the pool after it.
        let before = ctx.pool_stats().live_bytes;
        ctx.reset_pool_peak();
        (w.run)()?; // compile and warm up
        let mut times = Vec::with_capacity(args.runs);
        let recorded = ctx.recording_stats();
        for _ in 0..args.runs.max(1) {
            let t = Instant::now();
            (w.run)()?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let secs = times[times.len() / 2];
        let recorded = ctx.recording_stats().since(&recorded);
        let dispatches = recorded.dispatches as f64 / times.len() as f64;
        let host = (dispatches, recorded.us_per_dispatch());
        if args.profile {
            ctx.reset_profile();
            ctx.set_profiling(true);
            (w.run)()?;
            ctx.set_profiling(false);
            profiles.push((w.name, ctx.profile()));
        }
        let pool = ctx.pool_stats();
        let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
        let memory = (mib(pool.peak_live_bytes - before), mib(pool.bytes));
        println!("{}: {}", w.name, w.what);
        rows.push((w.name, secs, w.tokens, w.flops, memory, host));
    }
    println!(
        "\n{:<9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "",
        "ms/step",
        "tokens/s",
        "GFLOP/s",
        "% of FMA",
        "× floor",
        "step MiB",
        "pool MiB",
        "disp/step",
        "µs/disp"
    );
    for &(name, secs, tokens, flops, (step_mib, pool_mib), (disp, us)) in &rows {
        let gflops = flops / secs / 1e9;
        let floor = flops / (ceiling * 1e9);
        let tokens = if tokens == 0 {
            "-".to_string()
        } else {
            format!("{:.0}", tokens as f64 / secs)
        };
        println!(
            "{name:<9} {:>10.2} {tokens:>10} {gflops:>9.1} {:>8.1}% {:>9.1} {step_mib:>9.1} \
             {pool_mib:>9.1} {disp:>9.0} {us:>9.2}",
            secs * 1e3,
            100.0 * gflops / ceiling,
            secs / floor
        );
    }
    println!(
        "\nmedians of {} steps; FMA ceiling {ceiling:.1} GFLOP/s on {}; step MiB: the most \
         in use during the workload's steps above what was in use before them; pool MiB: \
         the buffer pool after them; disp/step: dispatches recorded per step; µs/disp: host \
         time from each recorder's start to its submit per dispatch",
        args.runs.max(1),
        info.name
    );
    for peer in &peers {
        println!(
            "\n{}: ms/step, and how many times ours is faster",
            peer.label
        );
        for &(name, secs, ..) in &rows {
            if let Some((_, ms)) = peer.ms.iter().find(|(n, _)| n == name) {
                println!("{name:<6} {ms:>10.2} {:>8.2}×", ms / (secs * 1e3));
            }
        }
    }
    for (name, profile) in profiles {
        println!("\n{name}:\n{profile}");
    }
    Ok(())
}
