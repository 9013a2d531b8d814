//! minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): recurrent
//! layers whose gates read the input only, so that a layer is one GEMM for all
//! steps and one scan over time (`ops::min_rnn`), trained in parallel over T
//! instead of a dispatch per step.
//!
//! minGRU: z_t = σ(W_z x_t + b_z), h̃_t = W_h x_t + b_h,
//! h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t. minLSTM: f_t, i_t = σ(..), h̃_t as
//! above, h_t = f_t/(f_t + i_t) ⊙ h_{t−1} + i_t/(f_t + i_t) ⊙ h̃_t.
//!
//! Stacked and bidirectional as the other layers (layer l > 0 reads the
//! directions side by side), per-sequence lengths (the state carries past each,
//! outputs 0 there), an initial state, dropout between layers. Parameter names
//! follow torch.nn.GRU's: `weight_ih_l{l}` `[G·H, I_l]` and `bias_ih_l{l}`
//! `[G·H]`, `_reverse` for the second direction, gate blocks in the order z, h̃
//! (minGRU) or f, i, h̃ (minLSTM).
//!
//! Storage (`with_storage`): with f16, each forward rounds the weights to f16
//! once and stores the pre-activations and the outputs as f16, which halves
//! the bytes the GEMM and the scan move; the scan runs in f32, and the
//! parameters, their gradients, h0, h_n and every gradient stay f32. `y` is
//! then f16.
//!
//! A bidirectional minGRU on a tape, over sequences of 300 and 120 steps:
//!
//! ```
//! use rnn_wgpu::nn::{Config, MinGru};
//! use rnn_wgpu::{Context, Result, Tape, Tensor, Var};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let gru = MinGru::new(&ctx, Config::new(8, 16).with_bidirectional(true), 1)?;
//!     let mut tape = Tape::train(&ctx, "scan");
//!     let x = Var::constant(Tensor::from_slice(&ctx, &[2, 300, 8], &[0.1; 2 * 300 * 8])?);
//!     let (y, state) = gru.apply(&mut tape, &x, &[300, 120], None)?;   // [B, T, 2H], [2, B, H]
//!     let loss = tape.mean(&y, 1, Some(&[300, 120]))?;
//!     let loss = tape.mean(&loss, 1, None)?;
//!     let loss = tape.mean(&loss, 0, None)?;
//!     tape.backward(&loss)?;
//!     tape.into_recorder().submit();
//!     assert_eq!(state.h.shape(), [2, 2, 16]);
//!     Ok(())
//! }
//! ```

use super::rnn::HiddenState;
use super::{Config, Dropout, Entry, Module, Named, Param, SplitMix, Stream};
use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::ops::cast;
use crate::ops::gemm::{self, BiasView, View};
use crate::ops::min_rnn::{self, MinCell, Shape};
use crate::ops::stream_step::{StepCell, Weights};
use crate::tape::{Tape, Var};
use crate::tensor::{DType, Tensor};

const OP: &str = "min_rnn";

/// One layer's parameters, both directions stacked: `[D, G·H, I]` and `[D, G·H]`.
#[derive(Clone, Debug)]
struct Layer {
    weight: Param,
    bias: Param,
}

/// A stack of minGRU or minLSTM layers ([`MinGru`], [`MinLstm`]).
#[derive(Clone, Debug)]
struct MinRnn {
    cell: MinCell,
    cfg: Config,
    layers: Vec<Layer>,
    /// Shared by clones, as its call counter must be.
    dropout: Option<std::sync::Arc<Dropout>>,
    /// How the pre-activations and outputs are stored.
    storage: DType,
}

impl MinRnn {
    fn new(ctx: &Context, cell: MinCell, cfg: Config, seed: u64) -> Result<Self> {
        let (h, l) = (cfg.hidden_size, cfg.num_layers);
        if cfg.input_size == 0 || h == 0 || l == 0 {
            return Err(Error::Empty {
                op: OP,
                what: "[input_size, hidden_size, num_layers]",
                shape: vec![cfg.input_size, h, l],
            });
        }
        let d = if cfg.bidirectional { 2 } else { 1 };
        let g = cell.gates() * h;
        let mut rng = SplitMix::new(seed);
        let layers = (0..l)
            .map(|layer| {
                let input = if layer == 0 { cfg.input_size } else { d * h };
                // nn.Linear's initialization: U(±1/√in) for weights and biases.
                let bound = 1.0 / (input as f32).sqrt();
                let weight =
                    Tensor::from_slice(ctx, &[d, g, input], &rng.uniform(d * g * input, bound))?;
                let bias = Tensor::from_slice(ctx, &[d, g], &rng.uniform(d * g, bound))?;
                Ok(Layer {
                    weight: Param::new(weight)?,
                    bias: Param::new(bias)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            cell,
            cfg,
            layers,
            dropout: None,
            storage: DType::F32,
        })
    }

    fn stream(&self, rec: &mut Recorder, batch: usize) -> Result<Stream> {
        if self.cfg.bidirectional {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "the stack",
                got: "bidirectional".into(),
                expected: "a unidirectional stack",
            });
        }
        let g = self.cell.gates() * self.cfg.hidden_size;
        let layers = self
            .layers
            .iter()
            .map(|layer| {
                // [b_ih; 0]: the step's bias layout, read as of now.
                let bias = rec.empty(&[2, g], DType::F32)?;
                rec.zero(&bias)?;
                rec.copy_range(&bias, 0, &layer.bias.value, 0, g)?;
                let w = &layer.weight.value;
                Ok(Weights {
                    cell: StepCell::Min(self.cell),
                    w_ih: w.reshape(&w.shape()[1..])?,
                    w_hh: None,
                    bias,
                    w_hr: None,
                    zoneout: [0.0; 2],
                    ln: None,
                })
            })
            .collect::<Result<_>>()?;
        Stream::new(rec, layers, batch)
    }

