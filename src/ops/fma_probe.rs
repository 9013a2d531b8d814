//! The device's f32 FMA ceiling, measured by shaders/fma_probe.wgsl, so that every
//! kernel's speed can be stated as a fraction of what the device can do.

use std::time::Instant;

use crate::error::Result;
use crate::gpu::{Context, Recorder};
use crate::shaders;
use crate::tensor::{DType, Tensor};

/// Mirror of `Params` in shaders/fma_probe.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    invocations: u32,
    iters: u32,
    _pad0: u32,
    _pad1: u32,
}

/// Flops of one trip of the probe loop per chain: 64 rounds × 4 lanes × (multiply + add).
const FLOPS_PER_TRIP_PER_CHAIN: f64 = 512.0;
/// Chain counts tried; the best is the ceiling.
const CHAINS: [u32; 3] = [2, 4, 8];
/// Enough invocations to fill any current GPU many times over.
const INVOCATIONS: u32 = 1 << 14;
/// A run shorter than this is dominated by submit and wait, not arithmetic.
const MIN_SECONDS: f64 = 0.05;

/// Measures sustained f32 FMA throughput in GFLOP/s: for each chain count, the
/// median of `runs` timed runs after a warm-up, each long enough that submit
/// overhead is noise; the best chain count wins.
pub fn measure(ctx: &Context, runs: usize) -> Result<f64> {
    CHAINS
        .into_iter()
        .map(|chains| measure_chains(ctx, chains, runs))
        .try_fold(0.0f64, |best, r| r.map(|g| best.max(g)))
}

fn measure_chains(ctx: &Context, chains: u32, runs: usize) -> Result<f64> {
    let out = Tensor::empty(ctx, &[INVOCATIONS as usize, 4], DType::F32)?;
    let constants = [("CHAINS", f64::from(chains))];
    let run = |iters: u32| -> Result<f64> {
        let mut rec = Recorder::new(ctx, "fma_probe");
        let pipeline = ctx.pipeline(&shaders::FMA_PROBE, "forward", &constants);
        let p = Params {
            invocations: INVOCATIONS,
            iters,
            _pad0: 0,
            _pad1: 0,
        };
        rec.dispatch(
            "fma_probe::forward",
            &pipeline,
            bytemuck::bytes_of(&p),
            &[(1, out.buffer().as_entire_binding())],
            [INVOCATIONS.div_ceil(64), 1, 1],
        )?;
        let t = Instant::now();
        rec.submit();
        ctx.wait()?;
        Ok(t.elapsed().as_secs_f64())
    };
    run(1)?; // compiles the pipeline, which must not count as a timed run
             // Grow the work until one run is long enough to time.
    let mut iters = 16u32;
    while run(iters)? < MIN_SECONDS && iters < (1 << 24) {
        iters *= 2;
    }
    let mut times = (0..runs.max(1))
        .map(|_| run(iters))
        .collect::<Result<Vec<_>>>()?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let flops = INVOCATIONS as f64 * iters as f64 * FLOPS_PER_TRIP_PER_CHAIN * f64::from(chains);
    Ok(flops / median / 1e9)
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::FMA_PROBE);
