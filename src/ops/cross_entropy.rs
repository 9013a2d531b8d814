//! Softmax cross-entropy fused with its gradient (`shaders/cross_entropy.wgsl`):
//! mean over the real rows, padded rows (the ignore index) counting nowhere;
//! optionally against label-smoothed targets ([`forward_smoothed`]) and over
//! each row's classes of a mask ([`forward_with`]).

use super::broadcast;
use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "cross_entropy";
/// Classes up to which a row is one invocation's work rather than a workgroup's.
const ROW_PER_INVOCATION: usize = 64;

/// The target of a row that does not count (padding), as the shader spells it.
const IGNORE: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    scale: f32,
    smoothing: f32,
    masked: u32,
    _pad: [u32; 3],
}

/// The choices of [`forward_with`] beyond the logits and targets.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CrossEntropy {
    /// Rows whose target is this count nowhere (padding).
    pub ignore_index: Option<u32>,
    /// Label smoothing in [0, 1] (see [`forward_smoothed`]).
    pub smoothing: f32,
    /// u32, broadcasting to the logits' shape: each row's classes are those
    /// where it is not zero, and its target always. The others take no
    /// probability and get no gradient; smoothing spreads over the row's
    /// classes.
    pub class_mask: Option<Tensor>,
}

impl CrossEntropy {
    /// Plain cross-entropy: every row and class counts, no smoothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows whose target is `index` count nowhere.
    pub fn with_ignore_index(mut self, index: u32) -> Self {
        self.ignore_index = Some(index);
        self
    }

    /// Label smoothing `smoothing` (in [0, 1]).
    pub fn with_smoothing(mut self, smoothing: f32) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// Each row's classes chosen by `mask` (see [`CrossEntropy::class_mask`]).
    pub fn with_class_mask(mut self, mask: &Tensor) -> Self {
        self.class_mask = Some(mask.clone());
        self
    }
}

/// A loss and its gradient (this op's and [`mse`](super::mse)'s).
#[derive(Clone, Debug)]
pub struct Loss {
    /// `[1]` mean over the real rows.
    pub loss: Tensor,
    /// d loss / d logits, shaped like the logits (zero on ignored rows).
    pub dlogits: Tensor,
    /// Number of rows (elements for MSE) that counted.
    pub count: usize,
    /// `[1]` the share of the rows that count whose highest logit (the first, on
    /// ties) is the target's; none for MSE.
    pub accuracy: Option<Tensor>,
}

/// Records the loss of `logits` `[N, C]` (or `[.., C]`) against `targets` (one
/// class per row; rows whose target is `ignore_index` do not count), the mean
/// over the rows that count, and its gradient.
pub fn forward(
    rec: &mut Recorder,
    logits: &Tensor,
    targets: &[u32],
    ignore_index: Option<u32>,
) -> Result<Loss> {
    forward_smoothed(rec, logits, targets, ignore_index, 0.0)
}

/// [`forward`] against label-smoothed targets (Szegedy et al.; PyTorch's
/// `label_smoothing`): each row's target distribution puts `1 − smoothing +
/// smoothing / C` on its class and `smoothing / C` on every other, so the loss
/// is `logsumexp(z) − (1 − smoothing)·z_t − smoothing·mean(z)`. `smoothing` in
/// [0, 1]; 0 is [`forward`]. The accuracy still counts the target class.
pub fn forward_smoothed(
    rec: &mut Recorder,
    logits: &Tensor,
    targets: &[u32],
    ignore_index: Option<u32>,
    smoothing: f32,
) -> Result<Loss> {
    let options = CrossEntropy {
        ignore_index,
        smoothing,
        class_mask: None,
    };
    forward_with(rec, logits, targets, &options)
}