    fn dirs(&self) -> usize {
        if self.cfg.bidirectional {
            2
        } else {
            1
        }
    }

    fn apply(
        &self,
        tape: &mut Tape,
        x: &Var,
        lengths: &[usize],
        state: Option<&HiddenState>,
    ) -> Result<(Var, HiddenState)> {
        let &[b, t, i] = x.shape() else {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "x",
                expected: format!("[B, T, {}]", self.cfg.input_size),
                got: x.shape().to_vec(),
            });
        };
        if i != self.cfg.input_size || b == 0 || t == 0 {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "x",
                expected: format!("[B, T, {}] with B, T ≥ 1", self.cfg.input_size),
                got: x.shape().to_vec(),
            });
        }
        crate::ops::check_lengths(OP, "lengths", lengths, b, t)?;
        let (d, h, l) = (self.dirs(), self.cfg.hidden_size, self.layers.len());
        if let Some(s) = state {
            if s.h.shape() != [l * d, b, h] {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    what: "h0",
                    expected: format!("[{}, {b}, {h}]", l * d),
                    got: s.h.shape().to_vec(),
                });
            }
        }
        let lens: Vec<u32> = lengths.iter().map(|&n| n as u32).collect();
        let lens = Tensor::from_u32(tape.context(), &[b], &lens)?;
        let mut input = x.clone();
        let mut finals = Vec::with_capacity(l);
        for (k, layer) in self.layers.iter().enumerate() {
            if k > 0 {
                if let Some(dropout) = &self.dropout {
                    input = dropout.apply(tape, &input)?;
                }
            }
            let h0 = state.map(|s| tape.slice(&s.h, 0, k * d, d)).transpose()?;
            let shape = Shape {
                cell: self.cell,
                batch: b,
                steps: t,
                hidden: h,
                dirs: d,
            };
            let (y, hn) = record_layer(
                tape,
                layer,
                (shape, self.storage),
                &input,
                &lens,
                h0.as_ref(),
            )?;
            finals.push(hn);
            input = y;
        }
        let finals: Vec<&Var> = finals.iter().collect();
        let h_n = tape.cat(&finals, 0)?;
        Ok((input, HiddenState { h: h_n }))
    }

    fn entries(&self) -> Vec<Entry> {
        let d = self.dirs();
        let mut out = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            for (name, param) in [("weight_ih", &layer.weight), ("bias_ih", &layer.bias)] {
                let shape = param.value.shape()[1..].to_vec();
                let numel: usize = shape.iter().product();
                let names = (0..d)
                    .map(|dir| Named {
                        name: format!("{name}_l{l}{}", if dir == 1 { "_reverse" } else { "" }),
                        shape: shape.clone(),
                        tensor: param.value.clone(),
                        offset: dir * numel,
                    })
                    .collect();
                out.push(Entry {
                    param: param.clone(),
                    names,
                });
            }
        }
        out
    }
}

