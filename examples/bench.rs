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
use rnn_wgpu::{Context, ContextOptions, DType, Error, Result};

#[derive(Parser, Debug)]
#[command(about = "Time the benchmark workloads W1-W6 and print one table")]
struct Args {
    /// Timed steps per workload (the median is reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Workloads to run, comma separated (W1..W7, W4-f16, W4-crf, W6-fwd, W6-stream,
    /// W7-f16, W7-long).
    #[arg(
        long,
        default_value = "W1,W2,W3,W4,W4-f16,W4-crf,W5,W6,W6-fwd,W6-stream,W7,W7-f16,W7-long"
    )]
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
    /// Start-up instead: the time from a fresh process's start to the first
    /// and to the 100th step of W1 and W4, cold (the driver's and the
    /// library's caches empty: XDG_CACHE_HOME a new folder) and warm (the
    /// same folder again).
    #[arg(long)]
    startup: bool,
    /// The T-scaling table instead: a minGRU training step (W7's layer) at B =
    /// 8 and B = 1 for T from 64 to 4096, and the LSTM's (W1's layer) at B = 8
    /// up to T = 1024: ms per step, µs per token, dispatches per step.
    #[arg(long)]
    scaling: bool,
    /// One start-up run of this workload (what --startup runs in a child).
    #[arg(long, hide = true)]
    first_steps: Option<String>,
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

/// Steps of a start-up run.
const STARTUP_STEPS: usize = 100;

/// One start-up run in this process (started at `started`): opens the
/// context, builds `name`, runs its steps; prints the seconds to the first
/// and to the last, and the pipelines compiled.
fn first_steps(ctx_options: &ContextOptions, name: &str, started: Instant) -> Result<()> {
    let ctx = Context::with_options(ctx_options)?;
    let mut w = match name {
        "W1" => workloads::w1(&ctx)?,
        "W4" => workloads::w4(&ctx, rnn_wgpu::DType::F32)?,
        other => {
            return Err(Error::InvalidArgument {
                op: "bench",
                what: "--first-steps",
                expected: "W1 or W4",
                got: other.to_string(),
            })
        }
    };
    let mut first = 0.0;
    for step in 1..=STARTUP_STEPS {
        (w.run)()?;
        if step == 1 {
            first = started.elapsed().as_secs_f64();
        }
    }
    let last = started.elapsed().as_secs_f64();
    let compiled = ctx.compile_stats();
    println!(
        "startup {first:.3} {last:.3} {} {:.3}",
        compiled.pipelines,
        compiled.compile_ns as f64 / 1e9
    );
    Ok(())
}

