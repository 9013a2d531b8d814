//! Your own op on the tape: a forward and a backward of your choosing (your
//! [`Kernel`](crate::Kernel)s, the library's ops, or both) that gradients flow
//! through as through the built-in ops. A parameter of a custom op enters as
//! [`Tape::param`]'s value, so its gradient accumulates like a layer's.
//!
//! A square as a kernel with its backward, on the tape beside a broadcasting
//! product, checked by [`GradCheck`](super::GradCheck):
//!
//! ```
//! use rnn_wgpu::tape::{CustomOp, GradCheck, Gradients, Saved};
//! use rnn_wgpu::{Context, DType, Kernel, Recorder, Result, Tensor};
//!
//! const SQUARE: &str = "
//! @group(0) @binding(1) var<storage, read> x: array<f32>;
//! @group(0) @binding(2) var<storage, read_write> y: array<f32>;
//! @group(0) @binding(3) var<storage, read> dy: array<f32>;
//! @group(0) @binding(4) var<storage, read_write> dx: array<f32>;
//! @compute @workgroup_size(64)
//! fn forward(@builtin(global_invocation_id) id: vec3<u32>) {
//!     if (id.x < arrayLength(&x)) { y[id.x] = x[id.x] * x[id.x]; }
//! }
//! @compute @workgroup_size(64)
//! fn backward(@builtin(global_invocation_id) id: vec3<u32>) {
//!     if (id.x < arrayLength(&x)) { dx[id.x] = 2.0 * x[id.x] * dy[id.x]; }
//! }";
//!
//! #[derive(Clone)]
//! struct Square(Kernel);
//!
//! impl CustomOp for Square {
//!     fn forward(&self, rec: &mut Recorder, x: &[&Tensor]) -> Result<Vec<Tensor>> {
//!         let y = rec.empty(x[0].shape(), DType::F32)?;
//!         let run = self.0.launch("forward").bind("x", x[0]).bind("y", &y);
//!         run.cover([y.numel(), 1, 1]).record(rec)?;
//!         Ok(vec![y])
//!     }
//!
//!     fn backward(&self, rec: &mut Recorder, s: &Saved, d: &[Tensor]) -> Result<Gradients> {
//!         let (x, dx) = (&s.inputs()[0], rec.empty(d[0].shape(), DType::F32)?);
//!         let run = self.0.launch("backward").bind("x", x).bind("dy", &d[0]);
//!         run.bind("dx", &dx).cover([dx.numel(), 1, 1]).record(rec)?;
//!         Ok(vec![Some(dx)])
//!     }
//! }
//!
//! fn main() -> Result<()> {
//!     let ctx = Context::new()?;
//!     let square = Square(Kernel::new("square", SQUARE)?);
//!     let x = Tensor::from_slice(&ctx, &[2, 3], &[0.5, -1.0, 2.0, 0.25, 3.0, -2.5])?;
//!     let report = GradCheck::new().run(&ctx, &[&x], |tape, v| {
//!         let y = tape.custom(&square, &[&v[0]])?.remove(0);    // on the tape
//!         let b = tape.from_slice(&[3], &[1.0, -2.0, 0.5])?;    // broadcast over rows
//!         tape.mul(&y, &b)
//!     })?;
//!     assert!(report.passed(), "{report}");
//!     Ok(())
//! }
//! ```

use super::{Tape, Var};
use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::tensor::{DType, Tensor};

/// An op with any number of inputs and outputs whose backward you write, as
/// `torch.autograd.Function` or candle's `CustomOp`. Check it with
/// [`GradCheck`](super::GradCheck).
pub trait CustomOp {
    /// Names the op in errors; the type's name unless given.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Records the outputs of `inputs` into `rec` (new tensors).
    fn forward(&self, rec: &mut Recorder, inputs: &[&Tensor]) -> Result<Vec<Tensor>>;

    /// Records the gradient of each input (new tensors of the inputs' shapes,
    /// f32; `None` for one that needs none, see [`Saved::needs_grad`]) from
    /// `grads`, the gradients of the outputs (zeros for an output no gradient
    /// reached).
    fn backward(&self, rec: &mut Recorder, saved: &Saved, grads: &[Tensor]) -> Result<Gradients>;
}

/// The gradients a [`CustomOp`]'s backward gives, one per input (`None`: none
/// needed).
pub type Gradients = Vec<Option<Tensor>>;

/// What a [`CustomOp`]'s backward is given of its forward.
#[derive(Debug)]
pub struct Saved {
    inputs: Vec<Tensor>,
    outputs: Vec<Tensor>,
    needs_grad: Vec<bool>,
}

impl Saved {
    /// The forward's inputs.
    pub fn inputs(&self) -> &[Tensor] {
        &self.inputs
    }

    /// The forward's outputs.
    pub fn outputs(&self) -> &[Tensor] {
        &self.outputs
    }

    /// Whether input `i` needs its gradient (PyTorch's `needs_input_grad`).
    pub fn needs_grad(&self, i: usize) -> bool {
        self.needs_grad.get(i).copied().unwrap_or(false)
    }
}

impl Tape {
    /// Runs `op` on `inputs` and, on a training tape, records its backward:
    /// its outputs as values on the tape. The inputs and outputs are kept for
    /// the backward (only where a gradient will flow). A backward that returns
    /// the wrong number of gradients, or one of another shape than its input,
    /// is an error at the replay.
    pub fn custom<O: CustomOp + Clone + 'static>(
        &mut self,
        op: &O,
        inputs: &[&Var],
    ) -> Result<Vec<Var>> {
        let values: Vec<&Tensor> = inputs.iter().map(|v| v.tensor()).collect();
        self.rec().check_same_device("custom op", &values)?;
        let outputs = op.forward(self.rec(), &values)?;
        self.rec()
            .check_same_device("custom op", &outputs.iter().collect::<Vec<_>>())?;
        let needs_grad: Vec<bool> = inputs.iter().map(|v| self.needs_grad(v)).collect();
        let saved = Saved {
            inputs: values.into_iter().cloned().collect(),
            outputs: outputs.clone(),
            needs_grad,
        };
        let op = op.clone();
        Ok(self.record(inputs, outputs, false, move |rec, d| {
            let mut grads = Vec::with_capacity(d.len());
            for (g, out) in d.into_iter().zip(&saved.outputs) {
                grads.push(match g {
                    Some(g) => g,
                    None => {
                        let zero = rec.empty(out.shape(), DType::F32)?;
                        rec.zero(&zero)?;
                        zero
                    }
                });
            }
            let dins = op.backward(rec, &saved, &grads)?;
            check_grads(op.name(), &saved, &dins)?;
            Ok(dins)
        }))
    }
}

/// Refuses gradients that do not match the inputs, naming the op.
fn check_grads(name: &str, saved: &Saved, grads: &Gradients) -> Result<()> {
    let bad = |what: String| Error::CustomOp {
        op: name.to_string(),
        problem: what,
    };
    if grads.len() != saved.inputs.len() {
        return Err(bad(format!(
            "backward returned {} gradients for {} inputs",
            grads.len(),
            saved.inputs.len()
        )));
    }
    for (i, (g, x)) in grads.iter().zip(&saved.inputs).enumerate() {
        if let Some(g) = g {
            if g.shape() != x.shape() || g.dtype() != DType::F32 {
                return Err(bad(format!(
                    "the gradient of input {i} is {:?} {:?}, the input {:?} (f32 expected)",
                    g.shape(),
                    g.dtype(),
                    x.shape()
                )));
            }
        }
    }
    Ok(())
}
