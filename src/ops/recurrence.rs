//! What the recurrent cells share (`shaders/recurrence.wgsl`): the step geometry,
//! the tensor layouts and the launcher. Each cell module (`lstm_cell`, `gru_cell`,
//! `rnn_cell`) describes its cell and calls [`forward`] and [`backward`] here.
//!
//! Layouts, with D directions, B sequences, T steps, H units and G = gates·H:
//! - `xw` `[D, B, T, G]` input projections x·W_ihᵀ without bias, batch-first like x
//! - `gh` `[D, B, G]` recurrent projections h·W_hhᵀ of this step, without bias
//! - `b_ih`, `b_hh` `[D, G]`
//! - `hs`, `cs` `[D, T + 1, B, H]` states by slot: direction 0 reads slot t and
//!   writes t + 1; direction 1 (reverse) reads t + 1 and writes t
//! - `y`, `dy` `[B, T, D·H]`; `acts` `[D, T, B, 4H]` (saved activations)
//! - `dgi` `[D, B, T, G]`, `dgh` `[D, T, B, G]` gradients of the input and
//!   recurrent pre-activations; `dh`, `dc` `[D, B, H]` running state gradients
//!
//! Zoneout ([`Zoneout`]): at a real step each unit keeps its previous h (and the
//! LSTM's c) instead of the new one with a probability, drawn per unit and step
//! from a seed in training (backward draws the same), the expectation in
//! evaluation; the formulas are in `shaders/recurrence.wgsl`.
//!
//! Recurrent dropout ([`RecurrentDropout`], training only): the recurrent
//! products read the states times one mask per sequence, unit and direction;
//! unfused, [`mask_states`] masks each step's states, [`add_masked`] masks the
//! product's share of the state gradient and [`mask_history`] the states the
//! weight gradient reads; the fused steps mask inside their products.
//!
//! Storage: the activations (`xw`, `gh`, `hs`, `y`, `acts`) are all f32 or all
//! f16 (where the adapter has SHADER_F16); the cell state `cs`, the biases and
//! every gradient are f32. The cells compute in f32 either way.

use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::shaders::Shader;
use crate::tensor::{DType, Tensor};

/// Size of one step: `dirs` directions (1 or 2) of `batch` sequences of `steps`
/// steps with `hidden` units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Sequences.
    pub batch: usize,
    /// Steps.
    pub steps: usize,
    /// Units.
    pub hidden: usize,
    /// Directions, 1 or 2.
    pub dirs: usize,
}

impl Geometry {
    /// Element counts of the tensors of a cell with `gates` gates, by layout.
    fn numel(&self, gates: usize) -> Numel {
        let (b, t, h, d) = (self.batch, self.steps, self.hidden, self.dirs);
        let g = gates * h;
        Numel {
            gates_all: d * b * t * g,
            gates_step: d * b * g,
            bias: d * g,
            states: d * (t + 1) * b * h,
            y: b * t * d * h,
            acts: d * t * b * 4 * h,
            running: d * b * h,
        }
    }
}

impl Geometry {
    /// Checks that the geometry is non-empty with 1 or 2 directions and that
    /// `step` is one of its steps.
    pub(crate) fn check_step(&self, op: &'static str, step: usize) -> Result<()> {
        if [self.batch, self.steps, self.hidden].contains(&0) || !(1..=2).contains(&self.dirs) {
            return Err(Error::Empty {
                op,
                what: "[batch, steps, hidden, directions (1 or 2)]",
                shape: vec![self.batch, self.steps, self.hidden, self.dirs],
            });
        }
        if step >= self.steps {
            return Err(Error::LimitExceeded {
                op,
                what: "step",
                value: step as u64,
                limit: self.steps as u64 - 1,
            });
        }
        Ok(())
    }

    /// Checks that `lengths` holds one u32 per sequence.
    pub(crate) fn check_lengths(&self, op: &'static str, lengths: &Tensor) -> Result<()> {
        if lengths.dtype() != DType::U32 || lengths.numel() != self.batch {
            return Err(Error::ShapeMismatch {
                op,
                what: "lengths (u32)",
                expected: format!("[{}] u32", self.batch),
                got: lengths.shape().to_vec(),
            });
        }
        Ok(())
    }
}