/// [`forward`] with the choices of `options`: an ignore index, label
/// smoothing, a class mask.
pub fn forward_with(
    rec: &mut Recorder,
    logits: &Tensor,
    targets: &[u32],
    options: &CrossEntropy,
) -> Result<Loss> {
    let CrossEntropy {
        ignore_index,
        smoothing,
        ref class_mask,
    } = *options;
    check_smoothing(OP, smoothing)?;
    super::check_f32(rec, OP, &[("logits", logits)])?;
    let c = *logits.shape().last().unwrap_or(&0);
    let n = logits.numel().checked_div(c).unwrap_or(0);
    if c == 0 || n == 0 {
        return Err(Error::Empty {
            op: OP,
            what: "logits [N, C]",
            shape: logits.shape().to_vec(),
        });
    }
    if targets.len() != n {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "targets",
            expected: format!("[{n}], one per row of logits {:?}", logits.shape()),
            got: vec![targets.len()],
        });
    }
    let mut rows = Vec::with_capacity(n);
    for (index, &t) in targets.iter().enumerate() {
        if Some(t) == ignore_index {
            rows.push(IGNORE);
        } else if (t as usize) < c {
            rows.push(t);
        } else {
            return Err(Error::IndexOutOfRange {
                op: OP,
                what: "target class",
                index,
                value: t as usize,
                bound: c,
            });
        }
    }
    let count = rows.iter().filter(|&&t| t != IGNORE).count();
    if count == 0 {
        return Err(Error::Empty {
            op: OP,
            what: "targets that are not the ignore index",
            shape: vec![n],
        });
    }
    let mask = class_mask
        .as_ref()
        .map(|m| broadcast::mask_as(rec, OP, m, logits.shape()))
        .transpose()?;
    let ctx = rec.context().clone();
    let targets = Tensor::from_u32(&ctx, &[n], &rows)?;
    let row_loss = rec.empty(&[n], DType::F32)?;
    let row_hit = rec.empty(&[n], DType::F32)?;
    let accuracy = rec.empty(&[1], DType::F32)?;
    let out = Loss {
        loss: rec.empty(&[1], DType::F32)?,
        dlogits: rec.empty(logits.shape(), DType::F32)?,
        count,
        accuracy: Some(accuracy.clone()),
    };
    let params = Params {
        n: n as u32,
        c: c as u32,
        scale: 1.0 / count as f32,
        smoothing,
        masked: u32::from(mask.is_some()),
        _pad: [0; 3],
    };
    let (entry, groups) = if c <= ROW_PER_INVOCATION {
        ("forward_rows", super::grid_elems(rec, n))
    } else {
        ("forward", super::grid_rows(rec, 1, n))
    };
    let forward = ctx.pipeline(&shaders::CROSS_ENTROPY, entry, &[]);
    rec.dispatch_tensors(
        &format!("cross_entropy::{entry}"),
        &forward,
        bytemuck::bytes_of(&params),
        &[
            (1, logits),
            (2, &targets),
            (3, &row_loss),
            (4, &out.dlogits),
            (6, &row_hit),
            // The targets stand in for no mask: the kernel reads none then.
            (8, mask.as_ref().unwrap_or(&targets)),
        ],
        groups,
    )?;
    let reduce = ctx.pipeline(&shaders::CROSS_ENTROPY, "reduce_loss", &[]);
    rec.dispatch_tensors(
        "cross_entropy::reduce_loss",
        &reduce,
        bytemuck::bytes_of(&params),
        &[
            (3, &row_loss),
            (5, &out.loss),
            (6, &row_hit),
            (7, &accuracy),
        ],
        [1, 1, 1],
    )?;
    Ok(out)
}

/// Refuses a label smoothing outside [0, 1] (NaN included), naming `op`.
pub(crate) fn check_smoothing(op: &'static str, smoothing: f32) -> Result<()> {
    if (0.0..=1.0).contains(&smoothing) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            op,
            what: "label smoothing",
            expected: "0 <= smoothing <= 1",
            got: smoothing.to_string(),
        })
    }
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::CROSS_ENTROPY);
