//! Recurrent layers — Elman RNN (tanh, relu), LSTM and GRU — stacked and
//! bidirectional, batch-first, with per-sequence lengths and PyTorch's parameters.
//!
//! Legend: B sequences, T steps, I input features, H hidden units, L layers,
//! D directions (2 when bidirectional), G = gates·H (4H LSTM, 3H GRU, H Elman).
//!
//! Forward, per layer: one GEMM projects the inputs of all steps for both
//! directions; then per step one GEMM (h·W_hhᵀ, both directions as a batch of 2)
//! and one fused cell dispatch. Backward, per layer: per step (in reverse) one
//! cell dispatch and one GEMM (dh += dgh·W_hh); then the weight gradients as one
//! GEMM each over all steps, the bias gradients as column sums, and dx. At small
//! batches (`ops::recurrence::fused_steps`) a step is one dispatch instead, the
//! recurrent product inside the cell's kernel, forward and backward; with
//! persistent steps (`ops::recurrence::persistent_steps`) all the steps of a pass
//! are one dispatch, a workgroup per sequence and direction looping over time. Nothing is
//! read back to the host: the whole sequence is recorded into the caller's
//! [`Recorder`]. A trained unidirectional stack also runs a token at a time as a
//! [`Stream`](crate::nn::Stream).
//!
//! Options: dropout between layers in training ([`Recurrent::with_dropout`]),
//! zoneout on the states ([`Recurrent::with_zoneout`]), dropout on the
//! recurrent input ([`Recurrent::with_recurrent_dropout`]),
//! the LSTM's output projection ([`Recurrent::with_projection`], PyTorch's
//! `proj_size`: per step the cell's output is projected by `ops::projection`
//! into the state the next step and the output read), LayerNorm-LSTM
//! ([`Recurrent::with_layer_norm`]: per step the recurrent GEMM and one
//! `ops::layer_norm_lstm` dispatch), f16 storage ([`Recurrent::with_storage`]).
//!
//! Padding: past a sequence's length its state is carried unchanged, its outputs
//! are 0 and it contributes nothing to any gradient; `h_n` (and `c_n`) hold the
//! state at each sequence's last real step, as PyTorch's packed sequences do.
//!
//! Gradients: parameter gradients accumulate (call [`Module::zero_grad`] to
//! start over); input and state gradients are returned fresh.
//!
//! Truncated BPTT: run a long stream in chunks, passing each chunk's `h_n` (and
//! `c_n`) as the next chunk's `h0` (`c0`); backward of a chunk stops at its `h0`,
//! which cuts the gradient at the chunk boundary.
//!
//! Storage ([`Recurrent::with_storage`]): with f16, each forward rounds the weights
//! W_ih and W_hh to f16 once and stores the activations (input projections, states,
//! outputs, saved gates) as f16, which halves the bytes the step kernels move on a
//! GPU; every kernel accumulates in f32, and the parameters, their gradients, the
//! cell state, biases and all gradients stay f32. `y` is then f16; `h_n` and
//! `c_n` are f32 as always.
//!
//! A stack on a recorder, forward and backward by hand:
//!
//! ```
//! use rnn_wgpu::nn::{Config, Mode, Module, Recurrent};
//! use rnn_wgpu::{Context, Recorder, Result, Tensor};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let cfg = Config::new(16, 32).with_layers(2).with_bidirectional(true);
//!     let lstm = Recurrent::new(&ctx, Mode::Lstm, cfg, 7)?;
//!     let x = Tensor::from_slice(&ctx, &[3, 5, 16], &[0.1; 3 * 5 * 16])?;   // [B, T, I]
//!     let dy = Tensor::from_slice(&ctx, &[3, 5, 64], &[1.0; 3 * 5 * 64])?;  // dL/dy
//!     let mut rec = Recorder::new(&ctx, "step");
//!     lstm.zero_grad(&mut rec)?;
//!     let (out, saved) = lstm.forward(&mut rec, &x, &[5, 2, 4], None)?;  // lengths; zero state
//!     let grads = lstm.backward(&mut rec, &saved, &dy, None)?;
//!     rec.submit();                                        // the whole sequence, one submit
//!     assert_eq!(out.y.shape(), [3, 5, 64]);               // zero past each length
//!     assert_eq!(grads.dx.to_vec()?.len(), 3 * 5 * 16);
//!     Ok(())
//! }
//! ```

use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use super::dropout::{between_layers, Draws, Dropout, Mask};
use super::{Entry, Module, Named, Param, SplitMix};
use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::ops::gemm::{self, BiasView, View};
pub use crate::ops::recurrence::Mode;
use crate::ops::recurrence::{
    self, BackwardIo, Cell, ForwardIo, Geometry, RecurrentDropout, Zoneout,
};
use crate::ops::{cast, elementwise, layer_norm_lstm, projection};
use crate::tape::{Tape, Var};
use crate::tensor::{DType, Tensor};

const OP: &str = "recurrent";

/// Sizes of a recurrent layer stack, as PyTorch's constructor arguments less
/// the cell: [`Config::new`], then `with_*`. Every stack takes it: [`Recurrent`]
/// with a [`Mode`], the typed [`Lstm`](super::Lstm), [`Gru`](super::Gru),
/// [`Rnn`](super::Rnn), and [`MinGru`](super::MinGru), [`MinLstm`](super::MinLstm).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Features of the first layer's input.
    pub input_size: usize,
    /// Units per layer and direction.
    pub hidden_size: usize,
    /// Stacked layers.
    pub num_layers: usize,
    /// Whether each layer reads both ways.
    pub bidirectional: bool,
}

impl Config {
    /// One unidirectional layer from `input_size` to `hidden_size`.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        Self {
            input_size,
            hidden_size,
            num_layers: 1,
            bidirectional: false,
        }
    }

    /// Stacked layers.
    pub fn with_layers(self, num_layers: usize) -> Self {
        Self { num_layers, ..self }
    }

    /// Whether each layer reads both ways.
    pub fn with_bidirectional(self, bidirectional: bool) -> Self {
        Self {
            bidirectional,
            ..self
        }
    }

    /// Features of the first layer's input.
    pub fn with_input_size(self, input_size: usize) -> Self {
        Self { input_size, ..self }
    }

    /// Directions: 2 when bidirectional.
    pub fn dirs(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
}

/// A stack's state at a sequence boundary: `h` `[L·D, B, S]` and, for an LSTM,
/// `c` `[L·D, B, H]` (S is P with a projection, else H). Initial states, final
/// states and their gradients all take this form, over tensors or tape values.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum State<T> {
    /// An LSTM's.
    Lstm {
        /// Hidden state.
        h: T,
        /// Cell state.
        c: T,
    },
    /// A GRU's, Elman RNN's or minimal cell's.
    Hidden {
        /// Hidden state.
        h: T,
    },
}

impl<T> State<T> {
    /// The hidden state.
    pub fn h(&self) -> &T {
        match self {
            State::Lstm { h, .. } | State::Hidden { h } => h,
        }
    }

    /// The cell state, if an LSTM's.
    pub fn c(&self) -> Option<&T> {
        match self {
            State::Lstm { c, .. } => Some(c),
            State::Hidden { .. } => None,
        }
    }

    /// The same kind of state over `f` of each tensor.
    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> State<U> {
        match self {
            State::Lstm { h, c } => State::Lstm { h: f(h), c: f(c) },
            State::Hidden { h } => State::Hidden { h: f(h) },
        }
    }

    /// An LSTM's state when `c` is given, else a hidden state.
    pub(crate) fn of(h: T, c: Option<T>) -> Self {
        match c {
            Some(c) => State::Lstm { h, c },
            None => State::Hidden { h },
        }
    }

