//! Linear layer (torch.nn.Linear): `y = x·Wᵀ + b` over the last dimension.
//!
//! ```
//! use rnn_wgpu::nn::{Linear, Module};
//! use rnn_wgpu::{Context, Result, Tape};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let fc = Linear::new(&ctx, 4, 3, true, 1)?; // 4 → 3 features, with a bias
//!     let mut tape = Tape::train(&ctx, "linear");
//!     fc.zero_grad(tape.rec())?;
//!     let x = tape.from_slice(&[2, 4], &[0.5; 8])?;
//!     let y = fc.apply(&mut tape, &x)?; // [2, 3]
//!     let all = tape.reshape(&y, &[6])?;
//!     let loss = tape.mean(&all, 0, None)?;
//!     tape.backward(&loss)?;
//!     tape.into_recorder().submit();
//!     assert_eq!(y.shape(), [2, 3]);
//!     // d mean / d b: each output is a sixth of the mean, twice (two rows).
//!     let db = fc.params()[1].grad.to_vec()?;
//!     assert!(db.iter().all(|g| (g - 1.0 / 3.0).abs() < 1e-6));
//!     Ok(())
//! }
//! ```

use super::{Entry, Module, Param, SplitMix};
use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::ops::gemm::{self, BiasView, View};
use crate::tape::{Tape, Var};
use crate::tensor::{DType, Tensor};

const OP: &str = "linear";

/// A linear layer with its gradients.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out, in]` weight
    weight: Tensor,
    /// `[out]` bias
    bias: Option<Tensor>,
    /// `[out, in]`
    grad_weight: Tensor,
    /// `[out]`
    grad_bias: Option<Tensor>,
    /// Whether the weight belongs to another module (see [`Linear::tied`]),
    /// which lists it: [`entries`](Module::entries) then has the bias only.
    tied: bool,
}

/// PyTorch's bound for a layer of `inputs`: weights and bias uniform in
/// `[-1/√in, 1/√in)`.
fn init_bound(inputs: usize) -> f32 {
    1.0 / (inputs.max(1) as f32).sqrt()
}

impl Linear {
    /// `inputs → outputs`, initialized as PyTorch does: weight and bias uniform in
    /// `[-1/√in, 1/√in)`.
    pub fn new(
        ctx: &Context,
        inputs: usize,
        outputs: usize,
        bias: bool,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = SplitMix::new(seed);
        let (bias, grad_bias) = Self::new_bias(ctx, bias, outputs, inputs, &mut rng)?;
        Ok(Self {
            weight: Tensor::from_slice(
                ctx,
                &[outputs, inputs],
                &rng.uniform(outputs * inputs, init_bound(inputs)),
            )?,
            bias,
            grad_bias,
            grad_weight: Tensor::zeros(ctx, &[outputs, inputs])?,
            tied: false,
        })
    }

    /// A bias of `outputs` drawn first from `rng` as PyTorch initializes it, and
    /// its zeroed gradient (none without a bias).
    fn new_bias(
        ctx: &Context,
        bias: bool,
        outputs: usize,
        inputs: usize,
        rng: &mut SplitMix,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if !bias {
            return Ok((None, None));
        }
        Ok((
            Some(Tensor::from_slice(
                ctx,
                &[outputs],
                &rng.uniform(outputs, init_bound(inputs)),
            )?),
            Some(Tensor::zeros(ctx, &[outputs])?),
        ))
    }

