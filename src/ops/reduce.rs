//! Sum and mean over one dimension with a lengths mask, and their backward
//! (`shaders/reduce.wgsl`): positions past a row's length count nowhere and get
//! no gradient.

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "reduce";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    outer: u32,
    n: u32,
    inner: u32,
    mean: u32,
}

/// How the kept positions combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reduction {
    /// The sum.
    Sum,
    /// The mean over the counted positions.
    Mean,
}

/// `x` `[O, N, I]` as (O, N, I) for a reduction over dimension `dim` of its shape.
pub fn split_dims(x: &Tensor, dim: usize) -> Result<(usize, usize, usize)> {
    let shape = x.shape();
    if dim >= shape.len() || x.numel() == 0 {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "x",
            expected: format!("a non-empty tensor with a dimension {dim}"),
            got: shape.to_vec(),
        });
    }
    Ok((
        shape[..dim].iter().product(),
        shape[dim],
        shape[dim + 1..].iter().product(),
    ))
}

fn launch(
    rec: &mut Recorder,
    entry: &'static str,
    how: Reduction,
    (outer, n, inner): (usize, usize, usize),
    elements: usize,
    tensors: &[(u32, &Tensor)],
) -> Result<()> {
    if elements > u32::MAX as usize {
        return Err(Error::LimitExceeded {
            op: OP,
            what: "elements",
            value: elements as u64,
            limit: u32::MAX.into(),
        });
    }
    let params = Params {
        outer: outer as u32,
        n: n as u32,
        inner: inner as u32,
        mean: u32::from(how == Reduction::Mean),
    };
    let groups = super::grid_elems(rec, elements);
    rec.dispatch_entry(
        &shaders::REDUCE,
        entry,
        &[],
        bytemuck::bytes_of(&params),
        tensors,
        groups,
    )
}

fn check_lengths_tensor(lengths: &Tensor, outer: usize) -> Result<()> {
    if lengths.dtype() != DType::U32 || lengths.shape() != [outer] {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "lengths (u32)",
            expected: format!("[{outer}]"),
            got: lengths.shape().to_vec(),
        });
    }
    Ok(())
}

/// Records the sum or mean of `x` over dimension `dim`, row `o` (the index over
/// the dimensions before `dim`) taking its first `lengths[o]` positions; `out`
/// holds `x`'s shape without `dim`.
pub fn forward(
    rec: &mut Recorder,
    how: Reduction,
    out: &Tensor,
    x: &Tensor,
    dim: usize,
    lengths: &Tensor,
) -> Result<()> {
    super::check_f32(rec, OP, &[("x", x), ("out", out)])?;
    rec.check_same_device(OP, &[lengths])?;
    let dims = split_dims(x, dim)?;
    check_lengths_tensor(lengths, dims.0)?;
    if out.numel() != dims.0 * dims.2 {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "out",
            expected: format!("{} elements", dims.0 * dims.2),
            got: out.shape().to_vec(),
        });
    }
    launch(
        rec,
        "sum",
        how,
        dims,
        dims.0 * dims.2,
        &[(1, lengths), (2, x), (3, out)],
    )
}

/// Records `dx` (shaped like the forward's `x`) from `dout` through [`forward`].
pub fn backward(
    rec: &mut Recorder,
    how: Reduction,
    dx: &Tensor,
    dout: &Tensor,
    dim: usize,
    lengths: &Tensor,
) -> Result<()> {
    super::check_f32(rec, OP, &[("dx", dx), ("dout", dout)])?;
    rec.check_same_device(OP, &[lengths])?;
    let dims = split_dims(dx, dim)?;
    check_lengths_tensor(lengths, dims.0)?;
    if dout.numel() != dims.0 * dims.2 {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "dout",
            expected: format!("{} elements", dims.0 * dims.2),
            got: dout.shape().to_vec(),
        });
    }
    launch(
        rec,
        "sum_backward",
        how,
        dims,
        dx.numel(),
        &[(1, lengths), (2, dout), (3, dx)],
    )
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::REDUCE);