/// Element counts of the layouts in the module docs.
struct Numel {
    /// xw, dgi, dgh
    gates_all: usize,
    /// gh
    gates_step: usize,
    /// b_ih, b_hh
    bias: usize,
    /// hs, cs
    states: usize,
    /// y, dy
    y: usize,
    acts: usize,
    /// dh, dc
    running: usize,
}

/// The cell type, named as PyTorch's modules and as the golden files name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// torch.nn.LSTM: gates i, f, g, o; carries a cell state.
    Lstm,
    /// torch.nn.GRU: gates r, z, n.
    Gru,
    /// torch.nn.RNN with tanh.
    RnnTanh,
    /// torch.nn.RNN with relu.
    RnnRelu,
}

impl Mode {
    /// `lstm`, `gru`, `rnn_tanh` or `rnn_relu`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Lstm => "lstm",
            Mode::Gru => "gru",
            Mode::RnnTanh => "rnn_tanh",
            Mode::RnnRelu => "rnn_relu",
        }
    }

    /// The mode of a [`name`](Mode::name).
    pub fn from_name(name: &str) -> Option<Self> {
        [Mode::Lstm, Mode::Gru, Mode::RnnTanh, Mode::RnnRelu]
            .into_iter()
            .find(|m| m.name() == name)
    }

    /// The cell's kernels and gate count.
    pub(crate) fn cell(self) -> Cell {
        match self {
            Mode::Lstm => super::lstm_cell::CELL,
            Mode::Gru => super::gru_cell::CELL,
            Mode::RnnTanh => super::rnn_cell::cell(false),
            Mode::RnnRelu => super::rnn_cell::cell(true),
        }
    }

    /// Gate blocks of H in the pre-activations.
    pub fn gates(self) -> usize {
        self.cell().gates
    }
}

/// A recurrent cell as its shader sees it.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    /// The cell's shader.
    pub shader: Shader,
    /// Gate blocks of H in the pre-activations (4 LSTM, 3 GRU, 1 Elman).
    pub gates: usize,
    /// Whether forward saves activations (`acts`) for backward. A cell that does
    /// not (the Elman cell) saves its new h there under zoneout, which leaves the
    /// zoned h in `hs`; see [`Cell::saves`].
    pub saves_acts: bool,
    /// Whether the cell carries a cell state `cs` (LSTM).
    pub has_c: bool,
    /// The shader's override constants.
    pub constants: &'static [(&'static str, f64)],
    /// Whether the input pre-activations' gradient equals the recurrent ones'
    /// (all but the GRU), so that a backward may write dgh alone.
    pub dgi_is_dgh: bool,
}

/// Zoneout of a recurrence: the probabilities that a unit keeps its previous h
/// and (LSTM) c at a step, each in [0, 1).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Zoneout {
    /// Probability of keeping the previous h.
    pub h: f32,
    /// Probability of keeping the previous c.
    pub c: f32,
    /// Some: each unit's choice drawn from this seed (training; the backward of a
    /// step takes the seed its forward took). None: the expectation (evaluation).
    pub seed: Option<u32>,
}

impl Zoneout {
    /// The uniform fields `shaders/zoneout.wgsl` reads for `zoneout`: seed,
    /// h_threshold, c_threshold, h_zone, c_zone (zeros without).
    pub(crate) fn fields(zoneout: Option<Zoneout>) -> (u32, u32, u32, f32, f32) {
        let z = zoneout.unwrap_or_default();
        let threshold = super::hash_threshold;
        (
            z.seed.unwrap_or(0),
            threshold(z.h),
            threshold(z.c),
            z.h,
            z.c,
        )
    }

    /// Checks the probabilities for `cell` (a probability for c needs one).
    pub fn check(&self, op: &'static str, cell: &Cell) -> Result<()> {
        let ok = |p: f32| (0.0..1.0).contains(&p);
        if !ok(self.h) || !ok(self.c) || (self.c > 0.0 && !cell.has_c) {
            return Err(Error::InvalidArgument {
                op,
                what: "zoneout probabilities (h, c)",
                expected: "0 <= p < 1, and c = 0 without a cell state",
                got: format!("({}, {}) for {}", self.h, self.c, cell.shader.name),
            });
        }
        Ok(())
    }
}

