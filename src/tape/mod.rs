//! The gradient tape: a model writes its forward only. In a training tape every
//! op and layer records, next to its forward dispatches, a closure that records
//! its backward; [`Tape::backward`] replays them in reverse, so the gradients of
//! activations flow back and each layer adds its parameters' gradients where its
//! fused kernels put them (beta = 1 GEMMs, as a hand-written backward does). An
//! inference tape keeps nothing: no closures, no saved activations.
//!
//! Everything lands in one [`Recorder`], so forward, backward and the optimizer
//! update of a training step are still one submit.
//!
//! Gradients of activations are new tensors (a backward never writes into the
//! gradient it is given); where a value feeds several ops, their gradients are
//! summed into a new tensor.

mod custom;
mod gradcheck;
pub(crate) mod ops;

pub use crate::ops::cross_entropy::CrossEntropy;
pub use custom::{CustomOp, Gradients, Saved};
pub use gradcheck::{GradCheck, GradReport, Worst};

use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::nn::dropout::Draws;
use crate::ops::elementwise;
use crate::tensor::{DType, Tensor};

/// A recorded backward: given the gradients of the node's outputs (`None`: no
/// gradient reached that output), records the gradients of its inputs (`None`
/// where an input needs none) and adds to the parameter gradients it owns.
pub type Backward =
    Box<dyn FnOnce(&mut Recorder, Vec<Option<Tensor>>) -> Result<Vec<Option<Tensor>>>>;

/// Which output of which node of which recording a value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    /// The recording ([`Tape::recording`]): a tape's nodes are numbered anew
    /// after each backward, and another tape numbers its own.
    recording: u64,
    node: usize,
    output: usize,
}

/// A fresh recording number, unique in the process.
fn next_recording() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

struct Node {
    inputs: Vec<Option<Slot>>,
    outputs: usize,
    /// A loss: at the root it gets `None` for d loss / d loss = 1 and uses the
    /// gradient it computed in its forward as it is.
    loss: bool,
    backward: Backward,
}

/// A parameter tensor and its gradient (same shape). Gradients accumulate over
/// backward calls until they are set to zero (`Module::zero_grad`).
#[derive(Clone, Debug)]
pub struct Param {
    /// The value.
    pub value: Tensor,
    /// Its gradient, accumulated by backwards.
    pub grad: Tensor,
}

impl Param {
    /// A parameter holding `value`, its gradient zero.
    pub fn new(value: Tensor) -> Result<Self> {
        let grad = Tensor::zeros(value.context(), value.shape())?;
        Ok(Self { value, grad })
    }
}

/// A tensor on a tape: its value and, in a training tape, where it came from.
/// Values that no training op produced (data, constants) need no gradient.
#[derive(Clone, Debug)]
pub struct Var {
    tensor: Tensor,
    slot: Option<Slot>,
}

impl Var {
    /// A value that needs no gradient (data, a constant).
    pub fn constant(tensor: Tensor) -> Self {
        Self { tensor, slot: None }
    }

    /// The value.
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    /// Whether a gradient flows back through this value.
    pub fn requires_grad(&self) -> bool {
        self.slot.is_some()
    }
}

impl std::ops::Deref for Var {
    type Target = Tensor;

    fn deref(&self) -> &Tensor {
        &self.tensor
    }
}

/// A recorder with a gradient tape. See the module docs.
pub struct Tape {
    rec: Recorder,
    /// `None` in inference: nothing is kept.
    nodes: Option<Vec<Node>>,
    /// What the nodes' slots carry: renewed when a backward empties the tape.
    recording: u64,
    /// The first op that took a value of another tape (or of this tape before
    /// its last backward) as an input: the backward refuses to run, since that
    /// value's gradient could not reach where it came from.
    foreign: Option<usize>,
    /// The stream random choices are drawn from ([`with_stream`](Self::with_stream)),
    /// and the draws made from it.
    stream: Option<u32>,
    draws: u32,
}

impl Tape {
    /// A training tape: ops record their backward.
    pub fn train(ctx: &Context, label: &str) -> Self {
        Self {
            rec: Recorder::new(ctx, label),
            nodes: Some(Vec::new()),
            recording: next_recording(),
            foreign: None,
            stream: None,
            draws: 0,
        }
    }

    /// An inference tape: ops record their forward only and keep nothing for a
    /// backward; dropout is the identity.
    pub fn eval(ctx: &Context, label: &str) -> Self {
        Self {
            rec: Recorder::new(ctx, label),
            nodes: None,
            recording: next_recording(),
            foreign: None,
            stream: None,
            draws: 0,
        }
    }

