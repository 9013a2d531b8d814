//! LayerNorm-LSTM steps (`shaders/layer_norm_lstm.wgsl`, haste's formulation):
//! the gate pre-activations' input and recurrent parts each layer-normalized with
//! a scale, and the cell state normalized with a scale and shift before its tanh.
//! The products x·W_ihᵀ and h'·W_hhᵀ are the caller's GEMMs; a step here is one
//! dispatch forward and one backward, a workgroup per sequence and direction (the
//! normalizations reduce across a row). The layouts are in the shader's header;
//! [`Geometry`] is the recurrence's (G = 4H). Zoneout on h and c is the
//! recurrent cells' ([`Zoneout`], the same choices from the same seed).

use super::recurrence::{Geometry, Zoneout};
use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::Tensor;

const OP: &str = "layer_norm_lstm";
/// How far above its scalar binding a buffer's vec4 view is bound (the step
/// kernels' vec4 twins).
const VEC4_BINDINGS: u32 = 20;

/// The normalizations' eps (haste's).
pub const EPS: f32 = 1e-5;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    b: u32,
    t: u32,
    h: u32,
    d: u32,
    step: u32,
    eps: f32,
    seed: u32,
    h_threshold: u32,
    c_threshold: u32,
    h_zone: f32,
    c_zone: f32,
    _pad: u32,
}

/// Element counts of the shader's layouts.
struct Numel {
    xw: usize,
    gh: usize,
    lnp: usize,
    states: usize,
    saved: usize,
    y: usize,
    running: usize,
    grads: usize,
    dlnp: usize,
}

fn numel(geo: Geometry) -> Numel {
    let (b, t, h, d) = (geo.batch, geo.steps, geo.hidden, geo.dirs);
    let g = 4 * h;
    Numel {
        xw: d * b * t * g,
        gh: d * b * g,
        lnp: d * (4 * g + 2 * h),
        states: d * (t + 1) * b * h,
        saved: d * t * b * (2 * g + 8),
        y: b * t * d * h,
        running: d * b * h,
        grads: d * t * b * (2 * g + h),
        dlnp: d * (3 * g + 2 * h),
    }
}

/// Per direction, the parameters a step reads, `[D, 4G + 2H]`: γ_ih, γ_hh,
/// b_ih, b_hh (G each), γ_c, β_c (H each).
pub fn lnp_width(hidden: usize) -> usize {
    18 * hidden
}

/// Per direction, the parameter gradients [`param_grads`] writes, `[D, 3G +
/// 2H]`: γ_ih, γ_hh, the biases (G each), γ_c, β_c (H each).
pub fn dlnp_width(hidden: usize) -> usize {
    14 * hidden
}

/// Per row (sequence, step, direction), the values the forward saves.
pub fn saved_width(hidden: usize) -> usize {
    8 * hidden + 8
}

/// Per row, the gradients [`backward`] writes; the first G are those of the
/// row's h'·W_hhᵀ.
pub fn grads_width(hidden: usize) -> usize {
    9 * hidden
}

/// The tensors of a forward step.
#[derive(Clone, Copy, Debug)]
pub struct ForwardIo<'a> {
    /// `[B]` sequence lengths.
    pub lengths: &'a Tensor,
    /// Input products x·W_ihᵀ, `[B, T, D·G]`.
    pub xw: &'a Tensor,
    /// The step's recurrent products h·W_hhᵀ.
    pub gh: &'a Tensor,
    /// Parameters, `[D, 18H]` ([`lnp_width`]).
    pub lnp: &'a Tensor,
    /// Hidden states of every step.
    pub hs: &'a Tensor,
    /// Cell states of every step.
    pub cs: &'a Tensor,
    /// What the backward needs per row ([`saved_width`]).
    pub saved: &'a Tensor,
    /// The layer's zoneout, if any.
    pub zoneout: Option<Zoneout>,
}