/// The pipeline constants of `zoneout` (`shaders/zoneout.wgsl`): none without,
/// ZONEOUT in training, and ZONE_MEAN too for the expectation.
pub(crate) fn zoneout_constants(zoneout: Option<Zoneout>) -> Vec<(&'static str, f64)> {
    match zoneout {
        None => vec![],
        Some(Zoneout { seed: Some(_), .. }) => vec![("ZONEOUT", 1.0)],
        Some(Zoneout { seed: None, .. }) => vec![("ZONEOUT", 1.0), ("ZONE_MEAN", 1.0)],
    }
}

impl Cell {
    /// Whether forward saves activations (`acts`), with zoneout or without.
    pub fn saves(&self, zoneout: bool) -> bool {
        self.saves_acts || zoneout
    }
}

/// Recurrent dropout of a recurrence in training: probability `p` in [0, 1),
/// masks from `seed` (the backward takes its forward's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecurrentDropout {
    /// Drop probability.
    pub p: f32,
    /// Seeds the masks.
    pub seed: u32,
}

/// The tensors of one forward step; `cs` only for a cell with a cell state and
/// `acts` only for one that [saves](Cell::saves) activations.
#[derive(Clone, Copy, Debug)]
pub struct ForwardIo<'a> {
    /// `[B]` sequence lengths.
    pub lengths: &'a Tensor,
    /// Input products x·W_ihᵀ.
    pub xw: &'a Tensor,
    /// The step's recurrent products h·W_hhᵀ.
    pub gh: &'a Tensor,
    /// Input bias.
    pub b_ih: &'a Tensor,
    /// Recurrent bias.
    pub b_hh: &'a Tensor,
    /// Hidden states of every step.
    pub hs: &'a Tensor,
    /// Cell states of every step (LSTM).
    pub cs: Option<&'a Tensor>,
    /// Activations saved for the backward.
    pub acts: Option<&'a Tensor>,
    /// The layer's zoneout.
    pub zoneout: Option<Zoneout>,
    /// Only where the fused steps run it: the unfused steps' products read
    /// [`mask_states`]'s states.
    pub recurrent_dropout: Option<RecurrentDropout>,
}

/// The tensors of one backward step, as [`ForwardIo`] for `cs`, `acts`,
/// `zoneout` and `recurrent_dropout` (the forward's; only where the fused steps
/// run it, the unfused ones calling [`add_masked`]).
#[derive(Clone, Copy, Debug)]
pub struct BackwardIo<'a> {
    /// `[B]` sequence lengths.
    pub lengths: &'a Tensor,
    /// Hidden states of every step.
    pub hs: &'a Tensor,
    /// Cell states of every step (LSTM).
    pub cs: Option<&'a Tensor>,
    /// The forward's saved activations.
    pub acts: Option<&'a Tensor>,
    /// Gradient of the outputs.
    pub dy: &'a Tensor,
    /// Running gradient of h.
    pub dh: &'a Tensor,
    /// Running gradient of c (LSTM).
    pub dc: Option<&'a Tensor>,
    /// None: not written (a cell whose dgi equals dgh; read dgh instead).
    pub dgi: Option<&'a Tensor>,
    /// Gradient of the recurrent pre-activations, written.
    pub dgh: &'a Tensor,
    /// The forward's zoneout.
    pub zoneout: Option<Zoneout>,
    /// The forward's recurrent dropout.
    pub recurrent_dropout: Option<RecurrentDropout>,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    b: u32,
    t: u32,
    h: u32,
    d: u32,
    step: u32,
    seed: u32,
    h_threshold: u32,
    c_threshold: u32,
    h_zone: f32,
    c_zone: f32,
    r_seed: u32,
    r_threshold: u32,
    r_scale: f32,
    _pad: [u32; 3],
}

/// The random masks of a launch.
#[derive(Clone, Copy, Debug, Default)]
struct Masks {
    zoneout: Option<Zoneout>,
    dropout: Option<RecurrentDropout>,
}