/// Records one layer, its activations stored as `storage`: the input GEMM for
/// every step and direction, then the scan; its backward the reverse scan, the
/// weight and bias gradients (one GEMM and one column sum over all steps) and dx.
fn record_layer(
    tape: &mut Tape,
    layer: &Layer,
    (shape, storage): (Shape, DType),
    x: &Var,
    lens: &Tensor,
    h0: Option<&Var>,
) -> Result<(Var, Var)> {
    let (b, t, d, h) = (shape.batch, shape.steps, shape.dirs, shape.hidden);
    let i = x.shape()[2];
    let width = d * shape.cell.gates() * h;
    let rec = tape.rec();
    let w = cast::to(rec, &layer.weight.value, storage)?;
    let pre = rec.empty(&[b, t, width], storage)?;
    gemm::forward_view(
        rec,
        View::matrix(&pre, b * t, width, false),
        View::matrix(x, b * t, i, false),
        View::matrix(&w, width, i, false).t(),
        Some(BiasView::from(&layer.bias.value)),
        1,
        1.0,
        0.0,
    )?;
    let h0t = h0.map(|v| v.tensor().clone());
    let (y, hn) = min_rnn::forward(rec, shape, &pre, lens, h0t.as_ref())?;
    let need_dx = tape.needs_grad(x);
    let (layer, xt, yt, lens) = (layer.clone(), x.tensor().clone(), y.clone(), lens.clone());
    let mut inputs = vec![x];
    inputs.extend(h0);
    let has_h0 = h0.is_some();
    let outs = tape.record(&inputs, vec![y, hn], true, move |rec, grads| {
        let mut grads = grads.into_iter();
        let (dy, dhn) = (grads.next().flatten(), grads.next().flatten());
        let dy = match dy {
            Some(dy) => dy,
            None => {
                let zeros = rec.empty(&[b, t, d * h], DType::F32)?;
                rec.zero(&zeros)?;
                zeros
            }
        };
        let (dpre, dh0) = min_rnn::backward(
            rec,
            shape,
            &pre,
            &lens,
            h0t.as_ref(),
            &yt,
            &dy,
            dhn.as_ref(),
        )?;
        let dpre_v = View::matrix(&dpre, b * t, width, false);
        // dW += dpreᵀ·x, db += Σ_rows dpre: every step and sequence at once.
        gemm::forward_view(
            rec,
            View::matrix(&layer.weight.grad, width, i, false),
            dpre_v.t(),
            View::matrix(&xt, b * t, i, false),
            None,
            1,
            1.0,
            1.0,
        )?;
        gemm::bias_grad(rec, (&layer.bias.grad).into(), dpre_v, 1, 1.0, 1.0)?;
        let dx = if need_dx {
            let dx = rec.empty(&[b, t, i], DType::F32)?;
            gemm::matmul(
                rec,
                View::matrix(&dx, b * t, i, false),
                dpre_v,
                View::matrix(&layer.weight.value, width, i, false),
            )?;
            Some(dx)
        } else {
            None
        };
        let mut out = vec![dx];
        if has_h0 {
            out.push(Some(dh0));
        }
        Ok(out)
    });
    let mut outs = outs.into_iter();
    match (outs.next(), outs.next()) {
        (Some(y), Some(hn)) => Ok((y, hn)),
        _ => Err(Error::Empty {
            op: OP,
            what: "outputs",
            shape: vec![],
        }),
    }
}

macro_rules! min_stack {
    ($name:ident, $cell:expr, $what:literal) => {
        #[doc = concat!("A stack of ", $what, " layers (see the module docs).")]
        #[derive(Clone, Debug)]
        pub struct $name(MinRnn);

        impl $name {
            /// A stack initialized as torch.nn.Linear initializes its layers'
            /// input maps, from `seed`.
            pub fn new(ctx: &Context, cfg: Config, seed: u64) -> Result<Self> {
                MinRnn::new(ctx, $cell, cfg, seed).map(Self)
            }

            /// The same stack with dropout `p` on each layer's output but the
            /// last, on training tapes.
            pub fn with_dropout(self, p: f32, seed: u32) -> Result<Self> {
                let mut stack = self.0;
                stack.dropout = super::dropout::between_layers(OP, p, seed)?;
                Ok(Self(stack))
            }

            /// The same stack with its activations stored as `dtype`: f32 (the
            /// default) or f16 (see the module docs), which needs SHADER_F16.
            pub fn with_storage(self, dtype: DType) -> Result<Self> {
                let mut stack = self.0;
                let ctx = stack.layers[0].weight.value.context().clone();
                stack.storage = super::check_storage(&ctx, dtype)?;
                Ok(Self(stack))
            }

            /// How activations are stored: f32 or f16.
            pub fn storage(&self) -> DType {
                self.0.storage
            }

            /// Records the stack over `x` `[B, T, I]` whose sequence `b` has
            /// `lengths[b]` real steps (1..=T), from `state` (`[L·D, B, H]`; zero
            /// when `None`): the top layer's outputs `[B, T, D·H]` (0 past each
            /// length) and the state after each sequence's last real step.
            pub fn apply(
                &self,
                tape: &mut Tape,
                x: &Var,
                lengths: &[usize],
                state: Option<&HiddenState>,
            ) -> Result<(Var, HiddenState)> {
                self.0.apply(tape, x, lengths, state)
            }

            /// The stack's sizes.
            pub fn config(&self) -> Config {
                self.0.cfg
            }

            /// A stream of `batch` sequences over this (unidirectional) stack
            /// from zero states: a token takes one dispatch per layer, the
            /// sequential form of the scan (see [`crate::nn::stream`]).
            pub fn stream(&self, rec: &mut Recorder, batch: usize) -> Result<Stream> {
                self.0.stream(rec, batch)
            }
        }

        impl Module for $name {
            fn entries(&self) -> Vec<Entry> {
                self.0.entries()
            }
        }
    };
}

min_stack!(MinGru, MinCell::Gru, "minGRU");
min_stack!(MinLstm, MinCell::Lstm, "minLSTM");