    /// Refuses, as `op` for the argument `what`, a state of the other kind than
    /// an LSTM's (`lstm`) or another cell's: `owner` and `noun` name what was
    /// given it ("lstm", "stack").
    pub(crate) fn check_kind(
        state: Option<&Self>,
        (op, what): (&'static str, &'static str),
        lstm: bool,
        (owner, noun): (&str, &str),
    ) -> Result<()> {
        match state {
            Some(s) if matches!(s, State::Lstm { .. }) != lstm => Err(Error::InvalidArgument {
                op,
                what,
                expected: if lstm {
                    "an LSTM's state (State::Lstm)"
                } else {
                    "a hidden state (State::Hidden)"
                },
                got: format!(
                    "{} for a {owner} {noun}",
                    match s {
                        State::Lstm { .. } => "an LSTM's state",
                        State::Hidden { .. } => "a hidden state",
                    }
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// The parameters (or their gradients) of one layer, both directions stacked
/// (direction 1 is PyTorch's `_reverse`).
#[derive(Clone, Debug)]
pub struct LayerTensors {
    /// `[D, G, I_l]` weight_ih_l{l}(_reverse)
    pub w_ih: Tensor,
    /// `[D, G, S]` weight_hh_l{l}(_reverse); S is H, or P with a projection
    pub w_hh: Tensor,
    /// `[D, G]` bias_ih_l{l}(_reverse)
    pub b_ih: Tensor,
    /// `[D, G]` bias_hh_l{l}(_reverse)
    pub b_hh: Tensor,
    /// `[D, P, H]` weight_hr_l{l}(_reverse): the LSTM's output projection
    /// ([`Recurrent::with_projection`]), none without one
    pub w_hr: Option<Tensor>,
    /// A LayerNorm-LSTM's normalizations ([`Recurrent::with_layer_norm`]).
    pub ln: Option<LayerNorms>,
}

impl LayerTensors {
    /// Every tensor under its name without the layer and direction suffix.
    fn named(&self) -> Vec<(&'static str, &Tensor)> {
        let mut out = vec![
            ("weight_ih", &self.w_ih),
            ("weight_hh", &self.w_hh),
            ("bias_ih", &self.b_ih),
            ("bias_hh", &self.b_hh),
        ];
        out.extend(self.w_hr.as_ref().map(|w| ("weight_hr", w)));
        if let Some(ln) = &self.ln {
            out.extend([
                ("layer_norm_ih_weight", &ln.ih),
                ("layer_norm_hh_weight", &ln.hh),
                ("layer_norm_c_weight", &ln.c_weight),
                ("layer_norm_c_bias", &ln.c_bias),
            ]);
        }
        out
    }
}

/// A LayerNorm-LSTM layer's normalization parameters (or their gradients), both
/// directions stacked; haste's γ (both rows), γ_h and β_h.
#[derive(Clone, Debug)]
pub struct LayerNorms {
    /// `[D, 4H]` layer_norm_ih_weight_l{l}(_reverse): the scale of the gates'
    /// normalized input part
    pub ih: Tensor,
    /// `[D, 4H]` layer_norm_hh_weight_l{l}(_reverse): of their recurrent part
    pub hh: Tensor,
    /// `[D, H]` layer_norm_c_weight_l{l}(_reverse): the normalized cell's scale
    pub c_weight: Tensor,
    /// `[D, H]` layer_norm_c_bias_l{l}(_reverse): and its shift
    pub c_bias: Tensor,
}

/// A stack of recurrent layers with its parameters and gradients on the GPU.
#[derive(Clone, Debug)]
pub struct Recurrent {
    mode: Mode,
    cfg: Config,
    params: Vec<LayerTensors>,
    grads: Vec<LayerTensors>,
    storage: DType,
    /// Dropout on each layer's output but the last, in training.
    dropout: Option<Arc<Dropout>>,
    /// Zoneout's probabilities for h and c.
    zoneout: Option<Arc<Drawn<(f32, f32)>>>,
    /// Recurrent dropout's probability.
    recurrent_dropout: Option<Arc<Drawn<f32>>>,
}

/// Probabilities whose choices training forwards draw, with the seed and the
/// count of the forwards that drew from them.
#[derive(Debug)]
struct Drawn<T> {
    rates: T,
    seed: u32,
    calls: AtomicU32,
}

impl<T> Drawn<T> {
    fn new(rates: T, seed: u32) -> Arc<Self> {
        Arc::new(Self {
            rates,
            seed,
            calls: AtomicU32::new(0),
        })
    }

    /// The seed of the next training forward; its layer l draws from this seed
    /// xor l·0x85EBCA6B ([`layer_seed`]).
    fn next_seed(&self, draws: &mut Draws) -> u32 {
        draws.seed(self.seed, &self.calls)
    }
}

/// The seed layer `l` draws from in a forward that draws from `seed`.
fn layer_seed(seed: u32, l: usize) -> u32 {
    seed ^ (l as u32).wrapping_mul(0x85EB_CA6B)
}

/// What [`Recurrent::forward`] returns.
#[derive(Clone, Debug)]
pub struct Output {
    /// `[B, T, D·S]` (S: P with a projection, else H), zero past each sequence's length.
    pub y: Tensor,
    /// The state at each sequence's last real step.
    pub state: State<Tensor>,
}

/// What [`Recurrent::apply`] returns: [`Output`] on a tape.
#[derive(Clone, Debug)]
pub struct Sequence {
    /// `[B, T, D·S]` (S: P with a projection, else H), zero past each sequence's length.
    pub y: Var,
    /// The state at each sequence's last real step.
    pub state: State<Var>,
}

/// Gradients of the inputs of [`Recurrent::forward`].
#[derive(Clone, Debug)]
pub struct InputGrads {
    /// `[B, T, I]`, zero past each sequence's length.
    pub dx: Tensor,
    /// The gradient of the initial state.
    pub state: State<Tensor>,
}

/// What a layer's backward needs from its forward.
#[derive(Clone, Debug)]
struct LayerSaved {
    input: Tensor,
    /// The weights as the forward used them (f16 copies under f16 storage).
    w_ih: Tensor,
    w_hh: Tensor,
    /// The states the steps pass on (projected, with a projection).
    hs: Tensor,
    /// With a projection: the cell's outputs before it, slots as `hs`'s.
    hf: Option<Tensor>,
    cs: Option<Tensor>,
    acts: Option<Tensor>,
    zoneout: Option<Zoneout>,
    recurrent_dropout: Option<RecurrentDropout>,
    ln: Option<LayerNormSaved>,
}

/// What a LayerNorm-LSTM layer's backward needs beyond an LSTM's.
#[derive(Clone, Debug)]
struct LayerNormSaved {
    /// The input projections before their normalization.
    xw: Tensor,
    /// The parameters the steps read, `[D, 18H]` (`ops::layer_norm_lstm`).
    lnp: Tensor,
    /// What the steps saved, `[D, T, B, 8H + 8]`.
    saved: Tensor,
}

/// Activations saved by [`Recurrent::forward`] for [`Recurrent::backward`].
#[derive(Clone, Debug)]
pub struct Saved {
    geo: Geometry,
    /// S, the width of the states and outputs.
    width: usize,
    lengths: Tensor,
    layers: Vec<LayerSaved>,
    /// The dropout masks between layers l and l + 1 (none in inference).
    masks: Vec<Mask>,
}

impl Saved {
    /// The shape of the forward's `y`: `[B, T, D·S]`.
    fn output_shape(&self) -> [usize; 3] {
        let g = self.geo;
        [g.batch, g.steps, g.dirs * self.width]
    }
}

impl Recurrent {
    /// A stack initialized as PyTorch does, every parameter uniform in
    /// `[-1/√H, 1/√H)`, from `seed`.
    pub fn new(ctx: &Context, mode: Mode, cfg: Config, seed: u64) -> Result<Self> {
        Self::build(ctx, mode, cfg, 0, seed)
    }

    /// The same LSTM stack with its states and outputs projected to `proj_size`
    /// values (0 < P < H), as torch.nn.LSTM's `proj_size`: h = W_hr · (o ⊙
    /// tanh(c)), with `weight_hr_l{l}` `[P, H]` per layer and direction; h0,
    /// h_n and y are P wide, c0 and c_n H wide. The weights change shape, so
    /// the stack starts again from `seed` (as [`new`](Self::new) with that seed
    /// would); its dropout stays. Activations stay f32 and the steps unfused;
    /// not with zoneout, recurrent dropout, layer norm or f16 storage.
    pub fn with_projection(self, proj_size: usize, seed: u64) -> Result<Self> {
        let refuse = |expected, got: String| Error::InvalidArgument {
            op: OP,
            what: "proj_size",
            expected,
            got,
        };
        if self.mode != Mode::Lstm {
            return Err(refuse("an LSTM stack", self.mode.name().into()));
        }
        if self.zoneout.is_some()
            || self.recurrent_dropout.is_some()
            || self.layer_norm()
            || self.storage != DType::F32
        {
            return Err(refuse(
                "a stack without zoneout, recurrent dropout, layer norm or f16 storage",
                "a stack with one of them".into(),
            ));
        }
        let cfg = self.cfg;
        if proj_size == 0 || proj_size >= cfg.hidden_size {
            return Err(refuse(
                "0 < proj_size < hidden_size",
                format!("{proj_size} for a hidden size of {}", cfg.hidden_size),
            ));
        }
        let ctx = self.params[0].w_ih.context().clone();
        Ok(Self {
            dropout: self.dropout,
            ..Self::build(&ctx, Mode::Lstm, cfg, proj_size, seed)?
        })
    }

    fn build(ctx: &Context, mode: Mode, cfg: Config, proj: usize, seed: u64) -> Result<Self> {
        if [cfg.input_size, cfg.hidden_size, cfg.num_layers].contains(&0) {
            return Err(Error::Empty {
                op: OP,
                what: "[input_size, hidden_size, num_layers]",
                shape: vec![cfg.input_size, cfg.hidden_size, cfg.num_layers],
            });
        }
        let bound = 1.0 / (cfg.hidden_size as f32).sqrt();
        let mut rng = SplitMix::new(seed);
        let mut params = Vec::new();
        let mut grads = Vec::new();
        for l in 0..cfg.num_layers {
            let shapes = layer_shapes(mode, &cfg, proj, l);
            let make = |data: Option<&mut SplitMix>| -> Result<LayerTensors> {
                let mut data = data;
                let mut t = |shape: &[usize]| -> Result<Tensor> {
                    let n = shape.iter().product();
                    match data.as_deref_mut() {
                        Some(rng) => Tensor::from_slice(ctx, shape, &rng.uniform(n, bound)),
                        None => Tensor::zeros(ctx, shape),
                    }
                };
                Ok(LayerTensors {
                    w_ih: t(&shapes[0])?,
                    w_hh: t(&shapes[1])?,
                    b_ih: t(&shapes[2])?,
                    b_hh: t(&shapes[3])?,
                    w_hr: (proj > 0)
                        .then(|| t(&[cfg.dirs(), proj, cfg.hidden_size]))
                        .transpose()?,
                    ln: None,
                })
            };
            params.push(make(Some(&mut rng))?);
            grads.push(make(None)?);
        }
        Ok(Self {
            mode,
            cfg,
            params,
            grads,
            storage: DType::F32,
            dropout: None,
            zoneout: None,
            recurrent_dropout: None,
        })
    }

    /// P of the output projection, if the stack has one (W_hr is `[D, P, H]`).
    pub fn proj_size(&self) -> Option<usize> {
        self.params[0].w_hr.as_ref().map(|w| w.shape()[1])
    }

    /// S, the width of the states and outputs: P with a projection, else H (W_hh
    /// is `[D, G, S]`).
    fn state_size(&self) -> usize {
        self.params[0].w_hh.shape()[2]
    }

    /// Input features of layer `l` (W_ih is `[D, G, I_l]`).
    fn layer_input(&self, l: usize) -> usize {
        self.params[l].w_ih.shape()[2]
    }

    /// The same stack with dropout of probability `p` (0 ≤ p < 1) on the output
    /// of each layer but the last, in training only, as torch.nn.LSTM's
    /// `dropout`; masks from `seed` (see [`Dropout`]). Training forwards are
    /// [`forward_train`](Self::forward_train) and [`apply`](Self::apply) on a
    /// training tape; the backward applies each mask again.
    pub fn with_dropout(mut self, p: f32, seed: u32) -> Result<Self> {
        self.dropout = between_layers(OP, p, seed)?;
        Ok(self)
    }

    /// The same stack with zoneout (Krueger et al. 2017; haste's cells zone out
    /// h): at each real step every unit keeps its previous h with probability
    /// `h` and, in an LSTM, its previous c with probability `c` (0 ≤ p < 1; a
    /// cell without c takes `c` = 0), rather than the step's new value. In
    /// training the choice is drawn per unit, step and sequence, from `seed` and
    /// a count of training forwards, and the backward draws the same; in
    /// evaluation (and in streams) a unit takes the expectation, p·h' + (1 − p)·h.
    /// A LayerNorm-LSTM's h and c take it as the LSTM's do (its normalized cell
    /// reads the new c). Not with a projection.
    pub fn with_zoneout(mut self, h: f32, c: f32, seed: u32) -> Result<Self> {
        self.refuse_projection("zoneout", false)?;
        let rates = Zoneout { h, c, seed: None };
        rates.check(OP, &self.mode.cell())?;
        self.zoneout = (h > 0.0 || c > 0.0).then(|| Drawn::new((h, c), seed));
        Ok(self)
    }

    /// The probability of dropout between layers, if the stack has it.
    pub fn dropout(&self) -> Option<f32> {
        self.dropout.as_ref().map(|d| d.p())
    }

    /// Zoneout's probabilities for h and c, if the stack has zoneout.
    pub fn zoneout(&self) -> Option<(f32, f32)> {
        self.zoneout.as_ref().map(|z| z.rates)
    }

    /// The same stack with recurrent dropout (Gal and Ghahramani 2016, Keras's
    /// `recurrent_dropout`) of probability `p` (0 ≤ p < 1) in training: each
    /// step's recurrent product reads m ⊙ h' instead of the previous state h',
    /// one mask m (0, or 1 / (1 − p)) per sequence, unit and direction for the
    /// whole sequence, drawn from `seed` and a count of training forwards; the
    /// backward draws the same. The outputs and the state the cells carry are
    /// not masked; evaluation and streams use none. Not with a projection or
    /// layer norm.
    pub fn with_recurrent_dropout(mut self, p: f32, seed: u32) -> Result<Self> {
        self.refuse_projection("recurrent dropout", true)?;
        if !(0.0..1.0).contains(&p) {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "recurrent dropout",
                expected: "0 <= p < 1",
                got: p.to_string(),
            });
        }
        self.recurrent_dropout = (p > 0.0).then(|| Drawn::new(p, seed));
        Ok(self)
    }

    /// Recurrent dropout's probability, if the stack has it.
    pub fn recurrent_dropout(&self) -> Option<f32> {
        self.recurrent_dropout.as_ref().map(|r| r.rates)
    }

    /// The same LSTM stack as a LayerNorm-LSTM (Ba et al. 2016, in haste's
    /// formulation): the gates' pre-activations are LN(x·W_ihᵀ) ⊙ γ_ih + LN(h'·W_hhᵀ)
    /// ⊙ γ_hh + b_ih + b_hh and the output is h = o ⊙ tanh(LN(c) ⊙ γ_c + β_c),
    /// each LN normalizing its row (the 4H gate values, or the H cell values) to
    /// zero mean and unit variance (eps 1e-5). The scales start at 1, the shift
    /// at 0; their parameters are `layer_norm_ih_weight_l{k}`,
    /// `layer_norm_hh_weight_l{k}` `[4H]`, `layer_norm_c_weight_l{k}` and
    /// `layer_norm_c_bias_l{k}` `[H]` (and `_reverse`). A step is a GEMM and one
    /// dispatch forward, one and a GEMM backward. An LSTM only, with f32 storage,
    /// without a projection or recurrent dropout; zoneout goes with it.
    pub fn with_layer_norm(mut self) -> Result<Self> {
        let refuse = |got: &str| Error::InvalidArgument {
            op: OP,
            what: "layer norm",
            expected: "an LSTM stack with f32 storage, without a projection or recurrent dropout",
            got: got.into(),
        };
        if self.mode != Mode::Lstm {
            return Err(refuse(self.mode.name()));
        }
        if self.proj_size().is_some() || self.storage != DType::F32 {
            return Err(refuse("a projected or f16 stack"));
        }
        if self.recurrent_dropout.is_some() {
            return Err(refuse("a stack with recurrent dropout"));
        }
        let ctx = self.params[0].w_ih.context().clone();
        let (d, h) = (self.cfg.dirs(), self.cfg.hidden_size);
        let filled = |shape: &[usize], v: f32| -> Result<Tensor> {
            Tensor::from_slice(&ctx, shape, &vec![v; shape.iter().product()])
        };
        let norms = |scale: f32| -> Result<LayerNorms> {
            Ok(LayerNorms {
                ih: filled(&[d, 4 * h], scale)?,
                hh: filled(&[d, 4 * h], scale)?,
                c_weight: filled(&[d, h], scale)?,
                c_bias: filled(&[d, h], 0.0)?,
            })
        };
        for (p, g) in self.params.iter_mut().zip(&mut self.grads) {
            p.ln = Some(norms(1.0)?);
            g.ln = Some(norms(0.0)?);
        }
        Ok(self)
    }

    /// Whether the stack is a LayerNorm-LSTM ([`with_layer_norm`](Self::with_layer_norm)).
    pub fn layer_norm(&self) -> bool {
        self.params[0].ln.is_some()
    }

    /// An error naming `what` when the stack has a projection, or (`or_layer_norm`)
    /// layer norm.
    fn refuse_projection(&self, what: &'static str, or_layer_norm: bool) -> Result<()> {
        let got = match (self.proj_size(), or_layer_norm && self.layer_norm()) {
            (Some(_), _) => "a projected LSTM",
            (None, true) => "a LayerNorm-LSTM",
            (None, false) => return Ok(()),
        };
        Err(Error::InvalidArgument {
            op: OP,
            what,
            expected: if or_layer_norm {
                "a stack without a projection or layer norm"
            } else {
                "a stack without a projection"
            },
            got: got.into(),
        })
    }

    /// The same stack with its activations and forward weights stored as `dtype`:
    /// f32 (the default) or f16 (see the module docs), which needs SHADER_F16;
    /// f32 only with a projection or layer norm.
    pub fn with_storage(mut self, dtype: DType) -> Result<Self> {
        if dtype != DType::F32 {
            self.refuse_projection("f16 storage", true)?;
        }
        self.storage = super::check_storage(self.params[0].w_ih.context(), dtype)?;
        Ok(self)
    }

    /// How activations are stored: f32 or f16.
    pub fn storage(&self) -> DType {
        self.storage
    }

    /// The sizes this stack was made with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The cell.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Parameters per layer.
    pub fn layers(&self) -> &[LayerTensors] {
        &self.params
    }

    /// Parameter gradients per layer, shaped as [`layers`](Self::layers).
    pub fn layer_grads(&self) -> &[LayerTensors] {
        &self.grads
    }

    /// Every gradient, named as its parameter.
    pub fn named_grads(&self) -> Vec<Named> {
        let mut out = Vec::new();
        for (l, g) in self.grads.iter().enumerate() {
            for (name, t) in g.named() {
                out.extend(self.direction_names(name, l, t));
            }
        }
        out
    }

    /// The names of a stacked `[D, ..]` tensor of layer `l`'s: one per direction.
    fn direction_names(&self, name: &str, l: usize, t: &Tensor) -> Vec<Named> {
        let shape = t.shape()[1..].to_vec();
        let numel: usize = shape.iter().product();
        (0..self.cfg.dirs())
            .map(|d| Named {
                name: format!("{name}_l{l}{}", if d == 1 { "_reverse" } else { "" }),
                shape: shape.clone(),
                tensor: t.clone(),
                offset: d * numel,
            })
            .collect()
    }

    /// Records the forward pass of `x` `[B, T, I]` whose sequence `b` has
    /// `lengths[b]` real steps (1..=T, any order), from the initial `state`
    /// (zero when `None`; [`State::Lstm`] for an LSTM, else [`State::Hidden`]).
    pub fn forward(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        lengths: &[usize],
        state: Option<&State<Tensor>>,
    ) -> Result<(Output, Saved)> {
        let (h0, c0) = self.split("state", state)?;
        self.forward_impl(rec, x, lengths, h0, c0, None)
    }

    /// The tensors of a state given to this stack: h and, for an LSTM, c;
    /// a state of the other kind is an error naming `what`.
    fn split<'a, T>(
        &self,
        what: &'static str,
        state: Option<&'a State<T>>,
    ) -> Result<(Option<&'a T>, Option<&'a T>)> {
        let lstm = self.mode == Mode::Lstm;
        State::check_kind(state, (OP, what), lstm, (self.mode.name(), "stack"))?;
        Ok(match state {
            None => (None, None),
            Some(State::Lstm { h, c }) => (Some(h), Some(c)),
            Some(State::Hidden { h }) => (Some(h), None),
        })
    }

    /// [`forward`](Self::forward) in training: with the dropout between layers
    /// of [`with_dropout`](Self::with_dropout), whose masks the backward reuses.
    pub fn forward_train(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        lengths: &[usize],
        state: Option<&State<Tensor>>,
    ) -> Result<(Output, Saved)> {
        let (h0, c0) = self.split("state", state)?;
        self.forward_impl(rec, x, lengths, h0, c0, Some(&mut Draws::Counters))
    }

    fn forward_impl(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        lengths: &[usize],
        h0: Option<&Tensor>,
        c0: Option<&Tensor>,
        mut draws: Option<&mut Draws>,
    ) -> Result<(Output, Saved)> {
        let cfg = &self.cfg;
        let geo = self.check_input(rec, x, lengths)?;
        let outer = rec.phase("input GEMM");
        let (b, t, h, d) = (geo.batch, geo.steps, geo.hidden, geo.dirs);
        // The states' width S (P with a projection) and the cell's H.
        let sw = self.state_size();
        let geo_s = Geometry { hidden: sw, ..geo };
        let state_shape = [cfg.num_layers * d, b, sw];
        let cell_shape = [cfg.num_layers * d, b, h];
        let lstm = self.mode == Mode::Lstm;
        check_state(rec, "h0", h0, &state_shape)?;
        check_state(rec, "c0", c0, &cell_shape)?;

        let ctx = rec.context().clone();
        let lengths_u32: Vec<u32> = lengths.iter().map(|&n| n as u32).collect();
        let lengths_t = Tensor::from_u32(&ctx, &[b], &lengths_u32)?;
        let cell = self.mode.cell();
        let g = cell.gates * h;
        let h_n = rec.empty(&state_shape, DType::F32)?;
        let c_n = lstm
            .then(|| rec.empty(&cell_shape, DType::F32))
            .transpose()?;
        let act = self.storage;
        let mut input = x.clone();
        let mut layers = Vec::with_capacity(cfg.num_layers);
        let mut masks = Vec::new();
        // A training forward draws zoneout's and recurrent dropout's choices
        // from seeds of its own.
        // (`draws`: in training, where the seeds come from.)
        let zone_seed = match (&self.zoneout, draws.as_deref_mut()) {
            (Some(z), Some(d)) => Some(z.next_seed(d)),
            _ => None,
        };
        let drop = match (&self.recurrent_dropout, draws.as_deref_mut()) {
            (Some(r), Some(d)) => Some((r.rates, r.next_seed(d))),
            _ => None,
        };
        for (l, p) in self.params.iter().enumerate() {
            let zoneout = self.zoneout.as_ref().map(|z| Zoneout {
                h: z.rates.0,
                c: z.rates.1,
                seed: zone_seed.map(|s| layer_seed(s, l)),
            });
            let recurrent_dropout = drop.map(|(p, s)| RecurrentDropout {
                p,
                seed: layer_seed(s, l),
            });
            let i = self.layer_input(l);
            let w_ih = cast::to(rec, &p.w_ih, act)?;
            let w_hh = cast::to(rec, &p.w_hh, act)?;
            let xw = rec.empty(&[d, b, t, g], act)?;
            rec.phase("input GEMM");
            // xw[d] = x · W_ih[d]ᵀ for all steps at once.
            gemm::forward_view(
                rec,
                View {
                    batch_stride: b * t * g,
                    ..View::matrix(&xw, b * t, g, false)
                },
                View::matrix(&input, b * t, i, false),
                View::matrix(&w_ih, g, i, true).t(),
                None,
                d,
                1.0,
                0.0,
            )?;
            let hs = rec.empty(&[d, t + 1, b, sw], act)?;
            // With a projection the cell writes its outputs here, the projection
            // hs; the first slots are zero so that carried values stay finite.
            let hf = p
                .w_hr
                .as_ref()
                .map(|_| -> Result<Tensor> {
                    let hf = rec.empty(&[d, t + 1, b, h], DType::F32)?;
                    for dir in 0..d {
                        let slot = slot_offset(geo, dir, if dir == 0 { 0 } else { t });
                        rec.zero_range(&hf, slot, b * h)?;
                    }
                    Ok(hf)
                })
                .transpose()?;
            let cs = lstm
                .then(|| rec.empty(&[d, t + 1, b, h], DType::F32))
                .transpose()?;
            let acts = (cell.saves(zoneout.is_some()) && p.ln.is_none())
                .then(|| rec.empty(&[d, t, b, 4 * h], act))
                .transpose()?;
            let ln =
                p.ln.as_ref()
                    .map(|ln| layer_norm_state(rec, p, ln, geo, &xw))
                    .transpose()?;
            let y = rec.empty(&[b, t, d * sw], act)?;
            let gh = rec.empty(&[d, b, g], act)?;
            for dir in 0..d {
                let first = if dir == 0 { 0 } else { t };
                let src = (l * d + dir) * b;
                set_state(
                    rec,
                    &hs,
                    slot_offset(geo_s, dir, first),
                    h0,
                    src * sw,
                    b * sw,
                )?;
                if let Some(cs) = &cs {
                    set_state(rec, cs, slot_offset(geo, dir, first), c0, src * h, b * h)?;
                }
            }
            let io = ForwardIo {
                lengths: &lengths_t,
                xw: &xw,
                gh: &gh,
                b_ih: &p.b_ih,
                b_hh: &p.b_hh,
                hs: hf.as_ref().unwrap_or(&hs),
                cs: cs.as_ref(),
                acts: acts.as_ref(),
                zoneout,
                recurrent_dropout,
            };
            match (&hf, &p.w_hr) {
                _ if ln.is_some() => {
                    forward_steps_layer_norm(rec, geo, &io, &w_hh, ln.as_ref())?;
                }
                (Some(hf), Some(w_hr)) => {
                    forward_steps_projected(rec, &cell, geo, &io, &w_hh, &hs, sw, hf, w_hr)?
                }
                _ if recurrence::persistent_steps(rec, b, h, act) => {
                    rec.phase("recurrent step");
                    recurrence::forward_persistent(rec, &cell, geo, &io, &w_hh)?;
                }
                _ if recurrence::fused_steps(rec, b, h, act) => {
                    for s in 0..t {
                        rec.phase("recurrent step");
                        recurrence::forward_fused(rec, &cell, geo, s, &io, &w_hh)?;
                    }
                }
                _ => forward_steps(rec, &cell, geo, &io, &w_hh)?,
            }
            recurrence::outputs(rec, &cell, geo_s, &lengths_t, &hs, &y)?;
            for dir in 0..d {
                let last = if dir == 0 { t } else { 0 };
                let dst = (l * d + dir) * b;
                cast::copy_range(
                    rec,
                    &h_n,
                    dst * sw,
                    &hs,
                    slot_offset(geo_s, dir, last),
                    b * sw,
                )?;
                if let (Some(c_n), Some(cs)) = (&c_n, &cs) {
                    rec.copy_range(c_n, dst * h, cs, slot_offset(geo, dir, last), b * h)?;
                }
            }
            layers.push(LayerSaved {
                input,
                w_ih,
                w_hh,
                hs,
                hf,
                cs,
                acts,
                zoneout,
                recurrent_dropout,
                ln,
            });
            input = y;
            if let (Some(dropout), true) = (&self.dropout, l + 1 < cfg.num_layers) {
                let (dropped, mask) = match draws.as_deref_mut() {
                    Some(d) => dropout.forward_drawn(rec, &input, true, d)?,
                    None => dropout.forward(rec, &input, false)?,
                };
                input = dropped;
                masks.push(mask);
            }
        }
        rec.phase(outer);
        Ok((
            Output {
                y: input,
                state: State::of(h_n, c_n),
            },
            Saved {
                geo,
                width: sw,
                lengths: lengths_t,
                layers,
                masks,
            },
        ))
    }

    /// [`forward`](Self::forward) on a tape, which records the backward: the
    /// gradient flows to `x` and the initial states where they need one, and the
    /// parameter gradients get theirs added.
    pub fn apply(
        &self,
        tape: &mut Tape,
        x: &Var,
        lengths: &[usize],
        state: Option<&State<Var>>,
    ) -> Result<Sequence> {
        let (h0, c0) = self.split("state", state)?;
        let train = tape.is_training();
        let (rec, mut draws) = tape.rec_and_draws();
        let (out, saved) = self.forward_impl(
            rec,
            x,
            lengths,
            h0.map(Var::tensor),
            c0.map(Var::tensor),
            train.then_some(&mut draws),
        )?;
        let need_dx = tape.needs_grad(x);
        let mut inputs = vec![x];
        inputs.extend(h0);
        inputs.extend(c0);
        let states = (h0.is_some(), c0.is_some());
        let mut outputs = vec![out.y, out.state.h().clone()];
        outputs.extend(out.state.c().cloned());
        let layer = self.clone();
        let mut vars = tape
            .record(&inputs, outputs, true, move |rec, d| {
                let mut d = d.into_iter();
                let (dy, dh_n, dc_n) = (d.next().flatten(), d.next().flatten(), d.next().flatten());
                let dy = match dy {
                    Some(dy) => dy,
                    // Only the final states feed the loss.
                    None => Tensor::zeros(rec.context(), &saved.output_shape())?,
                };
                let (dx, grads) =
                    layer.backward_impl(rec, &saved, &dy, dh_n.as_ref(), dc_n.as_ref(), need_dx)?;
                let mut dins = vec![need_dx.then_some(dx)];
                if states.0 {
                    dins.push(Some(grads.h().clone()));
                }
                if states.1 {
                    dins.push(grads.c().cloned());
                }
                Ok(dins)
            })
            .into_iter();
        let (y, h_n) = (vars.next(), vars.next());
        match (y, h_n) {
            (Some(y), Some(h_n)) => Ok(Sequence {
                y,
                state: State::of(h_n, vars.next()),
            }),
            _ => unreachable!("record returns one value per output"),
        }
    }

    /// Records the backward pass of a [`forward`](Self::forward) given the
    /// gradients of its outputs: `dy` `[B, T, D·S]` (values past a sequence's
    /// length are ignored) and that of the final state, `d_state` (zero when
    /// `None`). Adds the parameter gradients to
    /// [`layer_grads`](Self::layer_grads) and returns the gradients of the inputs.
    pub fn backward(
        &self,
        rec: &mut Recorder,
        saved: &Saved,
        dy: &Tensor,
        d_state: Option<&State<Tensor>>,
    ) -> Result<InputGrads> {
        let (dh_n, dc_n) = self.split("d_state", d_state)?;
        let (dx, state) = self.backward_impl(rec, saved, dy, dh_n, dc_n, true)?;
        Ok(InputGrads { dx, state })
    }

    /// [`backward`](Self::backward) for a stack whose input needs no gradient (data
    /// rather than the output of a layer that trains): the same parameter
    /// gradients and initial-state gradients, without the first layer's dx product
    /// (2·B·T·G·I flops and its operands' packing).
    pub fn backward_params(
        &self,
        rec: &mut Recorder,
        saved: &Saved,
        dy: &Tensor,
        d_state: Option<&State<Tensor>>,
    ) -> Result<State<Tensor>> {
        let (dh_n, dc_n) = self.split("d_state", d_state)?;
        Ok(self.backward_impl(rec, saved, dy, dh_n, dc_n, false)?.1)
    }

    /// The backward pass; returns the gradient of the stack's input when `want_dx`
    /// (else the gradient the first layer got, which the caller drops).
    fn backward_impl(
        &self,
        rec: &mut Recorder,
        saved: &Saved,
        dy: &Tensor,
        dh_n: Option<&Tensor>,
        dc_n: Option<&Tensor>,
        want_dx: bool,
    ) -> Result<(Tensor, State<Tensor>)> {
        let cfg = &self.cfg;
        let geo = saved.geo;
        let (b, t, h, d) = (geo.batch, geo.steps, geo.hidden, geo.dirs);
        if saved.layers.len() != cfg.num_layers || geo.hidden != cfg.hidden_size {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "saved activations",
                expected: "those of a forward of this layer stack".into(),
                got: vec![saved.layers.len(), geo.hidden],
            });
        }
        let sw = self.state_size();
        let state_shape = [cfg.num_layers * d, b, sw];
        let cell_shape = [cfg.num_layers * d, b, h];
        let lstm = self.mode == Mode::Lstm;
        check_state(rec, "dy", Some(dy), &[b, t, d * sw])?;
        check_state(rec, "dh_n", dh_n, &state_shape)?;
        check_state(rec, "dc_n", dc_n, &cell_shape)?;

        let outer = rec.phase("backward recurrence");
        let cell = self.mode.cell();
        let g = cell.gates * h;
        let dh0 = rec.empty(&state_shape, DType::F32)?;
        let dc0 = lstm
            .then(|| rec.empty(&cell_shape, DType::F32))
            .transpose()?;
        let mut d_out = dy.clone();
        for l in (0..cfg.num_layers).rev() {
            let (gr, sv) = (&self.grads[l], &saved.layers[l]);
            let i = self.layer_input(l);
            // The running gradient of the states the steps pass on (S wide).
            let dh = rec.empty(&[d, b, sw], DType::F32)?;
            let dc = lstm
                .then(|| rec.empty(&[d, b, h], DType::F32))
                .transpose()?;
            let at = l * d * b;
            set_state(rec, &dh, 0, dh_n, at * sw, d * b * sw)?;
            if let Some(dc) = &dc {
                set_state(rec, dc, 0, dc_n, at * h, d * b * h)?;
            }
            if let (Some(ln), Some(dc), Some(dc0)) = (&sv.ln, &dc, &dc0) {
                let dx = self.backward_layer_norm(rec, saved, l, ln, &d_out, &dh, dc, want_dx)?;
                rec.copy_range(&dh0, at * h, &dh, 0, d * b * h)?;
                rec.copy_range(dc0, at * h, dc, 0, d * b * h)?;
                if let Some(dx) = dx {
                    d_out = self.below_dropout(rec, saved, l, dx.reshape(&[b, t, i])?)?;
                }
                continue;
            }
            // With a projection the cell's backward reads the gradient of its
            // output from df (which the projection's backward writes), and no dy.
            let projected = match (&self.params[l].w_hr, &sv.hf) {
                (Some(w_hr), Some(hf)) => {
                    let df = rec.empty(&[d, b, h], DType::F32)?;
                    let no_dy = rec.empty(&[b, t, d * h], DType::F32)?;
                    rec.zero(&no_dy)?;
                    let gp = rec.empty(&[d, t, b, sw], DType::F32)?;
                    Some((w_hr.clone(), hf, df, no_dy, gp))
                }
                _ => None,
            };
            // Where dgi equals dgh (all but the GRU) and the input is f32, only
            // the time-major dgh is written, and the input's products read a
            // time-major copy of the input instead: [D, B, T, G] less.
            let time_major = cell.dgi_is_dgh && sv.input.dtype() == DType::F32;
            let dgi = (!time_major)
                .then(|| rec.empty(&[d, b, t, g], DType::F32))
                .transpose()?;
            let dgh = rec.empty(&[d, t, b, g], DType::F32)?;
            let io = BackwardIo {
                lengths: &saved.lengths,
                hs: projected.as_ref().map_or(&sv.hs, |p| p.1),
                cs: sv.cs.as_ref(),
                acts: sv.acts.as_ref(),
                dy: projected.as_ref().map_or(&d_out, |p| &p.3),
                dh: projected.as_ref().map_or(&dh, |p| &p.2),
                dc: dc.as_ref(),
                dgi: dgi.as_ref(),
                dgh: &dgh,
                zoneout: sv.zoneout,
                recurrent_dropout: None,
            };
            rec.phase("backward recurrence");
            let w_hh = gemm::pack_b(rec, View::matrix(&sv.w_hh, g, sw, true), d, b)?;
            // dgh of step s: direction 1's step sits (2T − 1 − 2s) steps after
            // direction 0's.
            let dgh_at = |s: usize| View {
                offset: s * b * g,
                batch_stride: (2 * t - 1 - 2 * s) * b * g,
                ..View::matrix(&dgh, b, g, false)
            };
            // dh[d] += dgh[d, t_d] · W_hh[d], through recurrent dropout's masks
            // where the forward had them.
            let dropout = sv.recurrent_dropout;
            let dh_rec = dropout
                .map(|_| rec.empty(&[d, b, sw], DType::F32))
                .transpose()?;
            let state_product = |rec: &mut Recorder, dgh_s: &gemm::PackedA| match (dropout, &dh_rec)
            {
                (Some(dropout), Some(dh_rec)) => {
                    let out = View::matrix(dh_rec, b, sw, true);
                    gemm::forward_packed(rec, out, dgh_s, &w_hh, None, d, 1.0, 0.0)?;
                    recurrence::add_masked(rec, &cell, geo, &saved.lengths, &dh, dh_rec, dropout)
                }
                _ => {
                    let dh = View::matrix(&dh, b, sw, true);
                    gemm::forward_packed(rec, dh, dgh_s, &w_hh, None, d, 1.0, 1.0)
                }
            };
            let persistent = recurrence::persistent_steps(rec, b, h, sv.w_hh.dtype());
            if projected.is_none()
                && (persistent || recurrence::fused_steps(rec, b, h, sv.w_hh.dtype()))
            {
                // Each step adds the product of the step before; the last is left.
                let io = BackwardIo {
                    recurrent_dropout: dropout,
                    ..io
                };
                if persistent {
                    recurrence::backward_persistent(rec, &cell, geo, &io, &sv.w_hh)?;
                } else {
                    for s in (0..t).rev() {
                        recurrence::backward_fused(rec, &cell, geo, s, &io, &sv.w_hh)?;
                    }
                }
                let dgh_0 = gemm::pack_a(rec, dgh_at(0), d, sw)?;
                state_product(rec, &dgh_0)?;
            } else {
                // One texture serves every step's dgh: each pack is ordered after
                // the product that read the last one.
                let mut packed: Option<gemm::PackedA> = None;
                for s in (0..t).rev() {
                    if let Some((w_hr, _, df, _, gp)) = &projected {
                        projection::backward(
                            rec,
                            geo,
                            sw,
                            s,
                            &saved.lengths,
                            w_hr,
                            &dh,
                            &d_out,
                            df,
                            gp,
                        )?;
                    }
                    recurrence::backward(rec, &cell, geo, s, &io)?;
                    let dgh_s = match packed.take() {
                        Some(last) => last.reuse(rec, dgh_at(s), sw, true)?,
                        None => gemm::pack_a(rec, dgh_at(s), d, sw)?,
                    };
                    state_product(rec, &dgh_s)?;
                    packed = Some(dgh_s);
                }
            }
            rec.copy_range(&dh0, at * sw, &dh, 0, d * b * sw)?;
            if let (Some(dc0), Some(dc)) = (&dc0, &dc) {
                rec.copy_range(dc0, at * h, dc, 0, d * b * h)?;
            }
            if let (Some((_, hf, _, _, gp)), Some(dw_hr)) = (&projected, &gr.w_hr) {
                rec.phase("weight-gradient GEMMs");
                // dW_hr[d] += g[d]ᵀ · hf over all (t, b): the cell outputs of step t
                // sit in slot t + 1 (direction 0) or t (direction 1).
                gemm::forward_view(
                    rec,
                    View::matrix(dw_hr, sw, h, true),
                    View::matrix(gp, t * b, sw, true).t(),
                    View {
                        offset: b * h,
                        batch_stride: t * b * h,
                        ..View::matrix(hf, t * b, h, false)
                    },
                    None,
                    d,
                    1.0,
                    1.0,
                )?;
            }
            rec.phase("weight-gradient GEMMs");
            // The states the recurrent products read: masked with recurrent dropout.
            let hs_read = match dropout {
                Some(dropout) => {
                    let masked = rec.empty(sv.hs.shape(), sv.hs.dtype())?;
                    recurrence::mask_history(
                        rec,
                        &cell,
                        geo,
                        &saved.lengths,
                        &sv.hs,
                        &masked,
                        dropout,
                    )?;
                    masked
                }
                None => sv.hs.clone(),
            };
            // dW_hh[d] += dgh[d]ᵀ · h_prev[d] over all (t, b): direction 0's
            // previous states are slots 0..T, direction 1's slots 1..=T.
            gemm::forward_view(
                rec,
                View::matrix(&gr.w_hh, g, sw, true),
                View::matrix(&dgh, t * b, g, true).t(),
                View {
                    batch_stride: (t + 2) * b * sw,
                    ..View::matrix(&hs_read, t * b, sw, false)
                },
                None,
                d,
                1.0,
                1.0,
            )?;
            // The input gradient and its rows' order: dgi's (b, t), or dgh's (t, b)
            // with the input transposed to match.
            let (dg, x) = match &dgi {
                Some(dgi) => (dgi, sv.input.clone()),
                None => (&dgh, elementwise::transpose(rec, &sv.input, [1, b, t, i])?),
            };
            rec.phase("weight-gradient GEMMs");
            // One bias sum per direction serves both biases, except for the GRU.
            let db = (self.mode != Mode::Gru)
                .then(|| rec.empty(&[g], DType::F32))
                .transpose()?;
            for dir in 0..d {
                let bias = |tensor| BiasView {
                    tensor,
                    offset: dir * g,
                    stride: 1,
                };
                let rows = |tensor, offset| View {
                    offset,
                    ..View::matrix(tensor, b * t, g, false)
                };
                if let Some(db) = &db {
                    // dgi and dgh hold the same values: one sum serves both biases.
                    gemm::bias_grad(rec, db.into(), rows(dg, dir * b * t * g), 1, 1.0, 0.0)?;
                    elementwise::add(rec, &gr.b_ih, dir * g, db, 0, g)?;
                    elementwise::add(rec, &gr.b_hh, dir * g, db, 0, g)?;
                } else {
                    // The GRU's n gate scales its recurrent part by r: dgh differs.
                    for (db, grads, offset) in [
                        (&gr.b_ih, dg, dir * b * t * g),
                        (&gr.b_hh, &dgh, dir * t * b * g),
                    ] {
                        gemm::bias_grad(rec, bias(db), rows(grads, offset), 1, 1.0, 1.0)?;
                    }
                }
            }
            // Layer 0's dx is the stack's input gradient: made only when wanted.
            let dx = input_grads(rec, geo, &sv.w_ih, &gr.w_ih, dg, &x, want_dx || l > 0)?;
            if let Some(dx) = dx {
                let dx = match dgi {
                    Some(_) => dx.reshape(&[b, t, i])?,
                    // Back from (t, b) rows to [B, T, I].
                    None => elementwise::transpose(rec, &dx, [1, t, b, i])?.reshape(&[b, t, i])?,
                };
                d_out = self.below_dropout(rec, saved, l, dx)?;
            }
        }
        rec.phase(outer);
        Ok((d_out, State::of(dh0, dc0)))
    }

    /// `dx`, the gradient of layer `l`'s input, through the dropout on the output
    /// of the layer below (itself for layer 0 or without dropout).
    fn below_dropout(
        &self,
        rec: &mut Recorder,
        saved: &Saved,
        l: usize,
        dx: Tensor,
    ) -> Result<Tensor> {
        let mask = l.checked_sub(1).and_then(|below| saved.masks.get(below));
        match (&self.dropout, mask) {
            (Some(dropout), Some(&mask)) => dropout.backward(rec, &dx, mask),
            _ => Ok(dx),
        }
    }

    /// The backward of LayerNorm-LSTM layer `l`: per step (in reverse) its cell
    /// and the product dh += (gradient of h'·W_hhᵀ) · W_hh, then every parameter
    /// gradient; returns the layer input's gradient `[B·T, I]` where wanted (layer
    /// 0's when `want_dx`, every other layer's). `dh` and `dc` hold the running
    /// gradients of its last states and are left with those of its first.
    #[allow(clippy::too_many_arguments)]
    fn backward_layer_norm(
        &self,
        rec: &mut Recorder,
        saved: &Saved,
        l: usize,
        ln: &LayerNormSaved,
        dy: &Tensor,
        dh: &Tensor,
        dc: &Tensor,
        want_dx: bool,
    ) -> Result<Option<Tensor>> {
        let geo = saved.geo;
        let (b, t, h, d) = (geo.batch, geo.steps, geo.hidden, geo.dirs);
        let (g, r) = (4 * h, layer_norm_lstm::grads_width(h));
        let (gr, sv) = (&self.grads[l], &saved.layers[l]);
        let (Some(cs), Some(lg)) = (&sv.cs, &gr.ln) else {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "saved activations",
                expected: "a LayerNorm-LSTM's".into(),
                got: vec![],
            });
        };
        let grads = rec.empty(&[d, t, b, r], DType::F32)?;
        let io = layer_norm_lstm::BackwardIo {
            lengths: &saved.lengths,
            lnp: &ln.lnp,
            cs,
            saved: &ln.saved,
            dy,
            dh,
            dc,
            grads: &grads,
            zoneout: sv.zoneout,
        };
        rec.phase("backward recurrence");
        let w_hh = gemm::pack_b(rec, View::matrix(&sv.w_hh, g, h, true), d, b)?;
        // The gradients of the recurrent products: the first G of each row of
        // grads, whose rows are (t, b) per direction.
        let dgh = |offset, rows, batch_stride| View {
            offset,
            rows,
            row_stride: r,
            batch_stride,
            ..View::matrix(&grads, rows, g, false)
        };
        for s in (0..t).rev() {
            layer_norm_lstm::backward(rec, geo, s, &io)?;
            // Direction 1's step s sits (2T − 1 − 2s) rows after direction 0's.
            let dgh_s = dgh(s * b * r, b, (2 * t - 1 - 2 * s) * b * r);
            let dgh_s = gemm::pack_a(rec, dgh_s, d, h)?;
            let out = View::matrix(dh, b, h, true);
            gemm::forward_packed(rec, out, &dgh_s, &w_hh, None, d, 1.0, 1.0)?;
        }
        rec.phase("weight-gradient GEMMs");
        // dW_hh[d] += dgh[d]ᵀ · h_prev[d], as for the other cells.
        gemm::forward_view(
            rec,
            View::matrix(&gr.w_hh, g, h, true),
            dgh(0, t * b, t * b * r).t(),
            View {
                batch_stride: (t + 2) * b * h,
                ..View::matrix(&sv.hs, t * b, h, false)
            },
            None,
            d,
            1.0,
            1.0,
        )?;
        let dgi = rec.empty(&[d, b, t, g], DType::F32)?;
        layer_norm_lstm::input_backward(rec, geo, &io, &ln.xw, &dgi)?;
        let width = layer_norm_lstm::dlnp_width(h);
        let dlnp = rec.empty(&[d, width], DType::F32)?;
        layer_norm_lstm::param_grads(rec, geo, &io, &ln.xw, &dlnp)?;
        for dir in 0..d {
            for (dst, at, n) in [
                (&lg.ih, 0, g),
                (&lg.hh, g, g),
                (&gr.b_ih, 2 * g, g),
                (&gr.b_hh, 2 * g, g),
                (&lg.c_weight, 3 * g, h),
                (&lg.c_bias, 3 * g + h, h),
            ] {
                elementwise::add(rec, dst, dir * n, &dlnp, dir * width + at, n)?;
            }
        }
        input_grads(
            rec,
            geo,
            &sv.w_ih,
            &gr.w_ih,
            &dgi,
            &sv.input,
            want_dx || l > 0,
        )
    }

    /// Checks `x` and `lengths` against this stack and returns the step geometry.
    fn check_input(&self, rec: &Recorder, x: &Tensor, lengths: &[usize]) -> Result<Geometry> {
        let cfg = &self.cfg;
        rec.check_same_device(OP, &[x, &self.params[0].w_ih])?;
        if x.dtype() == DType::U32 {
            return Err(Error::DType {
                op: OP,
                what: "x",
                expected: self.storage,
                got: x.dtype(),
            });
        }
        let &[b, t, i] = x.shape() else {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "x",
                expected: format!("[B, T, {}]", cfg.input_size),
                got: x.shape().to_vec(),
            });
        };
        if i != cfg.input_size {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "x",
                expected: format!("[B, T, {}]", cfg.input_size),
                got: x.shape().to_vec(),
            });
        }
        if b == 0 || t == 0 {
            return Err(Error::Empty {
                op: OP,
                what: "x [B, T, I]",
                shape: x.shape().to_vec(),
            });
        }
        crate::ops::check_lengths(OP, "lengths", lengths, b, t)?;
        Ok(Geometry {
            batch: b,
            steps: t,
            hidden: cfg.hidden_size,
            dirs: cfg.dirs(),
        })
    }
}