    /// An inference tape recording into `rec` (which [`into_recorder`](Self::into_recorder)
    /// gives back), for tape ops in a recording the caller already holds.
    pub fn eval_on(rec: Recorder) -> Self {
        Self {
            rec,
            nodes: None,
            recording: next_recording(),
            foreign: None,
            stream: None,
            draws: 0,
        }
    }

    /// Draws dropout masks and the other random choices of training forwards
    /// from stream `position` (a training step's number) rather than from each
    /// layer's count of its calls: a step's choices then depend on the layers'
    /// seeds and the position alone, so a run resumed at step n draws what the
    /// uninterrupted run drew there. [`train::step`](crate::train::step) sets the
    /// optimizer's step count.
    pub fn with_stream(mut self, position: u32) -> Self {
        self.stream = Some(position);
        self.draws = 0;
        self
    }

    /// The recorder and where this tape's random draws come from.
    pub(crate) fn rec_and_draws(&mut self) -> (&mut Recorder, Draws<'_>) {
        let draws = match self.stream {
            Some(position) => Draws::Stream {
                position,
                draws: &mut self.draws,
            },
            None => Draws::Counters,
        };
        (&mut self.rec, draws)
    }

    /// Whether ops record their backward (and dropout drops).
    pub fn is_training(&self) -> bool {
        self.nodes.is_some()
    }

    /// The recorder the ops record into.
    pub fn rec(&mut self) -> &mut Recorder {
        &mut self.rec
    }

    /// The context.
    pub fn context(&self) -> &Context {
        self.rec.context()
    }

    /// The recorder, to submit (with anything recorded after the backward, such
    /// as an optimizer step).
    pub fn into_recorder(self) -> Recorder {
        self.rec
    }

    /// Whether a gradient for `x` is wanted: on a training tape, for a value a
    /// training op produced.
    pub fn needs_grad(&self, x: &Var) -> bool {
        self.nodes.is_some() && x.slot.is_some()
    }

    /// A parameter's value on the tape: its gradient is added to `param.grad` by
    /// the backward (a custom layer's own weights use this).
    pub fn param(&mut self, param: &Param) -> Var {
        let grad = param.grad.clone();
        self.record(&[], vec![param.value.clone()], true, move |rec, d| {
            if let Some(d) = d.into_iter().next().flatten() {
                elementwise::accumulate(rec, &grad, &d)?;
            }
            Ok(vec![])
        })
        .remove(0)
    }

    /// Records an op's node: its `outputs` (computed by the caller) and the
    /// `backward` of their gradients into those of `inputs`. `params` says that the
    /// op owns parameters, whose gradients its backward adds to: such an op is
    /// replayed even when no input needs a gradient. On an inference tape, or
    /// when nothing would flow back, the closure is dropped at once and the
    /// outputs need no gradient.
    pub fn record(
        &mut self,
        inputs: &[&Var],
        outputs: Vec<Tensor>,
        params: bool,
        backward: impl FnOnce(&mut Recorder, Vec<Option<Tensor>>) -> Result<Vec<Option<Tensor>>>
            + 'static,
    ) -> Vec<Var> {
        self.push(inputs, outputs, params, false, Box::new(backward))
    }

    /// [`record`](Self::record) for an op of one input and one output:
    /// `backward` maps the output's gradient to the input's.
    pub fn unary(
        &mut self,
        x: &Var,
        y: Tensor,
        params: bool,
        backward: impl FnOnce(&mut Recorder, Tensor) -> Result<Tensor> + 'static,
    ) -> Var {
        self.record(&[x], vec![y], params, move |rec, d| {
            match d.into_iter().next().flatten() {
                Some(dy) => Ok(vec![Some(backward(rec, dy)?)]),
                None => Ok(vec![None]),
            }
        })
        .remove(0)
    }

    /// [`record`](Self::record) for a loss: one `[1]` output whose backward at
    /// the root gets `None` (d loss / d loss = 1) and, anywhere else, the
    /// gradient of the loss.
    pub fn record_loss(
        &mut self,
        inputs: &[&Var],
        loss: Tensor,
        backward: impl FnOnce(&mut Recorder, Vec<Option<Tensor>>) -> Result<Vec<Option<Tensor>>>
            + 'static,
    ) -> Var {
        let mut out = self.push(inputs, vec![loss], false, true, Box::new(backward));
        out.remove(0)
    }

