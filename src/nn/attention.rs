//! Attention of queries over source states with per-sequence source lengths:
//! scores, a softmax that gives padded positions exactly zero weight, and the
//! context Σ_s weights·k (the keys are also the values).
//!
//! Legend: B sequences, Tq queries each (1 for one decoder step, or all target
//! steps at once), S source positions, Dq and Dk the query and key sizes.
//! Scores: `Dot` e = scale · q·kᵀ (Dq = Dk; scale 1/√D gives scaled dot-product
//! attention); `General` e = scale · q·W·kᵀ with W `[Dq, Dk]` (Luong);
//! `Additive` e = vᵀ tanh(W_q·q + W_k·k) with W_q `[A, Dq]`, W_k `[A, Dk]`, v `[A]`
//! (Bahdanau; scale must be 1).
//!
//! Forward: scores and context are batched GEMMs, the masked softmax one kernel
//! (`shaders/attention.wgsl`). Backward: dweights + dcontext·kᵀ through the
//! softmax's backward, then GEMMs for dq, dk (from both the scores and the
//! context) and dW. Parameter gradients accumulate; dq and dk are returned fresh.
//!
//! ```
//! use rnn_wgpu::nn::attention::{Attention, Score};
//! use rnn_wgpu::{Context, Result, Tape};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     // Luong's general score between 3-wide queries and 2-wide keys.
//!     let att = Attention::new(&ctx, Score::General, 3, 2, 1.0, 1)?;
//!     let mut tape = Tape::eval(&ctx, "attention");
//!     let q = tape.from_slice(&[2, 1, 3], &[0.3; 6])?; // [B, Tq, Dq]
//!     let k = tape.from_slice(&[2, 4, 2], &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8].repeat(2))?;
//!     let (context, weights) = att.apply(&mut tape, &q, &k, &[4, 2])?; // source lengths
//!     tape.into_recorder().submit();
//!     assert_eq!(context.shape(), [2, 1, 2]);
//!     let w = weights.to_vec()?; // [B, Tq, S]
//!     assert!((w[0..4].iter().sum::<f32>() - 1.0).abs() < 1e-5);
//!     assert_eq!(w[6..8], [0.0, 0.0]); // past the second source's length
//!     Ok(())
//! }
//! ```

use super::{Entry, Module, Param, SplitMix};
use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::ops::attention as kernels;
use crate::ops::gemm::{self, View};
use crate::ops::softmax::{self, Kind};
use crate::tape::{Tape, Var};
use crate::tensor::{DType, Tensor};

const OP: &str = "attention";

/// How a query scores a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Score {
    /// qᵀk
    Dot,
    /// qᵀ W k
    General,
    /// vᵀ tanh(W_q q + W_k k) with `size` = A
    Additive {
        /// A, the width of the hidden layer.
        size: usize,
    },
}

/// An attention layer. See the module docs.
#[derive(Clone, Debug)]
pub struct Attention {
    score: Score,
    dq: usize,
    dk: usize,
    scale: f32,
    /// `[Dq, Dk]` for `General`
    w: Option<Param>,
    /// W_q `[A, Dq]`, W_k `[A, Dk]`, v `[A]` for `Additive`
    additive: Option<[Param; 3]>,
}

/// What [`Attention::forward`] returns.
#[derive(Clone, Debug)]
pub struct Output {
    /// `[B, Tq, S]`, zero at padded source positions.
    pub weights: Tensor,
    /// `[B, Tq, Dk]`
    pub context: Tensor,
}

/// What [`Attention::backward`] needs from [`Attention::forward`].
#[derive(Clone, Debug)]
pub struct Saved {
    q: Tensor,
    k: Tensor,
    /// q·W for `General`
    qw: Option<Tensor>,
    /// q·W_qᵀ `[B, Tq, A]` and k·W_kᵀ `[B, S, A]` for `Additive`
    proj: Option<(Tensor, Tensor)>,
    weights: Tensor,
    lengths: Tensor,
}

/// Gradients of the inputs.
#[derive(Clone, Debug)]
pub struct InputGrads {
    /// `[B, Tq, Dq]`
    pub dq: Tensor,
    /// `[B, S, Dk]`
    pub dk: Tensor,
}