/// The tensors of a backward step: `dy` `[B, T, D·H]`, `dh` and `dc` `[D, B,
/// H]` the running gradients, `grads` written.
#[derive(Clone, Copy, Debug)]
pub struct BackwardIo<'a> {
    /// `[B]` sequence lengths.
    pub lengths: &'a Tensor,
    /// Parameters, `[D, 18H]`.
    pub lnp: &'a Tensor,
    /// Cell states of every step.
    pub cs: &'a Tensor,
    /// The forward's saved rows.
    pub saved: &'a Tensor,
    /// Gradient of the outputs.
    pub dy: &'a Tensor,
    /// Running gradient of h.
    pub dh: &'a Tensor,
    /// Running gradient of c.
    pub dc: &'a Tensor,
    /// Gradients written per row ([`grads_width`]).
    pub grads: &'a Tensor,
    /// The forward's zoneout (the same seed draws the same choices).
    pub zoneout: Option<Zoneout>,
}

/// Records forward step `step` (after the caller's `gh` of that step): the
/// states at t = step (direction 0) and T − 1 − step (direction 1) and what
/// backward needs. With `next_packed` (a [`crate::ops::gemm::pack_a_target`]
/// texture of the new states, `[D]` layers of `[B, H]`) it also writes them there
/// for the next step's recurrent GEMM, in place of a pack dispatch.
pub fn forward(
    rec: &mut Recorder,
    geo: Geometry,
    step: usize,
    eps: f32,
    io: &ForwardIo,
    next_packed: Option<&wgpu::TextureView>,
) -> Result<()> {
    let n = numel(geo);
    let bindings = [
        (2, "xw", io.xw, n.xw),
        (3, "gh", io.gh, n.gh),
        (4, "lnp", io.lnp, n.lnp),
        (5, "hs", io.hs, n.states),
        (6, "cs", io.cs, n.states),
        (7, "saved", io.saved, n.saved),
    ];
    let groups = [1, geo.batch as u32, geo.dirs as u32];
    let entry = match next_packed {
        Some(_) => "forward_packing",
        None => "forward",
    };
    let at = (step, eps, Some(io.lengths), io.zoneout);
    launch(rec, entry, geo, at, &bindings, groups, next_packed)
}

/// Records backward step `step` (run from T − 1 down to 0): the row's gradients
/// into `grads`, `dc` carried to the step before, `dh` left 0 for the caller to
/// add the product of the gradient of h'·W_hhᵀ (the first G of each row of
/// `grads`) with W_hh.
pub fn backward(rec: &mut Recorder, geo: Geometry, step: usize, io: &BackwardIo) -> Result<()> {
    let n = numel(geo);
    let bindings = [
        (4, "lnp", io.lnp, n.lnp),
        (6, "cs", io.cs, n.states),
        (7, "saved", io.saved, n.saved),
        (8, "dy", io.dy, n.y),
        (9, "dh", io.dh, n.running),
        (10, "dc", io.dc, n.running),
        (11, "grads", io.grads, n.grads),
    ];
    let groups = [1, geo.batch as u32, geo.dirs as u32];
    let at = (step, 0.0, Some(io.lengths), io.zoneout);
    launch(rec, "backward", geo, at, &bindings, groups, None)
}

/// Records `dgi` `[D, B, T, G]`, the gradient of x·W_ihᵀ, from a finished
/// backward's `grads`.
pub fn input_backward(
    rec: &mut Recorder,
    geo: Geometry,
    io: &BackwardIo,
    xw: &Tensor,
    dgi: &Tensor,
) -> Result<()> {
    let n = numel(geo);
    let bindings = [
        (2, "xw", xw, n.xw),
        (4, "lnp", io.lnp, n.lnp),
        (7, "saved", io.saved, n.saved),
        (11, "grads", io.grads, n.grads),
        (12, "dgi", dgi, n.xw),
    ];
    let groups = super::grid_rows(rec, 1, geo.dirs * geo.batch * geo.steps);
    launch(
        rec,
        "input_backward",
        geo,
        (0, 0.0, None, None),
        &bindings,
        groups,
        None,
    )
}