impl Module for Recurrent {
    /// Every layer's stacked tensors, each under its PyTorch names per direction
    /// (`weight_ih_l0`, `bias_hh_l1_reverse`, ...).
    fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for (l, (p, g)) in self.params.iter().zip(&self.grads).enumerate() {
            for ((name, value), (_, grad)) in p.named().into_iter().zip(g.named()) {
                out.push(Entry {
                    param: Param {
                        value: value.clone(),
                        grad: grad.clone(),
                    },
                    names: self.direction_names(name, l, value),
                });
            }
        }
        out
    }
}

/// PyTorch's shapes of layer `l`'s stacked w_ih, w_hh, b_ih, b_hh, with a
/// projection to `proj` values (0: none).
fn layer_shapes(mode: Mode, cfg: &Config, proj: usize, l: usize) -> [Vec<usize>; 4] {
    let (d, g) = (cfg.dirs(), mode.gates() * cfg.hidden_size);
    let state = if proj > 0 { proj } else { cfg.hidden_size };
    let input = if l == 0 { cfg.input_size } else { d * state };
    [vec![d, g, input], vec![d, g, state], vec![d, g], vec![d, g]]
}

/// Element offset of `slot` of direction `dir` in a `[D, T + 1, B, H]` state history.
fn slot_offset(geo: Geometry, dir: usize, slot: usize) -> usize {
    (dir * (geo.steps + 1) + slot) * geo.batch * geo.hidden
}