    /// A layer whose weight is `weight` `[out, in]` itself, its gradient added to
    /// `grad` (weight tying: an embedding table `[V, E]` as the output layer of
    /// the same vocabulary, Press & Wolf 2017). The owner of `weight` lists it;
    /// this layer's [`entries`](Module::entries) hold only its bias, initialized
    /// as [`new`](Self::new) would from `seed`.
    pub fn tied(weight: &Tensor, grad: &Tensor, bias: bool, seed: u64) -> Result<Self> {
        let (&[outputs, inputs], true) = (weight.shape(), grad.shape() == weight.shape()) else {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "tied weight and its gradient",
                expected: "one [out, in] shape for both".into(),
                got: grad.shape().to_vec(),
            });
        };
        if weight.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "tied weight and its gradient",
                expected: "f32",
                got: format!("{:?} and {:?}", weight.dtype(), grad.dtype()),
            });
        }
        let (bias, grad_bias) = Self::new_bias(
            weight.context(),
            bias,
            outputs,
            inputs,
            &mut SplitMix::new(seed),
        )?;
        Ok(Self {
            weight: weight.clone(),
            bias,
            grad_bias,
            grad_weight: grad.clone(),
            tied: true,
        })
    }

    /// Whether the weight belongs to another module ([`tied`](Self::tied)).
    pub fn is_tied(&self) -> bool {
        self.tied
    }

    /// (out, in); the weight is `[out, in]` by construction.
    fn sizes(&self) -> (usize, usize) {
        (self.weight.shape()[0], self.weight.shape()[1])
    }

    /// Rows of `x` `[.., in]`, checked.
    fn rows(&self, x: &Tensor, what: &'static str, width: usize) -> Result<usize> {
        if x.shape().last() != Some(&width) || x.numel() == 0 {
            return Err(Error::ShapeMismatch {
                op: OP,
                what,
                expected: format!("[.., {width}]"),
                got: x.shape().to_vec(),
            });
        }
        Ok(x.numel() / width)
    }

    /// Records `y = x·Wᵀ + b` for `x` `[.., in]`; returns `y` `[.., out]`. Backward
    /// needs `x` again.
    pub fn forward(&self, rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
        let (outputs, inputs) = self.sizes();
        let n = self.rows(x, "x", inputs)?;
        let mut shape = x.shape().to_vec();
        *shape.last_mut().unwrap_or(&mut 0) = outputs;
        let y = rec.empty(&shape, DType::F32)?;
        gemm::forward_view(
            rec,
            View::matrix(&y, n, outputs, false),
            View::matrix(x, n, inputs, false),
            View::matrix(&self.weight, outputs, inputs, false).t(),
            self.bias.as_ref().map(BiasView::from),
            1,
            1.0,
            0.0,
        )?;
        Ok(y)
    }

    /// [`forward`](Self::forward) on a tape, which records the backward.
    pub fn apply(&self, tape: &mut Tape, x: &Var) -> Result<Var> {
        let y = self.forward(tape.rec(), x)?;
        let need_dx = tape.needs_grad(x);
        let (layer, xt) = (self.clone(), x.tensor().clone());
        Ok(tape
            .record(&[x], vec![y], true, move |rec, d| {
                let Some(dy) = d.into_iter().next().flatten() else {
                    return Ok(vec![None]);
                };
                Ok(vec![layer.backward_impl(rec, &dy, &xt, need_dx)?])
            })
            .remove(0))
    }

    /// Records the gradients for upstream `dy` `[.., out]` of a forward of `x`:
    /// adds to the parameter gradients and returns `dx`.
    pub fn backward(&self, rec: &mut Recorder, dy: &Tensor, x: &Tensor) -> Result<Tensor> {
        self.backward_impl(rec, dy, x, true)?.ok_or(Error::Empty {
            op: OP,
            what: "dx",
            shape: x.shape().to_vec(),
        })
    }

    /// [`backward`](Self::backward), with `dx` only when `need_dx`.
    fn backward_impl(
        &self,
        rec: &mut Recorder,
        dy: &Tensor,
        x: &Tensor,
        need_dx: bool,
    ) -> Result<Option<Tensor>> {
        let (outputs, inputs) = self.sizes();
        let n = self.rows(dy, "dy", outputs)?;
        if self.rows(x, "x", inputs)? != n {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "x",
                expected: format!("{n} rows like dy"),
                got: x.shape().to_vec(),
            });
        }
        let dy_v = View::matrix(dy, n, outputs, false);
        let x_v = View::matrix(x, n, inputs, false);
        // dW += dyᵀ·x
        gemm::forward_view(
            rec,
            View::matrix(&self.grad_weight, outputs, inputs, false),
            dy_v.t(),
            x_v,
            None,
            1,
            1.0,
            1.0,
        )?;
        if let Some(db) = &self.grad_bias {
            gemm::bias_grad(rec, db.into(), dy_v, 1, 1.0, 1.0)?;
        }
        if !need_dx {
            return Ok(None);
        }
        // dx = dy·W
        let dx = rec.empty(x.shape(), DType::F32)?;
        gemm::matmul(
            rec,
            View::matrix(&dx, n, inputs, false),
            dy_v,
            View::matrix(&self.weight, outputs, inputs, false),
        )?;
        Ok(Some(dx))
    }
}

impl Module for Linear {
    fn entries(&self) -> Vec<Entry> {
        let param = |value: &Tensor, grad: &Tensor| Param {
            value: value.clone(),
            grad: grad.clone(),
        };
        let mut out = Vec::new();
        if !self.tied {
            out.push(Entry::new(
                "weight",
                &param(&self.weight, &self.grad_weight),
            ));
        }
        if let (Some(b), Some(g)) = (&self.bias, &self.grad_bias) {
            out.push(Entry::new("bias", &param(b, g)));
        }
        out
    }
}
