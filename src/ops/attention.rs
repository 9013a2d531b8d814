//! Masked softmax over attention scores and its backward
//! (`shaders/attention.wgsl`): padded source positions get exactly zero weight
//! and no gradient. Scores and context are GEMMs in [`crate::nn::attention`].

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "attention";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    tq: u32,
    s: u32,
    _pad: u32,
}

/// Checks `[B, Tq, S]` tensors and `[B]` u32 lengths; returns (B, Tq, S).
fn check(
    rec: &Recorder,
    lengths: &Tensor,
    tensors: &[(&'static str, &Tensor)],
) -> Result<(usize, usize, usize)> {
    super::check_f32(rec, OP, tensors)?;
    rec.check_same_device(OP, &[lengths])?;
    let shape = tensors[0].1.shape();
    let &[b, tq, s] = shape else {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: tensors[0].0,
            expected: "[B, Tq, S]".into(),
            got: shape.to_vec(),
        });
    };
    if let Some(&(what, t)) = tensors.iter().find(|(_, t)| t.shape() != shape) {
        return Err(Error::ShapeMismatch {
            op: OP,
            what,
            expected: format!("{shape:?}"),
            got: t.shape().to_vec(),
        });
    }
    if lengths.dtype() != DType::U32 || lengths.shape() != [b] {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "source lengths (u32)",
            expected: format!("[{b}]"),
            got: lengths.shape().to_vec(),
        });
    }
    if b * tq * s == 0 {
        return Err(Error::Empty {
            op: OP,
            what: "scores [B, Tq, S]",
            shape: shape.to_vec(),
        });
    }
    Ok((b, tq, s))
}

fn launch(
    rec: &mut Recorder,
    entry: &'static str,
    dims: (usize, usize, usize),
    tensors: &[(u32, &Tensor)],
) -> Result<()> {
    let (b, tq, s) = dims;
    let params = Params {
        rows: (b * tq) as u32,
        tq: tq as u32,
        s: s as u32,
        _pad: 0,
    };
    let pipeline = rec.context().pipeline(&shaders::ATTENTION, entry, &[]);
    let groups = super::grid_rows(rec, 1, b * tq);
    rec.dispatch_tensors(
        &format!("{OP}::{entry}"),
        &pipeline,
        bytemuck::bytes_of(&params),
        tensors,
        groups,
    )
}

/// Records `weights = masked softmax(scores)` over the last dimension: row (b, i)
/// looks at source positions below `lengths[b]` only.
pub fn softmax(
    rec: &mut Recorder,
    weights: &Tensor,
    scores: &Tensor,
    lengths: &Tensor,
) -> Result<()> {
    let dims = check(rec, lengths, &[("scores", scores), ("weights", weights)])?;
    launch(
        rec,
        "softmax",
        dims,
        &[(1, lengths), (2, scores), (3, weights)],
    )
}

/// Records `dscores` from `dweights` through the softmax that gave `weights`.
pub fn softmax_backward(
    rec: &mut Recorder,
    dscores: &Tensor,
    dweights: &Tensor,
    weights: &Tensor,
    lengths: &Tensor,
) -> Result<()> {
    let dims = check(
        rec,
        lengths,
        &[
            ("dscores", dscores),
            ("dweights", dweights),
            ("weights", weights),
        ],
    )?;
    launch(
        rec,
        "softmax_backward",
        dims,
        &[(1, lengths), (3, weights), (4, dweights), (5, dscores)],
    )
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::ATTENTION);