    fn push(
        &mut self,
        inputs: &[&Var],
        outputs: Vec<Tensor>,
        params: bool,
        loss: bool,
        backward: Backward,
    ) -> Vec<Var> {
        let flows = params || inputs.iter().any(|x| x.slot.is_some());
        let node = match &mut self.nodes {
            Some(nodes) if flows => {
                let recording = self.recording;
                if self.foreign.is_none()
                    && inputs
                        .iter()
                        .any(|x| x.slot.is_some_and(|s| s.recording != recording))
                {
                    self.foreign = Some(nodes.len());
                }
                nodes.push(Node {
                    inputs: inputs.iter().map(|x| x.slot).collect(),
                    outputs: outputs.len(),
                    loss,
                    backward,
                });
                Some(nodes.len() - 1)
            }
            _ => None,
        };
        outputs
            .into_iter()
            .enumerate()
            .map(|(output, tensor)| Var {
                tensor,
                slot: node.map(|node| Slot {
                    recording: self.recording,
                    node,
                    output,
                }),
            })
            .collect()
    }

    /// Records the backward of everything recorded so far from `loss` (one
    /// value, produced on this training tape): every parameter gradient gets its
    /// share added. The tape is empty afterwards (its saved activations go back to
    /// the pool as the replay passes them); keep recording, e.g. the optimizer
    /// step, and submit [`into_recorder`](Self::into_recorder).
    pub fn backward(&mut self, loss: &Var) -> Result<()> {
        self.replay(loss, None)
    }

    /// [`backward`](Self::backward) from any value `output` given the gradient of
    /// the objective with respect to it, `grad` (of `output`'s shape): the
    /// vector-Jacobian product, as PyTorch's `output.backward(grad)`.
    pub fn backward_with(&mut self, output: &Var, grad: &Tensor) -> Result<()> {
        if grad.shape() != output.shape() || grad.dtype() != DType::F32 {
            return Err(Error::ShapeMismatch {
                op: "backward",
                what: "grad (f32)",
                expected: format!("{:?} like the output", output.shape()),
                got: grad.shape().to_vec(),
            });
        }
        self.replay(output, Some(grad.clone()))
    }

    fn replay(&mut self, loss: &Var, seed: Option<Tensor>) -> Result<()> {
        let root = match (&self.nodes, loss.slot) {
            (Some(_), Some(slot)) if loss.numel() == 1 || seed.is_some() => slot,
            _ => {
                return Err(Error::InvalidArgument {
                    op: "backward",
                    what: "loss",
                    expected: "one value (or a given gradient) produced on this training tape",
                    got: format!(
                        "{:?}{}",
                        loss.shape(),
                        if loss.slot.is_none() {
                            ", needing no gradient"
                        } else {
                            ""
                        }
                    ),
                });
            }
        };
        if root.recording != self.recording {
            return Err(Error::InvalidArgument {
                op: "backward",
                what: "loss",
                expected: "a value recorded on this tape since its last backward",
                got: "a value of another tape, or of this one before its last backward".into(),
            });
        }
        if let Some(node) = self.foreign {
            return Err(Error::InvalidArgument {
                op: "backward",
                what: "the recorded ops' inputs",
                expected: "values of this tape since its last backward, or constants",
                got: format!(
                    "op {node} of this recording took a value of another tape (or of this \
                     one before its last backward); make it a `Var::constant` of its tensor \
                     to use it without a gradient"
                ),
            });
        }
        let mut nodes = self.nodes.take().unwrap_or_default();
        nodes.truncate(root.node + 1);
        let mut grads: Vec<Vec<Option<Tensor>>> =
            nodes.iter().map(|n| vec![None; n.outputs]).collect();
        let outer = self.rec.phase("backward");
        let result = (|| {
            let rec = &mut self.rec;
            while let Some(node) = nodes.pop() {
                let index = nodes.len();
                let mut douts = grads.pop().unwrap_or_default();
                if index == root.node {
                    douts[root.output] = match (&seed, node.loss) {
                        (Some(seed), _) => Some(seed.clone()),
                        (None, true) => None,
                        (None, false) => Some(ones(rec.context(), loss.shape())?),
                    };
                } else if index != root.node && douts.iter().all(Option::is_none) {
                    continue;
                }
                let dins = (node.backward)(rec, douts)?;
                for (slot, grad) in node.inputs.iter().zip(dins) {
                    let (Some(slot), Some(grad)) = (slot, grad) else {
                        continue;
                    };
                    let entry = &mut grads[slot.node][slot.output];
                    *entry = Some(match entry.take() {
                        None => grad,
                        Some(first) => {
                            // A value used twice: the sum in a new tensor, since
                            // either gradient may be another value's too.
                            elementwise::sum(rec, &first, &grad)?
                        }
                    });
                }
            }
            Ok(())
        })();
        self.rec.phase(outer);
        self.nodes = Some(Vec::new());
        self.recording = next_recording();
        result
    }
}

fn ones(ctx: &Context, shape: &[usize]) -> Result<Tensor> {
    let n = shape.iter().product();
    Tensor::from_slice(ctx, shape, &vec![1.0; n])
}
