//! A transformer encoder layer (torch.nn.TransformerEncoderLayer with
//! batch_first, ReLU, post-norm, no dropout): multi-head scaled dot-product
//! self-attention with a key padding mask from per-sequence lengths, then a
//! feed-forward block, each with a residual connection and layer norm:
//!   x₁ = LN₁(x + SelfAttention(x)),   y = LN₂(x₁ + W₂·relu(W₁·x₁ + b₁) + b₂)
//! Parameter names and shapes are PyTorch's (`self_attn.in_proj_weight`, ...).
//!
//! Each head runs the [`Attention`] layer's kernels (dot score, scale 1/√d_head)
//! on its query and key projections; the values, a separate projection, are
//! weighted with the attention weights by one batched GEMM per head that writes
//! the head's columns of the concatenated context. The attention layer's own
//! context (weights · keys) is not used, so its backward gets a zero upstream
//! context and the values' share of the gradient arrives as `dweights`.
//!
//! ```
//! use rnn_wgpu::nn::{Module, TransformerEncoderLayer};
//! use rnn_wgpu::{Context, Result, Tape};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let layer = TransformerEncoderLayer::new(&ctx, 8, 2, 16, 1)?; // d_model, heads, ff
//!     let mut tape = Tape::train(&ctx, "encoder layer");
//!     layer.zero_grad(tape.rec())?;
//!     let x = tape.from_slice(&[2, 5, 8], &(0..80).map(|i| (i as f32).sin()).collect::<Vec<_>>())?;
//!     let y = layer.apply(&mut tape, &x, &[5, 3])?; // per-sequence lengths
//!     let all = tape.reshape(&y, &[80])?;
//!     let loss = tape.mean(&all, 0, None)?;
//!     tape.backward(&loss)?;
//!     tape.into_recorder().submit();
//!     assert_eq!(y.shape(), [2, 5, 8]);
//!     assert!(layer.named_params().iter().any(|p| p.name == "self_attn.in_proj_weight"));
//!     Ok(())
//! }
//! ```

use super::attention::{self, Attention, Score};
use super::layer_norm::LayerNorm;
use super::{prefixed, Entry, Linear, Module, Param, SplitMix};
use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::ops::elementwise::{self, Activation};
use crate::ops::gemm::{self, BiasView, View};
use crate::ops::layer_norm;
use crate::tape::{Tape, Var};
use crate::tensor::{DType, Tensor};

const OP: &str = "transformer_encoder_layer";

/// See the module docs.
#[derive(Clone, Debug)]
pub struct TransformerEncoderLayer {
    d: usize,
    heads: usize,
    /// `[3D, D]`: the query, key and value projections stacked.
    in_proj: Param,
    /// `[3D]`
    in_bias: Param,
    /// Attention output projection, `self_attn.out_proj.*`.
    pub out_proj: Linear,
    /// Feed-forward in, `linear1.*`.
    pub linear1: Linear,
    /// Feed-forward out, `linear2.*`.
    pub linear2: Linear,
    /// LayerNorm after attention, `norm1.*`.
    pub norm1: LayerNorm,
    /// LayerNorm after the feed-forward block, `norm2.*`.
    pub norm2: LayerNorm,
    attention: Attention,
}

/// What [`TransformerEncoderLayer::backward`] needs from the forward.
#[derive(Debug)]
pub struct Saved {
    x: Tensor,
    /// per head: the attention's saved state and its weights `[B, T, T]`
    heads: Vec<(attention::Saved, Tensor)>,
    /// `[B, T, D]`
    v: Tensor,
    /// `[B, T, D]` the heads' contexts side by side
    context: Tensor,
    norm1: layer_norm::Saved,
    x1: Tensor,
    /// `[B, T, F]` relu(W₁·x₁ + b₁)
    hidden: Tensor,
    norm2: layer_norm::Saved,
}