impl Attention {
    /// Queries of `dq` features over keys of `dk`; scores multiplied by `scale`.
    /// `General` gets W uniform in `[-1/√Dk, 1/√Dk)` from `seed`.
    pub fn new(
        ctx: &Context,
        score: Score,
        dq: usize,
        dk: usize,
        scale: f32,
        seed: u64,
    ) -> Result<Self> {
        if dq == 0 || dk == 0 {
            return Err(Error::Empty {
                op: OP,
                what: "[Dq, Dk]",
                shape: vec![dq, dk],
            });
        }
        if score == Score::Dot && dq != dk {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "dot-product sizes",
                expected: format!("Dq = Dk = {dk}"),
                got: vec![dq, dk],
            });
        }
        let mut rng = SplitMix::new(seed);
        let mut param = |shape: &[usize], fan_in: usize| -> Result<Param> {
            let n = shape.iter().product();
            let bound = 1.0 / (fan_in as f32).sqrt();
            Ok(Param {
                value: Tensor::from_slice(ctx, shape, &rng.uniform(n, bound))?,
                grad: Tensor::zeros(ctx, shape)?,
            })
        };
        let (mut w, mut additive) = (None, None);
        match score {
            Score::Dot => {}
            Score::General => w = Some(param(&[dq, dk], dk)?),
            Score::Additive { size } => {
                if size == 0 || scale != 1.0 {
                    return Err(Error::ShapeMismatch {
                        op: OP,
                        what: "additive score",
                        expected: "a size of at least 1 and scale 1".into(),
                        got: vec![size],
                    });
                }
                additive = Some([
                    param(&[size, dq], dq)?,
                    param(&[size, dk], dk)?,
                    param(&[size], size)?,
                ]);
            }
        }
        Ok(Self {
            score,
            dq,
            dk,
            scale,
            w,
            additive,
        })
    }

    /// How this layer scores.
    pub fn score(&self) -> Score {
        self.score
    }

    /// Checks q `[B, Tq, Dq]`, k `[B, S, Dk]` and the lengths; returns (B, Tq, S).
    fn dims(
        &self,
        rec: &Recorder,
        q: &Tensor,
        k: &Tensor,
        lengths: &[usize],
    ) -> Result<(usize, usize, usize)> {
        crate::ops::check_f32(rec, OP, &[("q", q), ("k", k)])?;
        let (&[b, tq, dq], &[bk, s, dk]) = (q.shape(), k.shape()) else {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "q, k",
                expected: format!("[B, Tq, {}] and [B, S, {}]", self.dq, self.dk),
                got: [q.shape(), k.shape()].concat(),
            });
        };
        if dq != self.dq || dk != self.dk || b != bk {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "q, k",
                expected: format!("[B, Tq, {}] and [B, S, {}]", self.dq, self.dk),
                got: [q.shape(), k.shape()].concat(),
            });
        }
        if b * tq * s == 0 {
            return Err(Error::Empty {
                op: OP,
                what: "[B, Tq, S]",
                shape: vec![b, tq, s],
            });
        }
        crate::ops::check_lengths(OP, "source lengths", lengths, b, s)?;
        Ok((b, tq, s))
    }

    /// Records the weights and context of queries `q` over keys `k` whose
    /// sequence b has `src_lengths[b]` real positions (1..=S).
    pub fn forward(
        &self,
        rec: &mut Recorder,
        q: &Tensor,
        k: &Tensor,
        src_lengths: &[usize],
    ) -> Result<(Output, Saved)> {
        let (b, tq, s) = self.dims(rec, q, k, src_lengths)?;
        let (dq, dk) = (self.dq, self.dk);
        let outer = rec.phase("attention");
        let ctx = rec.context().clone();
        let lens: Vec<u32> = src_lengths.iter().map(|&n| n as u32).collect();
        let lengths = Tensor::from_u32(&ctx, &[b], &lens)?;
        // q' = q·W (General) or q: [B·Tq, Dk]
        let qw = match &self.w {
            Some(w) => {
                let qw = rec.empty(&[b, tq, dk], DType::F32)?;
                let rows = b * tq;
                gemm::matmul(
                    rec,
                    View::matrix(&qw, rows, dk, false),
                    View::matrix(q, rows, dq, false),
                    View::matrix(&w.value, dq, dk, false),
                )?;
                Some(qw)
            }
            None => None,
        };
        let qp = qw.as_ref().unwrap_or(q);
        let scores = rec.empty(&[b, tq, s], DType::F32)?;
        let proj = match &self.additive {
            Some([w_q, w_k, v]) => {
                let a = v.value.numel();
                // pq = q·W_qᵀ, pk = k·W_kᵀ
                let project = |rec: &mut Recorder,
                               x: &Tensor,
                               w: &Tensor,
                               rows: usize,
                               d: usize|
                 -> Result<Tensor> {
                    let out = rec.empty(&[b, rows / b, a], DType::F32)?;
                    gemm::matmul(
                        rec,
                        View::matrix(&out, rows, a, false),
                        View::matrix(x, rows, d, false),
                        View::matrix(w, a, d, false).t(),
                    )?;
                    Ok(out)
                };
                let pq = project(rec, q, &w_q.value, b * tq, dq)?;
                let pk = project(rec, k, &w_k.value, b * s, dk)?;
                kernels::additive_scores(rec, &scores, &pq, &pk, &v.value)?;
                Some((pq, pk))
            }
            None => {
                // e[b] = scale · q'[b]·k[b]ᵀ
                gemm::forward_view(
                    rec,
                    View::matrix(&scores, tq, s, true),
                    View::matrix(qp, tq, dk, true),
                    View::matrix(k, s, dk, true).t(),
                    None,
                    b,
                    self.scale,
                    0.0,
                )?;
                None
            }
        };
        let weights = rec.empty(&[b, tq, s], DType::F32)?;
        softmax::forward(rec, Kind::Softmax, &weights, &scores, &lengths)?;
        let context = rec.empty(&[b, tq, dk], DType::F32)?;
        // c[b] = w[b]·k[b]
        gemm::forward_view(
            rec,
            View::matrix(&context, tq, dk, true),
            View::matrix(&weights, tq, s, true),
            View::matrix(k, s, dk, true),
            None,
            b,
            1.0,
            0.0,
        )?;
        rec.phase(outer);
        let saved = Saved {
            q: q.clone(),
            k: k.clone(),
            qw,
            proj,
            weights: weights.clone(),
            lengths,
        };
        Ok((Output { weights, context }, saved))
    }

    /// [`forward`](Self::forward) on a tape, which records the backward: the
    /// context `[B, Tq, Dk]` and the weights `[B, Tq, S]`.
    pub fn apply(
        &self,
        tape: &mut Tape,
        q: &Var,
        k: &Var,
        src_lengths: &[usize],
    ) -> Result<(Var, Var)> {
        let (out, saved) = self.forward(tape.rec(), q, k, src_lengths)?;
        let layer = self.clone();
        let context_shape = out.context.shape().to_vec();
        let mut vars = tape.record(
            &[q, k],
            vec![out.context, out.weights],
            true,
            move |rec, d| {
                let mut d = d.into_iter();
                let (dcontext, dweights) = (d.next().flatten(), d.next().flatten());
                let dcontext = match dcontext {
                    Some(dc) => dc,
                    None => Tensor::zeros(rec.context(), &context_shape)?,
                };
                let g = layer.backward(rec, &saved, &dcontext, dweights.as_ref())?;
                Ok(vec![Some(g.dq), Some(g.dk)])
            },
        );
        let weights = vars.pop();
        match (vars.pop(), weights) {
            (Some(context), Some(weights)) => Ok((context, weights)),
            _ => unreachable!("record returns one value per output"),
        }
    }

    /// Records the gradients for upstream `dcontext` `[B, Tq, Dk]` and, when the
    /// weights feed a loss too, `dweights` `[B, Tq, S]`.
    pub fn backward(
        &self,
        rec: &mut Recorder,
        saved: &Saved,
        dcontext: &Tensor,
        dweights: Option<&Tensor>,
    ) -> Result<InputGrads> {
        let outer = rec.phase("attention");
        let grads = self.backward_kernels(rec, saved, dcontext, dweights);
        rec.phase(outer);
        grads
    }

    fn backward_kernels(
        &self,
        rec: &mut Recorder,
        saved: &Saved,
        dcontext: &Tensor,
        dweights: Option<&Tensor>,
    ) -> Result<InputGrads> {
        let (q, k) = (&saved.q, &saved.k);
        let (b, tq, s) = (q.shape()[0], q.shape()[1], k.shape()[1]);
        let (dq, dk) = (self.dq, self.dk);
        let expect = |what: &'static str, t: &Tensor, shape: &[usize]| -> Result<()> {
            crate::ops::check_f32(rec, OP, &[(what, t)])?;
            if t.shape() != shape {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    what,
                    expected: format!("{shape:?}"),
                    got: t.shape().to_vec(),
                });
            }
            Ok(())
        };
        expect("dcontext", dcontext, &[b, tq, dk])?;
        if let Some(dw) = dweights {
            expect("dweights", dw, &[b, tq, s])?;
        }
        // dW_total[b] = dweights[b] + dcontext[b]·k[b]ᵀ
        let dw_total = rec.empty(&[b, tq, s], DType::F32)?;
        if let Some(dw) = dweights {
            rec.copy(&dw_total, dw)?;
        }
        gemm::forward_view(
            rec,
            View::matrix(&dw_total, tq, s, true),
            View::matrix(dcontext, tq, dk, true),
            View::matrix(k, s, dk, true).t(),
            None,
            b,
            1.0,
            if dweights.is_some() { 1.0 } else { 0.0 },
        )?;
        // dk[b] = w[b]ᵀ·dcontext[b]
        let dk_t = rec.empty(&[b, s, dk], DType::F32)?;
        gemm::forward_view(
            rec,
            View::matrix(&dk_t, s, dk, true),
            View::matrix(&saved.weights, tq, s, true).t(),
            View::matrix(dcontext, tq, dk, true),
            None,
            b,
            1.0,
            0.0,
        )?;
        let de = rec.empty(&[b, tq, s], DType::F32)?;
        softmax::backward(
            rec,
            Kind::Softmax,
            &de,
            &dw_total,
            &saved.weights,
            &saved.lengths,
        )?;
        if let (Some([w_q, w_k, v]), Some((pq, pk))) = (&self.additive, &saved.proj) {
            let a = v.value.numel();
            let dpq = rec.empty(pq.shape(), DType::F32)?;
            let dpk = rec.empty(pk.shape(), DType::F32)?;
            kernels::additive_backward(rec, &dpq, &dpk, &v.grad, &de, pq, pk, &v.value)?;
            // dq = dpq·W_q, dW_q += dpqᵀ·q; dk += dpk·W_k, dW_k += dpkᵀ·k
            let dq_t = rec.empty(&[b, tq, dq], DType::F32)?;
            for (dx, beta, dp, w, x, rows, d) in [
                (&dq_t, 0.0, &dpq, w_q, q, b * tq, dq),
                (&dk_t, 1.0, &dpk, w_k, k, b * s, dk),
            ] {
                gemm::forward_view(
                    rec,
                    View::matrix(dx, rows, d, false),
                    View::matrix(dp, rows, a, false),
                    View::matrix(&w.value, a, d, false),
                    None,
                    1,
                    1.0,
                    beta,
                )?;
                gemm::forward_view(
                    rec,
                    View::matrix(&w.grad, a, d, false),
                    View::matrix(dp, rows, a, false).t(),
                    View::matrix(x, rows, d, false),
                    None,
                    1,
                    1.0,
                    1.0,
                )?;
            }
            return Ok(InputGrads { dq: dq_t, dk: dk_t });
        }
        let qp = saved.qw.as_ref().unwrap_or(q);
        // dk[b] += scale · de[b]ᵀ·q'[b]
        gemm::forward_view(
            rec,
            View::matrix(&dk_t, s, dk, true),
            View::matrix(&de, tq, s, true).t(),
            View::matrix(qp, tq, dk, true),
            None,
            b,
            self.scale,
            1.0,
        )?;
        // dq'[b] = scale · de[b]·k[b]
        let dqp = rec.empty(&[b, tq, dk], DType::F32)?;
        gemm::forward_view(
            rec,
            View::matrix(&dqp, tq, dk, true),
            View::matrix(&de, tq, s, true),
            View::matrix(k, s, dk, true),
            None,
            b,
            self.scale,
            0.0,
        )?;
        let dq_t = match &self.w {
            None => dqp,
            Some(w) => {
                let rows = b * tq;
                // dW += qᵀ·dq' over all (b, i); dq = dq'·Wᵀ
                gemm::forward_view(
                    rec,
                    View::matrix(&w.grad, dq, dk, false),
                    View::matrix(q, rows, dq, false).t(),
                    View::matrix(&dqp, rows, dk, false),
                    None,
                    1,
                    1.0,
                    1.0,
                )?;
                let dq_t = rec.empty(&[b, tq, dq], DType::F32)?;
                gemm::matmul(
                    rec,
                    View::matrix(&dq_t, rows, dq, false),
                    View::matrix(&dqp, rows, dk, false),
                    View::matrix(&w.value, dq, dk, false).t(),
                )?;
                dq_t
            }
        };
        Ok(InputGrads { dq: dq_t, dk: dk_t })
    }
}

impl Attention {
    /// Parameters with their golden-file names: W, or W_q, W_k, v.
    fn named(&self) -> Vec<(&'static str, &Param)> {
        let mut out: Vec<(&'static str, &Param)> = self.w.iter().map(|w| ("W", w)).collect();
        if let Some([w_q, w_k, v]) = &self.additive {
            out.extend([("W_q", w_q), ("W_k", w_k), ("v", v)]);
        }
        out
    }
}

impl Module for Attention {
    fn entries(&self) -> Vec<Entry> {
        self.named()
            .into_iter()
            .map(|(name, p)| Entry::new(name, p))
            .collect()
    }
}