/// Records `dst[at..at + len] = src[from..from + len]`, or zeros without `src`.
fn set_state(
    rec: &mut Recorder,
    dst: &Tensor,
    at: usize,
    src: Option<&Tensor>,
    from: usize,
    len: usize,
) -> Result<()> {
    match src {
        Some(src) => cast::copy_range(rec, dst, at, src, from, len),
        None => cast::zero_range(rec, dst, at, len),
    }
}

/// Checks an optional state-like tensor: f32 of `shape` on the recorder's device.
fn check_state(
    rec: &Recorder,
    what: &'static str,
    t: Option<&Tensor>,
    shape: &[usize],
) -> Result<()> {
    let Some(t) = t else { return Ok(()) };
    rec.check_same_device(OP, &[t])?;
    if t.dtype() != DType::F32 {
        return Err(Error::DType {
            op: OP,
            what,
            expected: DType::F32,
            got: t.dtype(),
        });
    }
    if t.shape() != shape {
        return Err(Error::ShapeMismatch {
            op: OP,
            what,
            expected: format!("{shape:?}"),
            got: t.shape().to_vec(),
        });
    }
    Ok(())
}

/// The states step `s` reads from a `[D, T + 1, B, width]` history, as a batch
/// of D `[B, width]` matrices: direction 1's sit (2T + 1 − 2s) states after
/// direction 0's.
fn states_before(hs: &Tensor, geo: Geometry, width: usize, s: usize) -> View<'_> {
    let (b, t) = (geo.batch, geo.steps);
    View {
        offset: s * b * width,
        batch_stride: (2 * t + 1 - 2 * s) * b * width,
        ..View::matrix(hs, b, width, false)
    }
}

