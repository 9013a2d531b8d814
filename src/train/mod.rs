//! Training: optimizers with learning-rate schedules and clipping, and the end of
//! a training step (one submit, one readback of the loss and the gradient norm).

pub mod checkpoint;
pub mod optim;

pub use optim::{Method, OptimConfig, Optimizer, Schedule};

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::tensor::{DType, Tensor};

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
