//! Optimizer updates on the GPU (`shaders/optim.wgsl`): the global gradient norm
//! (for clipping and for the non-finite guard), SGD with momentum, Adam and AdamW.
//! Every update reads the norm's verdict from `stats` on the GPU, so a step whose
//! gradients are not finite leaves the weights as they were without a readback.

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::Tensor;

const OP: &str = "optim";

/// Partial sums per tensor in the norm (the shader's PARTS).
pub const PARTS: usize = 64;

/// The uniform of every entry point; fields an entry does not read stay 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Elements updated.
    pub n: u32,
    /// Where this part starts among the norm partials.
    pub part0: u32,
    /// 1-based step number.
    pub step: u32,
    /// 1 where clipping by value is on.
    pub has_clip: u32,
    /// The learning rate of this step.
    pub lr: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// SGD's momentum.
    pub momentum: f32,
    /// Adam's β1.
    pub beta1: f32,
    /// Adam's β2.
    pub beta2: f32,
    /// Adam's ε.
    pub eps: f32,
    /// The global norm clip (0: off).
    pub max_norm: f32,
    /// 0 turns clipping by value off.
    pub clip_value: f32,
    /// Adam's bias corrections 1 − β1ᵗ and 1 − β2ᵗ, filled in by [`update`]
    /// (in f64: β2ᵗ is within an f32 rounding of 1 in the first steps).
    pub correction1: f32,
    /// 1 − β2ᵗ.
    pub correction2: f32,
    /// Padding to 16 bytes.
    pub _pad0: u32,
    /// Padding to 16 bytes.
    pub _pad1: u32,
}

/// Records the partial sums of squares of `grad` into `parts[part0..part0 + PARTS]`
/// (into the first few of them for a small tensor: the others are left as they
/// are, 0 in an optimizer's parts).
pub fn sumsq(rec: &mut Recorder, parts: &Tensor, part0: usize, grad: &Tensor) -> Result<()> {
    super::check_f32(rec, OP, &[("parts", parts), ("grad", grad)])?;
    if part0 + PARTS > parts.numel() {
        return Err(Error::ViewOutOfBounds {
            op: OP,
            what: "parts",
            last: part0 + PARTS,
            len: parts.numel(),
        });
    }
    let p = Params {
        n: grad.numel() as u32,
        part0: part0 as u32,
        ..Params::default()
    };
    // A workgroup per 16 elements per lane, up to PARTS: small tensors are not
    // spread over workgroups that each pay for a reduction to add a few numbers.
    let groups = grad.numel().div_ceil(64 * 16).clamp(1, PARTS) as u32;
    let pipeline = rec.context().pipeline(&shaders::OPTIM, "sumsq", &[]);
    rec.dispatch_tensors(
        "optim::sumsq",
        &pipeline,
        bytemuck::bytes_of(&p),
        &[(2, grad), (5, parts)],
        [groups, 1, 1],
    )
}

/// Records `stats = [‖g‖, clip scale, finite]` from all of `parts`; clipping to
/// `max_norm` when given.
pub fn norm(
    rec: &mut Recorder,
    stats: &Tensor,
    parts: &Tensor,
    max_norm: Option<f32>,
) -> Result<()> {
    super::check_f32(rec, OP, &[("stats", stats), ("parts", parts)])?;
    if stats.numel() != 3 {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "stats",
            expected: "[3]".into(),
            got: stats.shape().to_vec(),
        });
    }
    let p = Params {
        n: parts.numel() as u32,
        has_clip: u32::from(max_norm.is_some()),
        max_norm: max_norm.unwrap_or(0.0),
        ..Params::default()
    };
    let pipeline = rec.context().pipeline(&shaders::OPTIM, "norm", &[]);
    rec.dispatch_tensors(
        "optim::norm",
        &pipeline,
        bytemuck::bytes_of(&p),
        &[(5, parts), (6, stats)],
        [1, 1, 1],
    )
}

/// The update rule of [`update`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Rule {
    /// torch.optim.SGD; `state[0]` is the momentum buffer.
    Sgd,
    /// torch.optim.Adam (weight decay as L2); `state` = [m, v].
    Adam,
    /// torch.optim.AdamW (decoupled weight decay); `state` = [m, v].
    AdamW,
}

/// Records one update of `weight` from `grad` (scaled by `stats`' clip scale,
/// skipped when `stats` says the gradients are not finite). `state` holds the
/// rule's buffers, each shaped like `weight`; `p.n` is filled in here.
pub fn update(
    rec: &mut Recorder,
    rule: Rule,
    weight: &Tensor,
    grad: &Tensor,
    state: &[&Tensor],
    stats: &Tensor,
    mut p: Params,
) -> Result<()> {
    let needed = if rule == Rule::Sgd { 1 } else { 2 };
    if state.len() != needed {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "optimizer state",
            expected: format!("{needed} buffers"),
            got: vec![state.len()],
        });
    }
    let mut all = vec![("weight", weight), ("grad", grad), ("stats", stats)];
    all.extend(state.iter().map(|&t| ("state", t)));
    super::check_f32(rec, OP, &all)?;
    for &(what, t) in [&all[1..2], &all[3..]].concat().iter() {
        if t.shape() != weight.shape() {
            return Err(Error::ShapeMismatch {
                op: OP,
                what,
                expected: format!("{:?} like the weight", weight.shape()),
                got: t.shape().to_vec(),
            });
        }
    }
    let n = weight.numel();
    p.n = n as u32;
    let t = i32::try_from(p.step).unwrap_or(i32::MAX);
    p.correction1 = (1.0 - f64::from(p.beta1).powi(t)) as f32;
    p.correction2 = (1.0 - f64::from(p.beta2).powi(t)) as f32;
    let (entry, constants): (&str, &[(&str, f64)]) = match rule {
        Rule::Sgd => ("sgd", &[]),
        Rule::Adam => ("adam", &[]),
        Rule::AdamW => ("adam", &[("DECOUPLED", 1.0)]),
    };
    let (bindings, groups) = if rule == Rule::Sgd {
        let b = vec![(1, weight), (2, grad), (6, stats), (3, state[0])];
        (b, super::grid_elems(rec, n))
    } else {
        let b = vec![
            (7, weight),
            (8, grad),
            (6, stats),
            (9, state[0]),
            (10, state[1]),
        ];
        (b, super::grid_elems(rec, n.div_ceil(4)))
    };
    let pipeline = rec.context().pipeline(&shaders::OPTIM, entry, constants);
    rec.dispatch_tensors(
        &format!("optim::{entry}"),
        &pipeline,
        bytemuck::bytes_of(&p),
        &bindings,
        groups,
    )
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::OPTIM);
