//! Masked softmax and log-softmax over the last dimension, and their backward
//! (`shaders/softmax.wgsl`): positions past a row's length, or outside an
//! optional mask, get exactly zero output and no gradient (attention's padded
//! source positions, a tape's masked rows).

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "softmax";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    tq: u32,
    s: u32,
    log: u32,
    masked: u32,
    _pad: [u32; 3],
}

/// Which normalization: probabilities or their logarithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Probabilities.
    Softmax,
    /// Log-probabilities.
    LogSoftmax,
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
            what: "lengths (u32)",
            expected: format!("[{b}]"),
            got: lengths.shape().to_vec(),
        });
    }
    if b * tq * s == 0 {
        return Err(Error::Empty {
            op: OP,
            what: "x [B, Tq, S]",
            shape: shape.to_vec(),
        });
    }
    Ok((b, tq, s))
}

/// Checks a mask of `x`'s shape (u32); the lengths stand in for none (the
/// kernel reads no mask then).
fn mask_or<'t>(
    rec: &Recorder,
    mask: Option<&'t Tensor>,
    shape: &[usize],
    lengths: &'t Tensor,
) -> Result<&'t Tensor> {
    let Some(mask) = mask else {
        return Ok(lengths);
    };
    rec.check_same_device(OP, &[mask])?;
    if mask.dtype() != DType::U32 || mask.shape() != shape {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "mask (u32)",
            expected: format!("{shape:?}"),
            got: mask.shape().to_vec(),
        });
    }
    Ok(mask)
}

fn launch(
    rec: &mut Recorder,
    entry: &'static str,
    kind: Kind,
    (b, tq, s): (usize, usize, usize),
    masked: bool,
    tensors: &[(u32, &Tensor)],
) -> Result<()> {
    let params = Params {
        rows: (b * tq) as u32,
        tq: tq as u32,
        s: s as u32,
        log: u32::from(kind == Kind::LogSoftmax),
        masked: u32::from(masked),
        _pad: [0; 3],
    };
    let groups = super::grid_rows(rec, 1, b * tq);
    rec.dispatch_entry(
        &shaders::SOFTMAX,
        entry,
        &[],
        bytemuck::bytes_of(&params),
        tensors,
        groups,
    )
}

/// Records `y = kind(x)` over the last dimension of `x` `[B, Tq, S]`: row (b, i)
/// normalizes its first `lengths[b]` values and is zero past them.
pub fn forward(
    rec: &mut Recorder,
    kind: Kind,
    y: &Tensor,
    x: &Tensor,
    lengths: &Tensor,
) -> Result<()> {
    forward_masked(rec, kind, y, x, lengths, None)
}

/// [`forward`] where, with `mask` (u32, `x`'s shape), a position takes part
/// only where the mask is not zero too: the others are zero, and so is a row
/// with none.
pub fn forward_masked(
    rec: &mut Recorder,
    kind: Kind,
    y: &Tensor,
    x: &Tensor,
    lengths: &Tensor,
    mask: Option<&Tensor>,
) -> Result<()> {
    let dims = check(rec, lengths, &[("x", x), ("y", y)])?;
    let m = mask_or(rec, mask, x.shape(), lengths)?;
    launch(
        rec,
        "forward",
        kind,
        dims,
        mask.is_some(),
        &[(1, lengths), (2, x), (3, y), (6, m)],
    )
}

/// Records `dx` from `dy` through the [`forward`] of the same `kind` that gave `y`.
pub fn backward(
    rec: &mut Recorder,
    kind: Kind,
    dx: &Tensor,
    dy: &Tensor,
    y: &Tensor,
    lengths: &Tensor,
) -> Result<()> {
    backward_masked(rec, kind, dx, dy, y, lengths, None)
}

/// Records `dx` from `dy` through the [`forward_masked`] of the same `kind`
/// and `mask` that gave `y`.
pub fn backward_masked(
    rec: &mut Recorder,
    kind: Kind,
    dx: &Tensor,
    dy: &Tensor,
    y: &Tensor,
    lengths: &Tensor,
    mask: Option<&Tensor>,
) -> Result<()> {
    let dims = check(rec, lengths, &[("dx", dx), ("dy", dy), ("y", y)])?;
    let m = mask_or(rec, mask, y.shape(), lengths)?;
    launch(
        rec,
        "backward",
        kind,
        dims,
        mask.is_some(),
        &[(1, lengths), (3, y), (4, dy), (5, dx), (6, m)],
    )
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::SOFTMAX);