/// Records step `step` of the forward recurrence: states and saved activations at
/// t = step (direction 0) and t = T − 1 − step (direction 1); [`outputs`] writes
/// y from the states once every step is recorded. With
/// `next_packed` (a [`crate::ops::gemm::pack_a_target`] texture of the new states,
/// `[D]` layers of `[B, H]`) the cell also writes them there for the next step's
/// recurrent GEMM, in place of a pack dispatch.
pub fn forward(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    step: usize,
    io: &ForwardIo,
    next_packed: Option<&wgpu::TextureView>,
) -> Result<()> {
    let bindings = forward_bindings(cell, geo, io)?;
    let entry = if next_packed.is_some() {
        "forward_packing"
    } else {
        "forward"
    };
    launch(
        rec,
        cell,
        entry,
        geo,
        step,
        io.lengths,
        &bindings,
        next_packed,
        false,
        Masks {
            zoneout: io.zoneout,
            dropout: io.recurrent_dropout,
        },
    )
}

/// [`forward`] with the step's recurrent product inside the cell's dispatch:
/// `io.gh` is computed from `w_hh` (`[D, G, H]`, f32, as are the activations)
/// and the states before the step, so no GEMM precedes it. Needs a ninth storage
/// binding (see [`fused_steps`]).
pub fn forward_fused(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    step: usize,
    io: &ForwardIo,
    w_hh: &Tensor,
) -> Result<()> {
    forward_with_product(rec, cell, geo, "forward_fused", step, io, w_hh)
}

/// Every step of the forward as [`forward_fused`] runs them, in one dispatch: a
/// workgroup owns a sequence and direction and loops over time (persistent
/// steps; see [`persistent_steps`]). Needs what [`forward_fused`] needs.
pub fn forward_persistent(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    io: &ForwardIo,
    w_hh: &Tensor,
) -> Result<()> {
    forward_with_product(rec, cell, geo, "forward_persistent", 0, io, w_hh)
}

/// A forward `entry` that computes the recurrent products itself from `w_hh`.
fn forward_with_product(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    entry: &'static str,
    step: usize,
    io: &ForwardIo,
    w_hh: &Tensor,
) -> Result<()> {
    let mut bindings = forward_bindings(cell, geo, io)?;
    bindings.push(w_hh_binding(cell, geo, w_hh));
    let masks = Masks {
        zoneout: io.zoneout,
        dropout: io.recurrent_dropout,
    };
    launch(
        rec, cell, entry, geo, step, io.lengths, &bindings, None, false, masks,
    )
}

fn forward_bindings<'a>(
    cell: &Cell,
    geo: Geometry,
    io: &ForwardIo<'a>,
) -> Result<Vec<Binding<'a>>> {
    let n = geo.numel(cell.gates);
    let mut bindings = vec![
        (2, "xw", io.xw, n.gates_all),
        (3, "gh", io.gh, n.gates_step),
        (4, "b_ih", io.b_ih, n.bias),
        (5, "b_hh", io.b_hh, n.bias),
        (6, "hs", io.hs, n.states),
    ];
    bindings.extend(optional(cell.has_c, "cs", io.cs, 7, n.states)?);
    let saves = cell.saves(io.zoneout.is_some());
    bindings.extend(optional(saves, "acts", io.acts, 9, n.acts)?);
    Ok(bindings)
}

fn w_hh_binding<'a>(cell: &Cell, geo: Geometry, w_hh: &'a Tensor) -> Binding<'a> {
    let g = cell.gates * geo.hidden;
    (32, "w_hh", w_hh, geo.dirs * g * geo.hidden)
}

/// Whether a step of `batch` sequences of `hidden` units runs fused (one
/// dispatch per step: [`forward_fused`], [`backward_fused`]) with activations
/// stored as `storage`: as [`ContextOptions::fused_steps`] says, else by adapter.
/// A fused step reads W_hh once per sequence where a GEMM shares each load across
/// the batch, and saves one dispatch per step forward and one or two backward.
/// On CPU adapters it wins while batch × hidden ≤ 256 (measured on lavapipe,
/// BENCHMARKS.md). Elsewhere the steps fuse up to 32 sequences, where the
/// per-step products are too thin to fill a GPU: a backward step's product at
/// B = 32, H = 256 runs 128 invocations, the fused step 2,048 (a first choice,
/// not yet measured on a GPU). Either way the adapter must bind 9 storage buffers to one kernel and the
/// activations must be f32.
///
/// [`ContextOptions::fused_steps`]: crate::ContextOptions::fused_steps
pub fn fused_steps(rec: &Recorder, batch: usize, hidden: usize, storage: DType) -> bool {
    let ctx = rec.context();
    let possible = can_fuse(ctx, storage);
    let by_adapter = match ctx.adapter_info().device_type {
        wgpu::DeviceType::Cpu => batch * hidden <= 256,
        _ => batch <= 32,
    };
    possible && ctx.fused_steps().unwrap_or(by_adapter)
}