impl TransformerEncoderLayer {
    /// `d_model` features in `heads` heads (dividing `d_model`), a feed-forward
    /// block of `ff` units; initialized as PyTorch does.
    pub fn new(ctx: &Context, d_model: usize, heads: usize, ff: usize, seed: u64) -> Result<Self> {
        if d_model == 0 || heads == 0 || ff == 0 || !d_model.is_multiple_of(heads) {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "[d_model, heads, ff]",
                expected: "non-zero sizes, heads dividing d_model".into(),
                got: vec![d_model, heads, ff],
            });
        }
        let d = d_model;
        let mut rng = SplitMix::new(seed);
        // Xavier-uniform over [3D, D]: fan_in D, fan_out 3D.
        let bound = (6.0 / (4 * d) as f32).sqrt();
        let in_proj = Param {
            value: Tensor::from_slice(ctx, &[3 * d, d], &rng.uniform(3 * d * d, bound))?,
            grad: Tensor::zeros(ctx, &[3 * d, d])?,
        };
        let in_bias = Param {
            value: Tensor::zeros(ctx, &[3 * d])?,
            grad: Tensor::zeros(ctx, &[3 * d])?,
        };
        let out_proj = Linear::new(ctx, d, d, true, seed + 1)?;
        // PyTorch starts the output projection's bias at zero.
        if let Some(bias) = out_proj
            .named_params()
            .into_iter()
            .find(|p| p.name == "bias")
        {
            bias.write(&vec![0.0; d])?;
        }
        let dh = d / heads;
        Ok(Self {
            d,
            heads,
            in_proj,
            in_bias,
            out_proj,
            linear1: Linear::new(ctx, d, ff, true, seed + 2)?,
            linear2: Linear::new(ctx, ff, d, true, seed + 3)?,
            norm1: LayerNorm::new(ctx, d)?,
            norm2: LayerNorm::new(ctx, d)?,
            attention: Attention::new(ctx, Score::Dot, dh, dh, 1.0 / (dh as f32).sqrt(), 0)?,
        })
    }

    /// Model features.
    pub fn d_model(&self) -> usize {
        self.d
    }

    /// Columns `[.., h·d_head, (h + 1)·d_head)` of a `[B, T, D]` tensor, per batch entry.
    fn head_view<'a>(&self, t: &'a Tensor, h: usize, steps: usize) -> View<'a> {
        let dh = self.d / self.heads;
        View {
            tensor: t,
            offset: h * dh,
            rows: steps,
            cols: dh,
            row_stride: self.d,
            col_stride: 1,
            batch_stride: steps * self.d,
        }
    }

    /// Rows `[r0, r0 + cols)` of the stacked projection, as a `[cols, D]` matrix of `w`.
    fn proj_rows<'a>(&self, w: &'a Tensor, r0: usize, cols: usize) -> View<'a> {
        View {
            offset: r0 * self.d,
            ..View::matrix(w, cols, self.d, false)
        }
    }

    /// Records `x · W[r0..r0 + cols]ᵀ + b[r0..]` for `x` `[B, T, D]`: `[B, T, cols]`.
    fn project(&self, rec: &mut Recorder, x: &Tensor, r0: usize, cols: usize) -> Result<Tensor> {
        let (b, t) = (x.shape()[0], x.shape()[1]);
        let out = rec.empty(&[b, t, cols], DType::F32)?;
        gemm::forward_view(
            rec,
            View::matrix(&out, b * t, cols, false),
            View::matrix(x, b * t, self.d, false),
            self.proj_rows(&self.in_proj.value, r0, cols).t(),
            Some(BiasView {
                tensor: &self.in_bias.value,
                offset: r0,
                stride: 1,
            }),
            1,
            1.0,
            0.0,
        )?;
        Ok(out)
    }

    /// The backward of [`project`](Self::project) for upstream `dout`: adds to the
    /// projection's gradients and to `dx`.
    fn project_backward(
        &self,
        rec: &mut Recorder,
        dout: &Tensor,
        x: &Tensor,
        dx: &Tensor,
        r0: usize,
    ) -> Result<()> {
        let cols = dout.shape()[2];
        let n = x.numel() / self.d;
        let dv = View::matrix(dout, n, cols, false);
        gemm::forward_view(
            rec,
            self.proj_rows(&self.in_proj.grad, r0, cols),
            dv.t(),
            View::matrix(x, n, self.d, false),
            None,
            1,
            1.0,
            1.0,
        )?;
        gemm::bias_grad(
            rec,
            BiasView {
                tensor: &self.in_bias.grad,
                offset: r0,
                stride: 1,
            },
            dv,
            1,
            1.0,
            1.0,
        )?;
        gemm::forward_view(
            rec,
            View::matrix(dx, n, self.d, false),
            dv,
            self.proj_rows(&self.in_proj.value, r0, cols),
            None,
            1,
            1.0,
            1.0,
        )
    }

    /// Records the layer over `x` `[B, T, D]` whose sequence b has `lengths[b]`
    /// real positions (1..=T): keys past a length get no attention. Outputs at
    /// padded positions are computed as PyTorch computes them, and are for the
    /// caller to ignore.
    pub fn forward(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        lengths: &[usize],
    ) -> Result<(Tensor, Saved)> {
        let (b, t) = match x.shape() {
            [b, t, d] if *d == self.d && *b > 0 && *t > 0 => (*b, *t),
            _ => {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    what: "x",
                    expected: format!("[B, T, {}], non-empty", self.d),
                    got: x.shape().to_vec(),
                })
            }
        };
        crate::ops::check_lengths(OP, "lengths", lengths, b, t)?;
        let (d, dh) = (self.d, self.d / self.heads);
        let v = self.project(rec, x, 2 * d, d)?;
        let context = rec.empty(&[b, t, d], DType::F32)?;
        let mut heads = Vec::with_capacity(self.heads);
        for h in 0..self.heads {
            let q = self.project(rec, x, h * dh, dh)?;
            let k = self.project(rec, x, d + h * dh, dh)?;
            let (out, saved) = self.attention.forward(rec, &q, &k, lengths)?;
            // context_h[b] = weights_h[b] · v_h[b]
            gemm::forward_view(
                rec,
                self.head_view(&context, h, t),
                View::matrix(&out.weights, t, t, true),
                self.head_view(&v, h, t),
                None,
                b,
                1.0,
                0.0,
            )?;
            heads.push((saved, out.weights));
        }
        let s1 = self.out_proj.forward(rec, &context)?;
        elementwise::add(rec, &s1, 0, x, 0, b * t * d)?;
        let (x1, norm1) = self.norm1.forward(rec, &s1)?;
        let pre = self.linear1.forward(rec, &x1)?;
        let hidden = elementwise::activate(rec, Activation::Relu, &pre)?;
        let s2 = self.linear2.forward(rec, &hidden)?;
        elementwise::add(rec, &s2, 0, &x1, 0, b * t * d)?;
        let (y, norm2) = self.norm2.forward(rec, &s2)?;
        Ok((
            y,
            Saved {
                x: x.clone(),
                heads,
                v,
                context,
                norm1,
                x1,
                hidden,
                norm2,
            },
        ))
    }

    /// [`forward`](Self::forward) on a tape, which records the backward.
    pub fn apply(&self, tape: &mut Tape, x: &Var, lengths: &[usize]) -> Result<Var> {
        let (y, saved) = self.forward(tape.rec(), x, lengths)?;
        let layer = self.clone();
        Ok(tape.unary(x, y, true, move |rec, dy| layer.backward(rec, &saved, &dy)))
    }

    /// Records the backward for upstream `dy` `[B, T, D]`: adds to every parameter
    /// gradient and returns `dx`.
    pub fn backward(&self, rec: &mut Recorder, saved: &Saved, dy: &Tensor) -> Result<Tensor> {
        let x = &saved.x;
        if dy.shape() != x.shape() {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "dy",
                expected: format!("{:?} like x", x.shape()),
                got: dy.shape().to_vec(),
            });
        }
        let (b, t, d) = (x.shape()[0], x.shape()[1], self.d);
        let dh = d / self.heads;
        let ctx = rec.context().clone();
        let ds2 = self.norm2.backward(rec, &saved.norm2, dy)?;
        let dhidden = self.linear2.backward(rec, &ds2, &saved.hidden)?;
        let dpre = elementwise::activate_backward(rec, Activation::Relu, &dhidden, &saved.hidden)?;
        let dx1 = self.linear1.backward(rec, &dpre, &saved.x1)?;
        elementwise::add(rec, &dx1, 0, &ds2, 0, b * t * d)?;
        let ds1 = self.norm1.backward(rec, &saved.norm1, &dx1)?;
        let dcontext = self.out_proj.backward(rec, &ds1, &saved.context)?;
        let dx = rec.empty(x.shape(), DType::F32)?;
        rec.copy(&dx, &ds1)?;
        let dv = rec.empty(x.shape(), DType::F32)?;
        let no_context = Tensor::zeros(&ctx, &[b, t, dh])?;
        for (h, (att, weights)) in saved.heads.iter().enumerate() {
            let dweights = rec.empty(&[b, t, t], DType::F32)?;
            // dweights_h = dcontext_h · v_hᵀ, dv_h = weights_hᵀ · dcontext_h
            gemm::forward_view(
                rec,
                View::matrix(&dweights, t, t, true),
                self.head_view(&dcontext, h, t),
                self.head_view(&saved.v, h, t).t(),
                None,
                b,
                1.0,
                0.0,
            )?;
            gemm::forward_view(
                rec,
                self.head_view(&dv, h, t),
                View::matrix(weights, t, t, true).t(),
                self.head_view(&dcontext, h, t),
                None,
                b,
                1.0,
                0.0,
            )?;
            let g = self
                .attention
                .backward(rec, att, &no_context, Some(&dweights))?;
            self.project_backward(rec, &g.dq, x, &dx, h * dh)?;
            self.project_backward(rec, &g.dk, x, &dx, d + h * dh)?;
        }
        self.project_backward(rec, &dv, x, &dx, 2 * d)?;
        Ok(dx)
    }
}

impl Module for TransformerEncoderLayer {
    fn entries(&self) -> Vec<Entry> {
        let mut out = vec![
            Entry::new("self_attn.in_proj_weight", &self.in_proj),
            Entry::new("self_attn.in_proj_bias", &self.in_bias),
        ];
        out.extend(prefixed("self_attn.out_proj", self.out_proj.entries()));
        out.extend(prefixed("linear1", self.linear1.entries()));
        out.extend(prefixed("linear2", self.linear2.entries()));
        out.extend(prefixed("norm1", self.norm1.entries()));
        out.extend(prefixed("norm2", self.norm2.entries()));
        out
    }
}