/// Records a step's recurrent product gh[d] = h_prev[d] · W_hh[d]ᵀ (`[D, B,
/// G]`), `w_hh_t` packed as `[D]` matrices `[S, G]`.
fn recurrent_product(
    rec: &mut Recorder,
    gh: &Tensor,
    h_prev: &gemm::PackedA,
    w_hh_t: &gemm::PackedB,
    geo: Geometry,
    g: usize,
) -> Result<()> {
    let out = View::matrix(gh, geo.batch, g, true);
    gemm::forward_packed(rec, out, h_prev, w_hh_t, None, geo.dirs, 1.0, 0.0)
}

/// The forward steps of one layer as a recurrent GEMM and the cell each, the
/// GEMM reading packed states where the adapter packs: the cell then writes the
/// next step's states into the texture as well. With recurrent dropout the GEMM
/// reads each step's masked states instead.
fn forward_steps(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    io: &ForwardIo,
    w_hh: &Tensor,
) -> Result<()> {
    let (b, t, h, d) = (geo.batch, geo.steps, geo.hidden, geo.dirs);
    let g = cell.gates * h;
    let (gh, hs) = (io.gh, io.hs);
    rec.phase("recurrent step");
    let w_hh_t = gemm::pack_b(rec, View::matrix(w_hh, g, h, true).t(), d, b)?;
    if let Some(dropout) = io.recurrent_dropout {
        let io = ForwardIo {
            recurrent_dropout: None,
            ..*io
        };
        let masked = rec.empty(&[d, b, h], hs.dtype())?;
        for s in 0..t {
            rec.phase("recurrent step");
            recurrence::mask_states(rec, cell, geo, s, &io, &masked, dropout)?;
            let masked = View {
                batch_stride: b * h,
                ..View::matrix(&masked, b, h, false)
            };
            let h_prev = gemm::pack_a(rec, masked, d, g)?;
            recurrent_product(rec, gh, &h_prev, &w_hh_t, geo, g)?;
            rec.phase("cell");
            recurrence::forward(rec, cell, geo, s, &io, None)?;
        }
        return Ok(());
    }
    packed_steps(rec, geo, (hs, gh, g), &w_hh_t, |rec, s, target| {
        recurrence::forward(rec, cell, geo, s, io, target)
    })
}