/// Whether a layer's steps run persistently ([`forward_persistent`],
/// [`backward_persistent`]: one dispatch per pass, a workgroup per sequence and
/// direction looping over time) rather than a dispatch per step: where steps can
/// fuse ([`fused_steps`]'s conditions), as [`ContextOptions::persistent_steps`]
/// says, else by adapter, batch and hidden size unless fused steps are turned
/// off. A workgroup's 64 lanes share a
/// step's H × G product, so the work that one dispatch per step spread over
/// H / 64 workgroups now waits on one: persistent steps pay where that work is
/// small against a dispatch. On CPU adapters, as measured on lavapipe (one LSTM
/// layer's training step, T = 64), up to 128 units and 512 units across the
/// batch; elsewhere up to 128 units and 32 sequences (each lane then does at most
/// 2 · 4 · 128 multiply-adds a step; a first choice, not yet measured on a GPU).
///
/// [`ContextOptions::persistent_steps`]: crate::ContextOptions::persistent_steps
pub fn persistent_steps(rec: &Recorder, batch: usize, hidden: usize, storage: DType) -> bool {
    let ctx = rec.context();
    let by_adapter = hidden <= 128
        && match ctx.adapter_info().device_type {
            wgpu::DeviceType::Cpu => batch * hidden <= 512,
            _ => batch <= 32,
        };
    // Fused steps turned off turn the rule off too: persistent ones are fused.
    let by_adapter = by_adapter && ctx.fused_steps() != Some(false);
    can_fuse(ctx, storage) && ctx.persistent_steps().unwrap_or(by_adapter)
}

/// Whether steps can fuse on `ctx`: the fused kernels bind 9 storage buffers and
/// read f32 activations.
fn can_fuse(ctx: &Context, storage: DType) -> bool {
    storage == DType::F32 && ctx.limits().max_storage_buffers_per_shader_stage >= 9
}

/// Records the layer's outputs `y` `[B, T, D·H]` from the states `hs` of a
/// finished forward recurrence: each real step's state, zero past each length.
pub fn outputs(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    lengths: &Tensor,
    hs: &Tensor,
    y: &Tensor,
) -> Result<()> {
    let n = geo.numel(cell.gates);
    let bindings = [(6, "hs", hs, n.states), (8, "y", y, n.y)];
    launch(
        rec,
        cell,
        "outputs",
        geo,
        0,
        lengths,
        &bindings,
        None,
        false,
        Masks::default(),
    )
}

/// Records step `step` of the backward recurrence (run `step` from T − 1 down to 0):
/// pre-activation gradients of that step into `dgi` and `dgh`, `dc` carried to the
/// previous step, and in `dh` the part of the previous state's gradient that
/// bypasses W_hh (the caller adds `dgh·W_hh` with a GEMM).
pub fn backward(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    step: usize,
    io: &BackwardIo,
) -> Result<()> {
    let bindings = backward_bindings(cell, geo, io)?;
    launch(
        rec,
        cell,
        "backward",
        geo,
        step,
        io.lengths,
        &bindings,
        None,
        io.dgi.is_none(),
        Masks {
            zoneout: io.zoneout,
            dropout: io.recurrent_dropout,
        },
    )
}

/// [`backward`] that first adds to `dh` the recurrent product of the step run
/// before it (`dgh` of step `step + 1` times `w_hh`, `[D, G, H]` f32): one
/// dispatch per step where [`backward`] takes a GEMM after it. After step 0 the
/// caller adds step 0's product itself.
pub fn backward_fused(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    step: usize,
    io: &BackwardIo,
    w_hh: &Tensor,
) -> Result<()> {
    backward_with_product(rec, cell, geo, "backward_fused", step, io, w_hh)
}