/// Records `dlnp` `[D, 3G + 2H]` (overwritten): the gradients of γ_ih, γ_hh,
/// the biases, γ_c and β_c summed over every row of a finished backward.
pub fn param_grads(
    rec: &mut Recorder,
    geo: Geometry,
    io: &BackwardIo,
    xw: &Tensor,
    dlnp: &Tensor,
) -> Result<()> {
    let n = numel(geo);
    let bindings = [
        (2, "xw", xw, n.xw),
        (6, "cs", io.cs, n.states),
        (7, "saved", io.saved, n.saved),
        (11, "grads", io.grads, n.grads),
        (13, "dlnp", dlnp, n.dlnp),
    ];
    let cols = dlnp_width(geo.hidden);
    let groups = [cols.div_ceil(64) as u32, 1, geo.dirs as u32];
    launch(
        rec,
        "param_grads",
        geo,
        (0, 0.0, None, io.zoneout),
        &bindings,
        groups,
        None,
    )
}

/// Records `entry` at (step, eps, lengths, zoneout) with `bindings` and, for
/// forward_packing, the texture at binding 15.
fn launch(
    rec: &mut Recorder,
    entry: &'static str,
    geo: Geometry,
    (step, eps, lengths, zoneout): (usize, f32, Option<&Tensor>, Option<Zoneout>),
    bindings: &[(u32, &'static str, &Tensor, usize)],
    groups: [u32; 3],
    next_packed: Option<&wgpu::TextureView>,
) -> Result<()> {
    geo.check_step(OP, step)?;
    let named: Vec<_> = bindings.iter().map(|&(_, what, t, _)| (what, t)).collect();
    super::check_f32(rec, OP, &named)?;
    for &(_, what, t, want) in bindings {
        if t.numel() != want {
            return Err(Error::ShapeMismatch {
                op: OP,
                what,
                expected: format!("{want} elements for {geo:?}"),
                got: t.shape().to_vec(),
            });
        }
    }
    let mut tensors: Vec<(u32, &Tensor)> = bindings.iter().map(|&(i, _, t, _)| (i, t)).collect();
    if let Some(lengths) = lengths {
        geo.check_lengths(OP, lengths)?;
        tensors.push((1, lengths));
    }
    rec.check_same_device(OP, &tensors.iter().map(|&(_, t)| t).collect::<Vec<_>>())?;
    let u = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
    let (seed, h_threshold, c_threshold, h_zone, c_zone) = Zoneout::fields(zoneout);
    let params = Params {
        b: u(geo.batch),
        t: u(geo.steps),
        h: u(geo.hidden),
        d: u(geo.dirs),
        step: u(step),
        eps,
        seed,
        h_threshold,
        c_threshold,
        h_zone,
        c_zone,
        _pad: 0,
    };
    // A step's kernels read and write 4 units per lane through vec4 views where
    // H allows: on CPU adapters a storage access costs per access whatever its
    // width.
    let twin = match entry {
        "forward" => Some("forward4"),
        "forward_packing" => Some("forward_packing4"),
        "backward" => Some("backward4"),
        _ => None,
    };
    let (entry, shift) = match twin.filter(|_| geo.hidden.is_multiple_of(4)) {
        Some(twin) => (twin, VEC4_BINDINGS),
        None => (entry, 0),
    };
    let constants = super::recurrence::zoneout_constants(zoneout);
    let pipeline = rec
        .context()
        .pipeline(&shaders::LAYER_NORM_LSTM, entry, &constants);
    rec.hold(&tensors.iter().map(|&(_, t)| t).collect::<Vec<_>>());
    let mut resources: Vec<_> = tensors
        .iter()
        .map(|&(i, t)| {
            // The lengths (binding 1) have no vec4 view.
            let at = if i == 1 { i } else { i + shift };
            (at, t.buffer().as_entire_binding())
        })
        .collect();
    if let Some(texture) = next_packed {
        resources.push((15, wgpu::BindingResource::TextureView(texture)));
    }
    rec.dispatch(
        &format!("{OP}::{entry}"),
        &pipeline,
        bytemuck::bytes_of(&params),
        &resources,
        groups,
    )
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::LAYER_NORM_LSTM);