/// Each step's recurrent product (`gh` from the states of `hs`, G = `g` wide)
/// and then `cell(rec, step, target)`, which where the GEMM reads packed states
/// also writes the next step's states into `target` (a texture).
fn packed_steps(
    rec: &mut Recorder,
    geo: Geometry,
    (hs, gh, g): (&Tensor, &Tensor, usize),
    w_hh_t: &gemm::PackedB,
    mut cell: impl FnMut(&mut Recorder, usize, Option<&wgpu::TextureView>) -> Result<()>,
) -> Result<()> {
    let (t, h, d) = (geo.steps, geo.hidden, geo.dirs);
    let before = |s: usize| states_before(hs, geo, h, s);
    let mut h_prev = gemm::pack_a(rec, before(0), d, g)?;
    // The texture h_prev replaced, free once its product is recorded: the
    // steps alternate two textures.
    let mut spare: Option<gemm::PackedA> = None;
    for s in 0..t {
        rec.phase("recurrent step");
        recurrent_product(rec, gh, &h_prev, w_hh_t, geo, g)?;
        rec.phase("cell");
        let next = match (s + 1 < t, spare.take()) {
            (false, _) => None,
            (true, Some(old)) => Some(old.reuse(rec, before(s + 1), g, false)?),
            (true, None) => Some(gemm::pack_a_target(rec, before(s + 1), d, g)?),
        };
        cell(rec, s, next.as_ref().and_then(|n| n.texture()))?;
        if let Some(next) = next {
            spare = Some(std::mem::replace(&mut h_prev, next));
        }
    }
    Ok(())
}

