//! Masked softmax and log-softmax over the last dimension, and their backward
//! (`shaders/softmax.wgsl`): positions past a row's length get exactly zero output
//! and no gradient (attention's padded source positions, a tape's masked rows).

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
}

/// Which normalization: probabilities or their logarithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Softmax,
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

fn launch(
    rec: &mut Recorder,
    entry: &'static str,
    kind: Kind,
    (b, tq, s): (usize, usize, usize),
    tensors: &[(u32, &Tensor)],
) -> Result<()> {
    let params = Params {
        rows: (b * tq) as u32,
        tq: tq as u32,
        s: s as u32,
        log: u32::from(kind == Kind::LogSoftmax),
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
    let dims = check(rec, lengths, &[("x", x), ("y", y)])?;
    launch(rec, "forward", kind, dims, &[(1, lengths), (2, x), (3, y)])
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
    let dims = check(rec, lengths, &[("dx", dx), ("dy", dy), ("y", y)])?;
    launch(
        rec,
        "backward",
        kind,
        dims,
        &[(1, lengths), (3, y), (4, dy), (5, dx)],
    )
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::SOFTMAX);