/// Runs `--first-steps` of W1 and W4 in fresh processes, cold and warm, and
/// prints one table.
fn startup(args: &[String]) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| run::file_err(Path::new("bench"), e))?;
    println!(
        "start-up: seconds from a fresh process's start (context, model, data) to its first \
         and {STARTUP_STEPS}th step; cold: XDG_CACHE_HOME an empty folder (no driver or \
         pipeline cache), warm: the same folder again\n"
    );
    println!(
        "{:<6} {:>12} {:>12} {:>12} {:>12} {:>10} {:>12}",
        "", "cold 1st", "cold 100th", "warm 1st", "warm 100th", "pipelines", "creating (s)"
    );
    for name in ["W1", "W4"] {
        let cache =
            std::env::temp_dir().join(format!("rnn-wgpu-startup-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        std::fs::create_dir_all(&cache).map_err(|e| run::file_err(&cache, e))?;
        let mut cells = Vec::new();
        let mut compiled = String::new();
        for _ in ["cold", "warm"] {
            let out = std::process::Command::new(&exe)
                .args(args)
                .args(["--first-steps", name])
                .env("XDG_CACHE_HOME", &cache)
                .output()
                .map_err(|e| run::file_err(&exe, e))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().find_map(|l| l.strip_prefix("startup "));
            let fields: Vec<&str> = line.map(|l| l.split(' ').collect()).unwrap_or_default();
            if !out.status.success() || fields.len() != 4 {
                return Err(Error::InvalidArgument {
                    op: "bench",
                    what: "a start-up run",
                    expected: "a line `startup FIRST LAST PIPELINES SECONDS`",
                    got: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
            cells.push(format!("{:>12} {:>12}", fields[0], fields[1]));
            compiled = format!("{:>10} {:>12}", fields[2], fields[3]);
        }
        let _ = std::fs::remove_dir_all(&cache);
        println!("{name:<6} {} {compiled}", cells.join(" "));
    }
    Ok(())
}

/// The median seconds of `runs` timed calls of `step` after one untimed (it
/// compiles and warms up); the dispatches the timed calls recorded per call,
/// and the host µs per dispatch.
fn time_steps(
    ctx: &Context,
    runs: usize,
    mut step: impl FnMut() -> Result<()>,
) -> Result<(f64, f64, f64)> {
    step()?;
    let recorded = ctx.recording_stats();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        step()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let recorded = ctx.recording_stats().since(&recorded);
    let dispatches = recorded.dispatches as f64 / times.len() as f64;
    Ok((
        times[times.len() / 2],
        dispatches,
        recorded.us_per_dispatch(),
    ))
}

/// `--scaling`: time per step and per token against T.
fn scaling(ctx: &Context, runs: usize) -> Result<()> {
    println!(
        "{:<8} {:>3} {:>6} {:>10} {:>10} {:>10}",
        "cell", "B", "T", "ms/step", "µs/token", "disp/step"
    );
    let lengths = [64, 128, 256, 512, 1024, 2048, 4096];
    for (cell, b, longest) in [("minGRU", 8, 4096), ("minGRU", 1, 4096), ("LSTM", 8, 1024)] {
        for &t in lengths.iter().filter(|&&t| t <= longest) {
            let (secs, disp, _) = if cell == "LSTM" {
                let layer = workloads::layer(ctx, rnn_wgpu::nn::Mode::Lstm, b, t)?;
                let mut sgd = rnn_wgpu::train::Optimizer::new(
                    ctx,
                    rnn_wgpu::train::OptimConfig::new(
                        rnn_wgpu::train::Method::Sgd { momentum: 0.0 },
                        0.01,
                    ),
                    rnn_wgpu::nn::Module::params(&layer.model),
                )?;
                time_steps(ctx, runs, || layer.step(ctx, Some(&mut sgd)))?
            } else {
                let mut layer = workloads::MinLayer::new(ctx, b, t, DType::F32)?;
                time_steps(ctx, runs, || layer.step(ctx))?
            };
            println!(
                "{cell:<8} {b:>3} {t:>6} {:>10.2} {:>10.2} {disp:>10.0}",
                secs * 1e3,
                secs * 1e6 / (b * t) as f64
            );
        }
    }
    Ok(())
}

/// The kernel choices `--gemm` and `--steps` ask for.
fn options(args: &Args) -> ContextOptions {
    ContextOptions::default()
        .with_gemm_packed(match args.gemm {
            Kernels::Auto => None,
            Kernels::Packed => Some(true),
            Kernels::Buffers => Some(false),
        })
        .with_fused_steps(match args.steps {
            Steps::Auto | Steps::Persistent => None,
            Steps::Fused => Some(true),
            Steps::Unfused => Some(false),
        })
        .with_persistent_steps(match args.steps {
            Steps::Auto => None,
            Steps::Persistent => Some(true),
            Steps::Fused | Steps::Unfused => Some(false),
        })
}

fn main() -> Result<()> {
    let started = Instant::now();
    let args = Args::parse();
    let peers = args
        .peers
        .iter()
        .map(|p| read_peer(p))
        .collect::<Result<Vec<_>>>()?;
    let options = options(&args);
    if let Some(name) = &args.first_steps {
        return first_steps(&options, name, started);
    }
    if args.startup {
        // The children take the same kernel choices.
        let passed: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--startup")
            .collect();
        return startup(&passed);
    }
    let ctx = Context::with_options(&options)?;
    if args.scaling {
        return scaling(&ctx, args.runs);
    }
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
        let (secs, dispatches, us) = time_steps(&ctx, args.runs, &mut w.run)?;
        let host = (dispatches, us);
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