/// Records a layer's input products from `dg` `[D, N, G]`, the gradients of its
/// input projections in the row order of `x` `[N, I]` (N = B·T): dW_ih[d] +=
/// dg[d]ᵀ · x, and when `want_dx` returns dx = Σ_d dg[d] · W_ih[d] in that order.
fn input_grads(
    rec: &mut Recorder,
    geo: Geometry,
    w_ih: &Tensor,
    dw_ih: &Tensor,
    dg: &Tensor,
    x: &Tensor,
    want_dx: bool,
) -> Result<Option<Tensor>> {
    let [d, g, i] = w_ih.shape() else {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "weight_ih",
            expected: "[D, G, I]".into(),
            got: w_ih.shape().to_vec(),
        });
    };
    let (d, g, i, n) = (*d, *g, *i, geo.batch * geo.steps);
    rec.phase("weight-gradient GEMMs");
    gemm::forward_view(
        rec,
        View::matrix(dw_ih, g, i, true),
        View::matrix(dg, n, g, true).t(),
        View::matrix(x, n, i, false),
        None,
        d,
        1.0,
        1.0,
    )?;
    if !want_dx {
        return Ok(None);
    }
    rec.phase("input GEMM");
    let dx = rec.empty(&[n, i], DType::F32)?;
    for dir in 0..d {
        gemm::forward_view(
            rec,
            View::matrix(&dx, n, i, false),
            View {
                offset: dir * n * g,
                ..View::matrix(dg, n, g, false)
            },
            View {
                offset: dir * g * i,
                ..View::matrix(w_ih, g, i, false)
            },
            None,
            1,
            1.0,
            if dir == 0 { 0.0 } else { 1.0 },
        )?;
    }
    Ok(Some(dx))
}

