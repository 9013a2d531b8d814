//! One step of batched beam search on the GPU (`shaders/beam.wgsl`): the
//! log-softmax of every hypothesis's logits and the k best continuations of each
//! batch entry, so only `3·B·k` numbers come back to the host per step.

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "beam";

/// Most hypotheses per batch entry (`MAX_BEAM` in the shader).
pub const MAX_BEAM: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    k: u32,
    v: u32,
    eos: u32,
}

/// The k best continuations of each entry, best first: `[B·k]` each.
#[derive(Clone, Debug)]
pub struct Step {
    /// Summed log-probability of the continued hypothesis (−inf: no candidate).
    pub score: Tensor,
    /// Which of the entry's k hypotheses it continues (u32).
    pub origin: Tensor,
    /// The token it appends (u32; `eos` for a finished hypothesis carried on).
    pub token: Tensor,
}

/// Records one search step. `logits` `[B·k, V]` are the next-token logits of the
/// `k` hypotheses of each of B entries, `score` `[B·k]` their summed
/// log-probabilities (−inf for an empty slot), `finished` `[B·k]` (u32, nonzero
/// once a hypothesis has produced `eos`: it is carried on unchanged).
pub fn step(
    rec: &mut Recorder,
    logits: &Tensor,
    score: &Tensor,
    finished: &Tensor,
    k: usize,
    eos: u32,
) -> Result<Step> {
    super::check_f32(rec, OP, &[("logits", logits), ("score", score)])?;
    rec.check_same_device(OP, &[finished])?;
    if finished.dtype() != DType::U32 {
        return Err(Error::DType {
            op: OP,
            what: "finished",
            expected: DType::U32,
            got: finished.dtype(),
        });
    }
    if k == 0 {
        return Err(Error::InvalidArgument {
            op: OP,
            what: "beam width",
            expected: "at least 1",
            got: "0".into(),
        });
    }
    if k > MAX_BEAM {
        return Err(Error::LimitExceeded {
            op: OP,
            what: "beam width",
            value: k as u64,
            limit: MAX_BEAM as u64,
        });
    }
    let shape = logits.shape();
    let (rows, v) = match shape {
        [r, v] if *r > 0 && *v > 0 && r % k == 0 => (*r, *v),
        _ => {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "logits",
                expected: format!("[B·{k}, V], both non-empty"),
                got: shape.to_vec(),
            })
        }
    };
    for (what, t) in [("score", score), ("finished", finished)] {
        if t.shape() != [rows] {
            return Err(Error::ShapeMismatch {
                op: OP,
                what,
                expected: format!("[{rows}]"),
                got: t.shape().to_vec(),
            });
        }
    }
    if rows.saturating_mul(v) > u32::MAX as usize {
        return Err(Error::LimitExceeded {
            op: OP,
            what: "logits of one step",
            value: (rows as u64).saturating_mul(v as u64),
            limit: u32::MAX.into(),
        });
    }
    if eos as usize >= v {
        return Err(Error::IndexOutOfRange {
            op: OP,
            what: "end-of-sequence id",
            index: 0,
            value: eos as usize,
            bound: v,
        });
    }
    let ctx = rec.context().clone();
    let out = Step {
        score: rec.empty(&[rows], DType::F32)?,
        origin: rec.empty(&[rows], DType::U32)?,
        token: rec.empty(&[rows], DType::U32)?,
    };
    let batch = rows / k;
    let params = Params {
        batch: batch as u32,
        k: k as u32,
        v: v as u32,
        eos,
    };
    let pipeline = ctx.pipeline(&shaders::BEAM, "step", &[]);
    let groups = super::grid_rows(rec, 1, batch);
    rec.dispatch_tensors(
        "beam::step",
        &pipeline,
        bytemuck::bytes_of(&params),
        &[
            (1, logits),
            (2, score),
            (3, finished),
            (4, &out.score),
            (5, &out.origin),
            (6, &out.token),
        ],
        groups,
    )?;
    Ok(out)
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::BEAM);
