//! Layer normalization (torch.nn.LayerNorm over the last dimension): γ ones and
//! β zeros at the start, ε = 1e-5.
//!
//! ```
//! use rnn_wgpu::nn::LayerNorm;
//! use rnn_wgpu::{Context, Result, Tape};
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let norm = LayerNorm::new(&ctx, 4)?; // weight 1, bias 0
//!     let mut tape = Tape::eval(&ctx, "layer norm");
//!     let x = tape.from_slice(&[2, 4], &[1.0, 2.0, 3.0, 4.0, -2.0, 0.0, 2.0, 4.0])?;
//!     let y = norm.apply(&mut tape, &x)?;
//!     tape.into_recorder().submit();
//!     // Each row to mean 0 and variance 1.
//!     for row in y.to_vec()?.chunks(4) {
//!         let mean = row.iter().sum::<f32>() / 4.0;
//!         let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
//!         assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3);
//!     }
//!     Ok(())
//! }
//! ```

use super::{Entry, Module, Param};
use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::ops::layer_norm::{self, Saved};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// A layer norm with its gradients.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Param,
    bias: Param,
    eps: f32,
}

impl LayerNorm {
    /// Normalizes rows of `dim` features.
    pub fn new(ctx: &Context, dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(Error::Empty {
                op: "LayerNorm::new",
                what: "dim (the features normalized)",
                shape: vec![dim],
            });
        }
        let param = |v: f32| -> Result<Param> {
            Ok(Param {
                value: Tensor::from_slice(ctx, &[dim], &vec![v; dim])?,
                grad: Tensor::zeros(ctx, &[dim])?,
            })
        };
        Ok(Self {
            weight: param(1.0)?,
            bias: param(0.0)?,
            eps: 1e-5,
        })
    }

    /// Records the normalization of `x` `[.., dim]`.
    pub fn forward(&self, rec: &mut Recorder, x: &Tensor) -> Result<(Tensor, Saved)> {
        layer_norm::forward(rec, x, &self.weight.value, &self.bias.value, self.eps)
    }

    /// [`forward`](Self::forward) on a tape, which records the backward.
    pub fn apply(&self, tape: &mut Tape, x: &Var) -> Result<Var> {
        let (y, saved) = self.forward(tape.rec(), x)?;
        let layer = self.clone();
        Ok(tape.unary(x, y, true, move |rec, dy| layer.backward(rec, &saved, &dy)))
    }

    /// Records the backward for upstream `dy`: adds to the parameter gradients and
    /// returns `dx`.
    pub fn backward(&self, rec: &mut Recorder, saved: &Saved, dy: &Tensor) -> Result<Tensor> {
        layer_norm::backward(
            rec,
            saved,
            dy,
            &self.weight.value,
            &self.weight.grad,
            &self.bias.grad,
        )
    }
}

impl Module for LayerNorm {
    fn entries(&self) -> Vec<Entry> {
        vec![
            Entry::new("weight", &self.weight),
            Entry::new("bias", &self.bias),
        ]
    }
}
