//! Attention of queries over source states with per-sequence source lengths:
//! scores, a softmax that gives padded positions exactly zero weight, and the
//! context Σ_s weights·k (the keys are also the values).
//!
//! Legend: B sequences, Tq queries each (1 for one decoder step, or all target
//! steps at once), S source positions, Dq and Dk the query and key sizes.
//! Scores: `Dot` e = scale · q·kᵀ (Dq = Dk; scale 1/√D gives scaled dot-product
//! attention); `General` e = scale · q·W·kᵀ with W `[Dq, Dk]` (Luong).
//!
//! Forward: scores and context are batched GEMMs, the masked softmax one kernel
//! (`shaders/attention.wgsl`). Backward: dweights + dcontext·kᵀ through the
//! softmax's backward, then GEMMs for dq, dk (from both the scores and the
//! context) and dW. Parameter gradients accumulate; dq and dk are returned fresh.

use super::{Module, Named, Param, SplitMix};
use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::ops::attention as kernels;
use crate::ops::gemm::{self, View};
use crate::tensor::{DType, Tensor};

const OP: &str = "attention";

/// How a query scores a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Score {
    /// qᵀk
    Dot,
    /// qᵀ W k
    General,
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
        let w = match score {
            Score::Dot => None,
            Score::General => {
                let bound = 1.0 / (dk as f32).sqrt();
                Some(Param {
                    value: Tensor::from_slice(
                        ctx,
                        &[dq, dk],
                        &SplitMix::new(seed).uniform(dq * dk, bound),
                    )?,
                    grad: Tensor::zeros(ctx, &[dq, dk])?,
                })
            }
        };
        Ok(Self {
            score,
            dq,
            dk,
            scale,
            w,
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
        if lengths.len() != b {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "source lengths",
                expected: format!("[{b}]"),
                got: vec![lengths.len()],
            });
        }
        if let Some((index, &value)) = lengths.iter().enumerate().find(|&(_, &n)| n == 0 || n > s) {
            return Err(Error::LengthOutOfRange {
                op: OP,
                index,
                value,
                max: s,
            });
        }
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
        let ctx = rec.context().clone();
        let lens: Vec<u32> = src_lengths.iter().map(|&n| n as u32).collect();
        let lengths = Tensor::from_u32(&ctx, &[b], &lens)?;
        // q' = q·W (General) or q: [B·Tq, Dk]
        let qw = match &self.w {
            Some(w) => {
                let qw = Tensor::empty(&ctx, &[b, tq, dk], DType::F32)?;
                let rows = b * tq;
                gemm::forward_view(
                    rec,
                    View::matrix(&qw, rows, dk, false),
                    View::matrix(q, rows, dq, false),
                    View::matrix(&w.value, dq, dk, false),
                    None,
                    1,
                    1.0,
                    0.0,
                )?;
                Some(qw)
            }
            None => None,
        };
        let qp = qw.as_ref().unwrap_or(q);
        let scores = Tensor::empty(&ctx, &[b, tq, s], DType::F32)?;
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
        let weights = Tensor::empty(&ctx, &[b, tq, s], DType::F32)?;
        kernels::softmax(rec, &weights, &scores, &lengths)?;
        let context = Tensor::empty(&ctx, &[b, tq, dk], DType::F32)?;
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
        let saved = Saved {
            q: q.clone(),
            k: k.clone(),
            qw,
            weights: weights.clone(),
            lengths,
        };
        Ok((Output { weights, context }, saved))
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
        let (q, k) = (&saved.q, &saved.k);
        let (b, tq, s) = (q.shape()[0], q.shape()[1], k.shape()[1]);
        let (dq, dk) = (self.dq, self.dk);
        let ctx = rec.context().clone();
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
        let dw_total = Tensor::empty(&ctx, &[b, tq, s], DType::F32)?;
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
        let dk_t = Tensor::empty(&ctx, &[b, s, dk], DType::F32)?;
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
        let de = Tensor::empty(&ctx, &[b, tq, s], DType::F32)?;
        kernels::softmax_backward(rec, &de, &dw_total, &saved.weights, &saved.lengths)?;
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
        let dqp = Tensor::empty(&ctx, &[b, tq, dk], DType::F32)?;
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
                let dq_t = Tensor::empty(&ctx, &[b, tq, dq], DType::F32)?;
                gemm::forward_view(
                    rec,
                    View::matrix(&dq_t, rows, dq, false),
                    View::matrix(&dqp, rows, dk, false),
                    View::matrix(&w.value, dq, dk, false).t(),
                    None,
                    1,
                    1.0,
                    0.0,
                )?;
                dq_t
            }
        };
        Ok(InputGrads { dq: dq_t, dk: dk_t })
    }
}

impl Module for Attention {
    fn params(&self) -> Vec<Param> {
        self.w.iter().cloned().collect()
    }

    fn named_params(&self) -> Vec<Named> {
        self.w
            .iter()
            .map(|w| Named {
                name: "W".into(),
                shape: w.value.shape().to_vec(),
                tensor: w.value.clone(),
                offset: 0,
            })
            .collect()
    }
}