/// A LayerNorm-LSTM layer's forward state: `xw` and the parameters its steps
/// read, with room for what they save.
fn layer_norm_state(
    rec: &mut Recorder,
    p: &LayerTensors,
    ln: &LayerNorms,
    geo: Geometry,
    xw: &Tensor,
) -> Result<LayerNormSaved> {
    let (b, t, h, d) = (geo.batch, geo.steps, geo.hidden, geo.dirs);
    let lnp = layer_norm_params(rec, p, ln, h, d)?;
    let saved = rec.empty(&[d, t, b, layer_norm_lstm::saved_width(h)], DType::F32)?;
    Ok(LayerNormSaved {
        xw: xw.clone(),
        lnp,
        saved,
    })
}

/// The parameters a LayerNorm-LSTM layer's steps read, `[D, 18H]` (see
/// `ops::layer_norm_lstm`), copied from the layer's.
pub(crate) fn layer_norm_params(
    rec: &mut Recorder,
    p: &LayerTensors,
    ln: &LayerNorms,
    h: usize,
    d: usize,
) -> Result<Tensor> {
    let width = layer_norm_lstm::lnp_width(h);
    let lnp = rec.empty(&[d, width], DType::F32)?;
    for dir in 0..d {
        let mut at = dir * width;
        for (src, n) in [
            (&ln.ih, 4 * h),
            (&ln.hh, 4 * h),
            (&p.b_ih, 4 * h),
            (&p.b_hh, 4 * h),
            (&ln.c_weight, h),
            (&ln.c_bias, h),
        ] {
            rec.copy_range(&lnp, at, src, dir * n, n)?;
            at += n;
        }
    }
    Ok(lnp)
}

/// The forward steps of a LayerNorm-LSTM layer: per step the recurrent GEMM and
/// the normalizing cell.
fn forward_steps_layer_norm(
    rec: &mut Recorder,
    geo: Geometry,
    io: &ForwardIo,
    w_hh: &Tensor,
    ln: Option<&LayerNormSaved>,
) -> Result<()> {
    let (Some(ln), Some(cs)) = (ln, io.cs) else {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "cs",
            expected: "a LayerNorm-LSTM's cell states".into(),
            got: vec![],
        });
    };
    let (b, h, d) = (geo.batch, geo.hidden, geo.dirs);
    let g = 4 * h;
    rec.phase("recurrent step");
    let w_hh_t = gemm::pack_b(rec, View::matrix(w_hh, g, h, true).t(), d, b)?;
    let lio = layer_norm_lstm::ForwardIo {
        lengths: io.lengths,
        xw: io.xw,
        gh: io.gh,
        lnp: &ln.lnp,
        hs: io.hs,
        cs,
        saved: &ln.saved,
        zoneout: io.zoneout,
    };
    packed_steps(rec, geo, (io.hs, io.gh, g), &w_hh_t, |rec, s, target| {
        layer_norm_lstm::forward(rec, geo, s, layer_norm_lstm::EPS, &lio, target)
    })
}

/// The forward steps of a projected LSTM layer: per step the recurrent GEMM from
/// the projected states `hp` (`[D, T + 1, B, P]`), the cell (writing its outputs
/// into `io.hs`, `hf`) and the projection into `hp`'s next slot.
#[allow(clippy::too_many_arguments)]
fn forward_steps_projected(
    rec: &mut Recorder,
    cell: &Cell,
    geo: Geometry,
    io: &ForwardIo,
    w_hh: &Tensor,
    hp: &Tensor,
    proj: usize,
    hf: &Tensor,
    w_hr: &Tensor,
) -> Result<()> {
    let (b, t, h, d) = (geo.batch, geo.steps, geo.hidden, geo.dirs);
    let g = cell.gates * h;
    for s in 0..t {
        rec.phase("recurrent step");
        // gh[d] = hp_prev[d] · W_hh[d]ᵀ
        gemm::forward_view(
            rec,
            View::matrix(io.gh, b, g, true),
            states_before(hp, geo, proj, s),
            View::matrix(w_hh, g, proj, true).t(),
            None,
            d,
            1.0,
            0.0,
        )?;
        rec.phase("cell");
        recurrence::forward(rec, cell, geo, s, io, None)?;
        projection::forward(rec, geo, proj, s, io.lengths, hf, hp, w_hr)?;
    }
    Ok(())
}
