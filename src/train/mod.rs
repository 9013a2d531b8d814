//! Training: the training-step protocol ([`TrainStep`]: a model records its loss
//! on a tape, one generic step does the rest), optimizers with learning-rate
//! schedules and clipping, and the end of a training step (one submit, one
//! readback of the loss and the gradient norm).

pub mod checkpoint;
pub mod optim;

pub use optim::{Method, OptimConfig, Optimizer, Schedule};

use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::nn::Module;
use crate::tape::{Tape, Var};
use crate::tensor::{DType, Tensor};

/// What a model does in a training step: record its loss on a training tape.
/// The step itself ([`step`], [`step_async`], or the provided
/// [`train_step`](TrainStep::train_step)) is the same for every model: zero the
/// gradients, the loss, the tape's backward, the optimizer update, one submit,
/// one readback.
pub trait TrainStep: Module {
    /// What one step trains on.
    type Batch: ?Sized;
    /// What a step hands to the next (a language model's recurrent state under
    /// truncated backpropagation through time); `()` for most models.
    type Carry;
    /// Names the step's submit in captures, profiles and traces.
    const LABEL: &'static str = "train step";

    /// Records the forward of a training step on `tape` (a training tape: dropout
    /// drops) and returns the loss, one value, with what the next step needs.
    fn loss(&self, tape: &mut Tape, batch: &Self::Batch) -> Result<(Var, Self::Carry)>;

    /// One training step on `batch` (blocking; native only).
    #[cfg(not(target_arch = "wasm32"))]
    fn train_step(
        &self,
        ctx: &Context,
        batch: &Self::Batch,
        opt: &mut Optimizer,
    ) -> Result<StepReport>
    where
        Self: Sized,
    {
        Ok(step(self, ctx, batch, opt)?.0)
    }
}

/// One training step of `model` on `batch`, one submit: zero the gradients,
/// record the loss and its backward, the optimizer update; returns the loss and
/// gradient norm, and the model's carry (blocking; native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn step<M: TrainStep>(
    model: &M,
    ctx: &Context,
    batch: &M::Batch,
    opt: &mut Optimizer,
) -> Result<(StepReport, M::Carry)> {
    pollster::block_on(step_async(model, ctx, batch, opt))
}

/// [`step`], awaited (in a page, without blocking).
pub async fn step_async<M: TrainStep>(
    model: &M,
    ctx: &Context,
    batch: &M::Batch,
    opt: &mut Optimizer,
) -> Result<(StepReport, M::Carry)> {
    let mut tape = Tape::train(ctx, M::LABEL);
    model.zero_grad(tape.rec())?;
    let (loss, carry) = model.loss(&mut tape, batch)?;
    tape.backward(&loss)?;
    opt.step(tape.rec())?;
    let report = finish_step_async(tape.into_recorder(), &loss, opt).await?;
    Ok((report, carry))
}

/// What a finished training step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// The step's loss.
    pub loss: f32,
    /// The global gradient norm before clipping.
    pub grad_norm: f32,
}

/// Submits a training step recorded in `rec` whose loss is `loss` (`[1]`) and
/// whose optimizer update was recorded by `opt` (its last [`Optimizer::step`]),
/// reading back the loss and the gradient norm in one transfer. A non-finite loss
/// or gradient norm is an error; the optimizer has then left the weights and its
/// state as they were (its kernels check on the GPU before they write), and its
/// step count is set back.
#[cfg(not(target_arch = "wasm32"))]
pub fn finish_step(rec: Recorder, loss: &Tensor, opt: &mut Optimizer) -> Result<StepReport> {
    pollster::block_on(finish_step_async(rec, loss, opt))
}

/// [`finish_step`], awaited (in a page, without blocking).
pub async fn finish_step_async(
    mut rec: Recorder,
    loss: &Tensor,
    opt: &mut Optimizer,
) -> Result<StepReport> {
    let ctx = rec.context().clone();
    let report = Tensor::empty(&ctx, &[4], DType::F32)?;
    rec.copy_range(&report, 0, loss, 0, 1)?;
    rec.copy_range(&report, 1, opt.stats(), 0, 3)?;
    rec.submit();
    let v = report.to_vec_async().await?;
    let (loss, grad_norm, finite) = (v[0], v[1], v[3]);
    if !loss.is_finite() || finite == 0.0 {
        let step = opt.steps();
        opt.set_steps(step.saturating_sub(1));
        return Err(Error::NonFinite {
            step,
            loss,
            grad_norm,
        });
    }
    Ok(StepReport { loss, grad_norm })
}