/// Every step of the backward as [`backward_fused`] runs them (T − 1 down to
/// 0), in one dispatch; the caller then adds step 0's product, as after
/// [`backward_fused`].
pub fn backward_persistent(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    io: &BackwardIo,
    w_hh: &Tensor,
) -> Result<()> {
    backward_with_product(rec, cell, geo, "backward_persistent", 0, io, w_hh)
}

/// A backward `entry` that adds the state products itself from `w_hh`.
fn backward_with_product(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    entry: &'static str,
    step: usize,
    io: &BackwardIo,
    w_hh: &Tensor,
) -> Result<()> {
    let mut bindings = backward_bindings(cell, geo, io)?;
    bindings.push(w_hh_binding(cell, geo, w_hh));
    let masks = Masks {
        zoneout: io.zoneout,
        dropout: io.recurrent_dropout,
    };
    let no_dgi = io.dgi.is_none();
    launch(
        rec, cell, entry, geo, step, io.lengths, &bindings, None, no_dgi, masks,
    )
}

fn backward_bindings<'a>(
    cell: &Cell,
    geo: Geometry,
    io: &BackwardIo<'a>,
) -> Result<Vec<Binding<'a>>> {
    let n = geo.numel(cell.gates);
    if io.dgi.is_none() && !cell.dgi_is_dgh {
        return Err(Error::ShapeMismatch {
            op: cell.shader.name,
            what: "dgi",
            expected: "a tensor (this cell's dgi differs from dgh)".into(),
            got: vec![],
        });
    }
    let mut bindings = vec![
        (10, "dy", io.dy, n.y),
        (11, "dh", io.dh, n.running),
        (14, "dgh", io.dgh, n.gates_all),
    ];
    bindings.extend(io.dgi.map(|dgi| (13, "dgi", dgi, n.gates_all)));
    // The LSTM's backward needs only c, the others read h.
    if !cell.has_c {
        bindings.push((6, "hs", io.hs, n.states));
    }
    bindings.extend(optional(cell.has_c, "cs", io.cs, 7, n.states)?);
    bindings.extend(optional(cell.has_c, "dc", io.dc, 12, n.running)?);
    let saves = cell.saves(io.zoneout.is_some());
    bindings.extend(optional(saves, "acts", io.acts, 9, n.acts)?);
    Ok(bindings)
}

/// Records `masked` `[D, B, H]` = the states step `step` reads (from `io.hs`)
/// times recurrent dropout's masks: the operand of that step's recurrent product.
pub fn mask_states(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    step: usize,
    io: &ForwardIo,
    masked: &Tensor,
    dropout: RecurrentDropout,
) -> Result<()> {
    let n = geo.numel(cell.gates);
    let bindings = [
        (6, "hs", io.hs, n.states),
        (33, "masked", masked, n.running),
    ];
    let at = (geo, step, io.lengths);
    launch_masking(rec, cell, "mask_states", at, &bindings, dropout)
}

/// Records `masked` (shaped as `hs`) = every state of `hs` times recurrent
/// dropout's masks: the states the gradient of W_hh reads.
pub fn mask_history(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    lengths: &Tensor,
    hs: &Tensor,
    masked: &Tensor,
    dropout: RecurrentDropout,
) -> Result<()> {
    let n = geo.numel(cell.gates);
    let bindings = [(6, "hs", hs, n.states), (33, "masked", masked, n.states)];
    launch_masking(
        rec,
        cell,
        "mask_history",
        (geo, 0, lengths),
        &bindings,
        dropout,
    )
}

/// Records `dh += m ⊙ dh_rec` (both `[D, B, H]`): the recurrent product's share
/// of the state gradient through recurrent dropout's masks `m`.
pub fn add_masked(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    lengths: &Tensor,
    dh: &Tensor,
    dh_rec: &Tensor,
    dropout: RecurrentDropout,
) -> Result<()> {
    let n = geo.numel(cell.gates);
    let bindings = [(11, "dh", dh, n.running), (34, "dh_rec", dh_rec, n.running)];
    launch_masking(
        rec,
        cell,
        "add_masked",
        (geo, 0, lengths),
        &bindings,
        dropout,
    )
}

