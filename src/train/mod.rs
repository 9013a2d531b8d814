//! Training: the training-step protocol ([`TrainStep`]: a model records its loss
//! on a tape, one generic step does the rest), optimizers with learning-rate
//! schedules and clipping, the end of a training step (one submit, one
//! readback of the loss and the gradient norm), and [`fit()`]: the loop of
//! epochs, evaluations, checkpoints and exact resumes around the step.

pub mod checkpoint;
#[cfg(not(target_arch = "wasm32"))]
pub mod fit;
pub mod optim;

#[cfg(not(target_arch = "wasm32"))]
pub use fit::{best_path, fit, Clock, Epochs, Event, FitConfig, Goal, History, Stop};
pub use optim::{Method, OptimConfig, Optimizer, Schedule};

use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::nn::{Module, State};
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
    /// drops) and returns the loss, one value, with what the next step needs and
    /// any metrics.
    fn loss(&self, tape: &mut Tape, batch: &Self::Batch) -> Result<Step<Self::Carry>>;

    /// `batch` continuing from `carry`, what the step before it in its epoch
    /// handed on ([`fit()`] passes each step's carry to the next; an epoch starts
    /// without one). The default drops it, as a model whose `Carry` is `()` can.
    fn continued(batch: Self::Batch, carry: Self::Carry) -> Self::Batch
    where
        Self::Batch: Sized,
    {
        let _ = carry;
        batch
    }

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

/// What a [`TrainStep::Carry`] is as tensors, so that [`fit()`] can save it in a
/// checkpoint mid-epoch and a resumed run continues from it.
pub trait Carried: Sized {
    /// Its tensors, in a fixed order.
    fn tensors(&self) -> Vec<&Tensor>;

    /// Rebuilt from what [`tensors`](Self::tensors) gave (read back and
    /// uploaded again).
    fn from_tensors(tensors: Vec<Tensor>) -> Result<Self>;
}

impl Carried for () {
    fn tensors(&self) -> Vec<&Tensor> {
        Vec::new()
    }

    fn from_tensors(_: Vec<Tensor>) -> Result<Self> {
        Ok(())
    }
}

/// `[h, c]` for an LSTM, `[h]` for the other cells.
impl Carried for State<Tensor> {
    fn tensors(&self) -> Vec<&Tensor> {
        match self {
            State::Lstm { h, c } => vec![h, c],
            State::Hidden { h } => vec![h],
        }
    }

    fn from_tensors(tensors: Vec<Tensor>) -> Result<Self> {
        let got = tensors.len();
        let mut it = tensors.into_iter();
        match (it.next(), it.next(), got) {
            (Some(h), Some(c), 2) => Ok(State::Lstm { h, c }),
            (Some(h), None, 1) => Ok(State::Hidden { h }),
            _ => Err(Error::InvalidArgument {
                op: "state",
                what: "tensors",
                expected: "h, or h and c",
                got: format!("{got} tensors"),
            }),
        }
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
    // Masks drawn by the step's number: a resumed run repeats the run it resumes.
    let mut tape = Tape::train(ctx, M::LABEL).with_stream(opt.steps());
    model.zero_grad(tape.rec())?;
    let step = model.loss(&mut tape, batch)?;
    tape.backward(&step.loss)?;
    opt.step(tape.rec())?;
    let report = finish_with(tape.into_recorder(), &step.loss, opt, &step.metrics).await?;
    Ok((report, step.carry))
}

/// What a finished training step reports.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The step's loss.
    pub loss: f32,
    /// The global gradient norm before clipping.
    pub grad_norm: f32,
    /// The model's metrics of the step ([`Step::metric`]), by name.
    pub metrics: Vec<(&'static str, f32)>,
}

impl StepReport {
    /// The metric named `name`, if the model reported it.
    pub fn metric(&self, name: &str) -> Option<f32> {
        self.metrics
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v)
    }
}

/// What a model's [`TrainStep::loss`] records: the loss, what the next step
/// needs, and metrics read back with the loss (one value each, e.g. accuracy).
#[derive(Clone, Debug)]
pub struct Step<C = ()> {
    /// The loss, one value.
    pub loss: Var,
    /// What the next step needs (a language model's state).
    pub carry: C,
    /// Metrics read back with the loss, one value each.
    pub metrics: Vec<(&'static str, Tensor)>,
}

impl Step<()> {
    /// A step with a loss only.
    pub fn new(loss: Var) -> Self {
        Self::carrying(loss, ())
    }
}

impl<C> Step<C> {
    /// A step whose next one needs `carry`.
    pub fn carrying(loss: Var, carry: C) -> Self {
        Self {
            loss,
            carry,
            metrics: Vec::new(),
        }
    }

    /// The same step reporting `value` (`[1]`) as `name` too.
    pub fn metric(mut self, name: &'static str, value: Tensor) -> Self {
        self.metrics.push((name, value));
        self
    }
}

/// Submits a training step recorded in `rec` whose loss is `loss` (`[1]`) and
/// whose optimizer update was recorded by `opt` (its last [`Optimizer::step`]),
/// reading back the loss and the gradient norm in one transfer of the same
/// submit. A non-finite loss or gradient norm is an error; the optimizer has then
/// left the weights and its state as they were (its kernels check on the GPU
/// before they write), and its step count is set back.
#[cfg(not(target_arch = "wasm32"))]
pub fn finish_step(rec: Recorder, loss: &Tensor, opt: &mut Optimizer) -> Result<StepReport> {
    pollster::block_on(finish_step_async(rec, loss, opt))
}

/// [`finish_step`], awaited (in a page, without blocking).
pub async fn finish_step_async(
    rec: Recorder,
    loss: &Tensor,
    opt: &mut Optimizer,
) -> Result<StepReport> {
    finish_with(rec, loss, opt, &[]).await
}

/// [`finish_step_async`] reading `metrics` back in the same transfer.
async fn finish_with(
    mut rec: Recorder,
    loss: &Tensor,
    opt: &mut Optimizer,
    metrics: &[(&'static str, Tensor)],
) -> Result<StepReport> {
    let ctx = rec.context().clone();
    let report = Tensor::empty(&ctx, &[4 + metrics.len()], DType::F32)?;
    rec.copy_range(&report, 0, loss, 0, 1)?;
    rec.copy_range(&report, 1, opt.stats(), 0, 3)?;
    for (i, (_, m)) in metrics.iter().enumerate() {
        rec.copy_range(&report, 4 + i, m, 0, 1)?;
    }
    let v = rec.submit_read_async(&report).await?;
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
    Ok(StepReport {
        loss,
        grad_norm,
        metrics: metrics
            .iter()
            .zip(&v[4..])
            .map(|(&(name, _), &value)| (name, value))
            .collect(),
    })
}
