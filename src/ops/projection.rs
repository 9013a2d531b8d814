//! The LSTM's output projection (`shaders/projection.wgsl`, torch.nn.LSTM's
//! `proj_size`): each step's H-wide cell output projected to the P-wide state
//! that the next step and the layer's output read, and its backward. Layouts and
//! the step convention are in the shader and in [`super::recurrence`].

use super::recurrence::Geometry;
use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::Tensor;

const OP: &str = "projection";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    b: u32,
    t: u32,
    h: u32,
    d: u32,
    step: u32,
    p: u32,
    _pad: [u32; 2],
}

/// Records forward step `step`: `hp`'s next slot = W_hr · `hf`'s next slot (the
/// cell's output), or past a sequence's length `hp`'s previous slot. `hf` `[D,
/// T + 1, B, H]`, `hp` `[D, T + 1, B, P]`, `w_hr` `[D, P, H]`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    rec: &mut Recorder,
    geo: Geometry,
    proj: usize,
    step: usize,
    lengths: &Tensor,
    hf: &Tensor,
    hp: &Tensor,
    w_hr: &Tensor,
) -> Result<()> {
    let (b, t, h, d) = (geo.batch, geo.steps, geo.hidden, geo.dirs);
    check(
        rec,
        geo,
        proj,
        step,
        lengths,
        &[
            ("hf", hf, d * (t + 1) * b * h),
            ("hp", hp, d * (t + 1) * b * proj),
            ("w_hr", w_hr, d * proj * h),
        ],
    )?;
    launch(
        rec,
        "forward",
        params(geo, proj, step),
        &[(1, lengths), (2, hf), (3, hp), (4, w_hr)],
        [proj.div_ceil(64) as u32, b as u32, d as u32],
    )
}

/// Records backward step `step` (run from T − 1 down to 0): from the running
/// gradient of the projected state `dh` `[D, B, P]` and the output's `dy` `[B,
/// T, D·P]`, the step's g = dh + dy (0 past a sequence's length) into `g` `[D, T,
/// B, P]` (for dW_hr = Σ gᵀ · hf), taken out of `dh` (which carries it past the
/// length), and the cell output's gradient `df` = g · W_hr `[D, B, H]`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    rec: &mut Recorder,
    geo: Geometry,
    proj: usize,
    step: usize,
    lengths: &Tensor,
    w_hr: &Tensor,
    dh: &Tensor,
    dy: &Tensor,
    df: &Tensor,
    g: &Tensor,
) -> Result<()> {
    let (b, t, h, d) = (geo.batch, geo.steps, geo.hidden, geo.dirs);
    check(
        rec,
        geo,
        proj,
        step,
        lengths,
        &[
            ("w_hr", w_hr, d * proj * h),
            ("dh", dh, d * b * proj),
            ("dy", dy, b * t * d * proj),
            ("df", df, d * b * h),
            ("g", g, d * t * b * proj),
        ],
    )?;
    let params = params(geo, proj, step);
    launch(
        rec,
        "backward_state",
        params,
        &[(1, lengths), (5, dh), (6, dy), (8, g)],
        [proj.div_ceil(64) as u32, b as u32, d as u32],
    )?;
    launch(
        rec,
        "backward",
        params,
        &[(4, w_hr), (7, df), (8, g)],
        [h.div_ceil(64) as u32, b as u32, d as u32],
    )
}

fn params(geo: Geometry, proj: usize, step: usize) -> Params {
    Params {
        b: geo.batch as u32,
        t: geo.steps as u32,
        h: geo.hidden as u32,
        d: geo.dirs as u32,
        step: step as u32,
        p: proj as u32,
        _pad: [0; 2],
    }
}

/// Checks the geometry, the step, the lengths and each tensor's element count.
fn check(
    rec: &Recorder,
    geo: Geometry,
    proj: usize,
    step: usize,
    lengths: &Tensor,
    tensors: &[(&'static str, &Tensor, usize)],
) -> Result<()> {
    if [geo.batch, geo.steps, geo.hidden, proj].contains(&0) || !(1..=2).contains(&geo.dirs) {
        return Err(Error::Empty {
            op: OP,
            what: "[batch, steps, hidden, proj, directions (1 or 2)]",
            shape: vec![geo.batch, geo.steps, geo.hidden, proj, geo.dirs],
        });
    }
    if step >= geo.steps {
        return Err(Error::LimitExceeded {
            op: OP,
            what: "step",
            value: step as u64,
            limit: geo.steps as u64 - 1,
        });
    }
    if lengths.dtype() != crate::DType::U32 || lengths.numel() != geo.batch {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "lengths (u32)",
            expected: format!("[{}] u32", geo.batch),
            got: lengths.shape().to_vec(),
        });
    }
    let list: Vec<(&'static str, &Tensor)> = tensors.iter().map(|&(w, t, _)| (w, t)).collect();
    super::check_f32(rec, OP, &list)?;
    for &(what, t, numel) in tensors {
        if t.numel() != numel {
            return Err(Error::ShapeMismatch {
                op: OP,
                what,
                expected: format!("{numel} elements for {geo:?} and P = {proj}"),
                got: t.shape().to_vec(),
            });
        }
    }
    Ok(())
}

fn launch(
    rec: &mut Recorder,
    entry: &'static str,
    params: Params,
    tensors: &[(u32, &Tensor)],
    groups: [u32; 3],
) -> Result<()> {
    rec.dispatch_entry(
        &shaders::PROJECTION,
        entry,
        &[],
        bytemuck::bytes_of(&params),
        tensors,
        groups,
    )
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::PROJECTION);