/// Records one of recurrent dropout's entries at (geometry, step, lengths).
fn launch_masking(
    rec: &mut Recorder,
    cell: &Cell,
    entry: &'static str,
    (geo, step, lengths): (Geometry, usize, &Tensor),
    bindings: &[Binding],
    dropout: RecurrentDropout,
) -> Result<()> {
    let masks = Masks {
        dropout: Some(dropout),
        ..Masks::default()
    };
    launch(
        rec, cell, entry, geo, step, lengths, bindings, None, false, masks,
    )
}

type Binding<'a> = (u32, &'static str, &'a Tensor, usize);

/// How far above its scalar binding a tensor's vec4 view is bound.
const VEC4_BINDINGS: u32 = 16;

/// The bindings stored as the shader's `act_t`: f32, or all f16.
const ACTIVATIONS: [&str; 6] = ["xw", "gh", "hs", "y", "acts", "masked"];

/// The binding of a tensor the cell needs exactly when `needed`.
fn optional<'a>(
    needed: bool,
    what: &'static str,
    t: Option<&'a Tensor>,
    binding: u32,
    numel: usize,
) -> Result<Option<Binding<'a>>> {
    match (needed, t) {
        (true, Some(t)) => Ok(Some((binding, what, t, numel))),
        (false, None) => Ok(None),
        (true, None) => Err(Error::ShapeMismatch {
            op: "recurrence",
            what,
            expected: "a tensor (this cell uses it)".into(),
            got: vec![],
        }),
        (false, Some(t)) => Err(Error::ShapeMismatch {
            op: "recurrence",
            what,
            expected: "none (this cell does not use it)".into(),
            got: t.shape().to_vec(),
        }),
    }
}

/// Records `entry` (forward, forward_packing, outputs or backward) of `cell`, or where H is
/// a multiple of 4 its vec4 twin (`forward4`, ...: 4 units per invocation through
/// vec4 views bound [`VEC4_BINDINGS`] above the scalar bindings; on CPU adapters
/// a storage access costs per access whatever its width, so they make a quarter of
/// the cells' accesses).
#[allow(clippy::too_many_arguments)]
fn launch(
    rec: &mut Recorder,
    cell: &Cell,
    entry: &'static str,
    geo: Geometry,
    step: usize,
    lengths: &Tensor,
    bindings: &[Binding],
    next_packed: Option<&wgpu::TextureView>,
    no_dgi: bool,
    masks: Masks,
) -> Result<()> {
    let op = cell.shader.name;
    let zoneout = masks.zoneout;
    if let Some(z) = &zoneout {
        z.check(op, cell)?;
    }
    if let Some(RecurrentDropout { p, .. }) = masks.dropout {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::InvalidArgument {
                op,
                what: "recurrent dropout",
                expected: "0 <= p < 1",
                got: p.to_string(),
            });
        }
    }
    geo.check_step(op, step)?;
    let mut tensors: Vec<&Tensor> = bindings.iter().map(|b| b.2).collect();
    tensors.push(lengths);
    rec.check_same_device(op, &tensors)?;
    geo.check_lengths(op, lengths)?;
    // The activations share one storage type (f32 or f16, the shader's act_t);
    // everything else is f32.
    let (acts, rest): (Vec<_>, Vec<_>) = bindings
        .iter()
        .map(|&(_, what, t, _)| (what, t))
        .partition(|(what, _)| ACTIVATIONS.contains(what));
    super::check_f32(rec, op, &rest)?;
    super::check_float(rec, op, &acts)?;
    let storage = acts.first().map_or(DType::F32, |(_, t)| t.dtype());
    if let Some(&(what, t)) = acts.iter().find(|(_, t)| t.dtype() != storage) {
        return Err(Error::DType {
            op,
            what,
            expected: storage,
            got: t.dtype(),
        });
    }
    let limit = rec.context().limits().max_storage_buffer_binding_size;
    for &(_, what, t, numel) in bindings {
        if t.numel() != numel {
            return Err(Error::ShapeMismatch {
                op,
                what,
                expected: format!("{numel} elements for {geo:?}"),
                got: t.shape().to_vec(),
            });
        }
        if t.buffer().size() > limit {
            return Err(Error::LimitExceeded {
                op,
                what: "tensor bytes (one storage binding)",
                value: t.buffer().size(),
                limit,
            });
        }
    }
    let u = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
    let (seed, h_threshold, c_threshold, h_zone, c_zone) = Zoneout::fields(zoneout);
    let params = Params {
        b: u(geo.batch),
        t: u(geo.steps),
        h: u(geo.hidden),
        d: u(geo.dirs),
        step: u(step),
        seed,
        h_threshold,
        c_threshold,
        h_zone,
        c_zone,
        r_seed: masks.dropout.map_or(0, |m| m.seed),
        r_threshold: super::hash_threshold(masks.dropout.map_or(0.0, |m| m.p)),
        r_scale: masks.dropout.map_or(1.0, |m| 1.0 / (1.0 - m.p)),
        ..Params::default()
    };
    let (entry, shift) = match (entry, geo.hidden.is_multiple_of(4)) {
        ("forward", true) => ("forward4", VEC4_BINDINGS),
        ("forward_packing", true) => ("forward_packing4", VEC4_BINDINGS),
        ("outputs", true) => ("outputs4", VEC4_BINDINGS),
        ("backward", true) => ("backward4", VEC4_BINDINGS),
        ("forward_fused", true) => ("forward_fused4", VEC4_BINDINGS),
        ("backward_fused", true) => ("backward_fused4", VEC4_BINDINGS),
        ("forward_persistent", true) => ("forward_persistent4", VEC4_BINDINGS),
        ("backward_persistent", true) => ("backward_persistent4", VEC4_BINDINGS),
        _ => (entry, 0),
    };
    let vec4 = shift != 0;
    let f16: &[&str] = if storage == DType::F16 {
        &["act_t"]
    } else {
        &[]
    };
    let mut constants = cell.constants.to_vec();
    if no_dgi {
        constants.push(("WRITES_DGI", 0.0));
    }
    constants.extend(zoneout_constants(zoneout));
    if masks.dropout.is_some_and(|m| m.p > 0.0) {
        constants.push(("RECURRENT_DROPOUT", 1.0));
    }
    let pipeline = rec
        .context()
        .pipeline_f16(&cell.shader, entry, &constants, f16);
    let mut tensors = vec![(1, lengths)];
    tensors.extend(bindings.iter().map(|&(i, _, t, _)| (i + shift, t)));
    rec.hold(&tensors.iter().map(|&(_, t)| t).collect::<Vec<_>>());
    let mut resources: Vec<_> = tensors
        .iter()
        .map(|&(i, t)| (i, t.buffer().as_entire_binding()))
        .collect();
    // One invocation per unit, or per 4 units when it also writes them as a texel
    // or reads them as vec4s.
    if let Some(texture) = next_packed {
        resources.push((15, wgpu::BindingResource::TextureView(texture)));
    }
    // The dgi binding stays in the layout; nothing writes it.
    let ctx = rec.context().clone();
    if no_dgi {
        resources.push((13 + shift, ctx.placeholder().as_entire_binding()));
    }
    // So does the acts binding of a cell that saves activations under zoneout only.
    let runs_cell = entry.starts_with("forward") || entry.starts_with("backward");
    if runs_cell && !cell.saves(zoneout.is_some()) {
        resources.push((9 + shift, ctx.placeholder().as_entire_binding()));
    }
    let units_per_invocation = if next_packed.is_some() || vec4 { 4 } else { 1 };
    let workgroup = if vec4 { 16 } else { 64 };
    let invocations = geo.hidden.div_ceil(units_per_invocation);
    // A persistent kernel's workgroup owns every unit of its sequence.
    let across = if entry.contains("persistent") {
        1
    } else {
        u(invocations.div_ceil(workgroup))
    };
    rec.dispatch(
        &format!("{op}::{entry}"),
        &pipeline,
        bytemuck::bytes_of(&params),
        &resources,
        [across, u(geo.batch), u(geo.dirs)],
    )
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(
    crate::shaders::LSTM_CELL,
    crate::shaders::GRU_CELL,
    crate::shaders::RNN_CELL
);
