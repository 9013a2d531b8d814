//! Broadcasting elementwise arithmetic, strided layouts and masked fills
//! (`shaders/broadcast.wgsl`): `add`, `sub`, `mul` and `div` of operands whose
//! shapes broadcast by NumPy's rules (dimensions aligned from the last, each
//! pair equal or one of them 1) and the backward that sums each operand's
//! gradient over the dimensions it was broadcast along; permutations and
//! expansions of any dimensions as one strided copy; `masked_fill` with a mask
//! that broadcasts to the values. Up to [`MAX_RANK`] dimensions.

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "broadcast";

/// Most dimensions a shape may have here.
pub const MAX_RANK: usize = 8;

type Dims = [[u32; 4]; 2];

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    rank: u32,
    op: u32,
    k: u32,
    value: f32,
    _pad: [u32; 3],
    shape: Dims,
    kshape: Dims,
    ostride: Dims,
    xs: Dims,
    ys: Dims,
}

/// An elementwise operation of two operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Binary {
    /// x + y
    Add = 0,
    /// x − y
    Sub = 1,
    /// x · y
    Mul = 2,
    /// x / y
    Div = 3,
}

impl Binary {
    /// The op's name in errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Sub => "sub",
            Self::Mul => "mul",
            Self::Div => "div",
        }
    }
}

/// Which operand of a [`Binary`] a gradient is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operand {
    /// The first operand.
    X,
    /// The second operand.
    Y,
}

fn dims(values: &[usize]) -> Dims {
    let mut out = [[1u32; 4]; 2];
    for (i, &v) in values.iter().enumerate() {
        out[i / 4][i % 4] = v as u32;
    }
    out
}

fn too_many_dims(op: &'static str, what: &'static str, shape: &[usize]) -> Error {
    Error::ShapeMismatch {
        op,
        what,
        expected: format!("at most {MAX_RANK} dimensions"),
        got: shape.to_vec(),
    }
}

/// The shape `x` and `y` broadcast to (NumPy's rules); an error names `op`.
pub fn broadcast_shape(op: &'static str, x: &[usize], y: &[usize]) -> Result<Vec<usize>> {
    let rank = x.len().max(y.len());
    if rank > MAX_RANK {
        return Err(too_many_dims(
            op,
            "x or y",
            if x.len() > y.len() { x } else { y },
        ));
    }
    let at = |s: &[usize], d: usize| (d + s.len()).checked_sub(rank).map_or(1, |i| s[i]);
    (0..rank)
        .map(|d| match (at(x, d), at(y, d)) {
            (a, b) if a == b || b == 1 => Ok(a),
            (1, b) => Ok(b),
            _ => Err(Error::ShapeMismatch {
                op,
                what: "y",
                expected: format!("a shape that broadcasts with {x:?}"),
                got: y.to_vec(),
            }),
        })
        .collect()
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// The strides that read `shape` (which broadcasts to `out`) along `out`'s
/// dimensions: 0 where it is broadcast.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let own = strides(shape);
    let lead = out.len() - shape.len();
    (0..out.len())
        .map(|d| match d.checked_sub(lead) {
            Some(i) if shape[i] != 1 => own[i],
            _ => 0,
        })
        .collect()
}

fn check_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    let n: usize = shape.iter().product();
    if n == 0 {
        return Err(Error::Empty {
            op,
            what: "output",
            shape: shape.to_vec(),
        });
    }
    if n > u32::MAX as usize {
        return Err(Error::LimitExceeded {
            op,
            what: "elements",
            value: n as u64,
            limit: u32::MAX.into(),
        });
    }
    Ok(n)
}

fn launch(
    rec: &mut Recorder,
    entry: &'static str,
    params: Params,
    tensors: &[(u32, &Tensor)],
) -> Result<()> {
    let params_bytes = bytemuck::bytes_of(&params);
    super::launch_elems(
        rec,
        &shaders::BROADCAST,
        entry,
        params.n as usize,
        params_bytes,
        tensors,
    )
}

/// Records `x op y` into a new tensor of the broadcast shape.
pub fn binary(rec: &mut Recorder, op: Binary, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    super::check_f32(rec, op.name(), &[("x", x), ("y", y)])?;
    let shape = broadcast_shape(op.name(), x.shape(), y.shape())?;
    let n = check_numel(op.name(), &shape)?;
    let out = rec.empty(&shape, DType::F32)?;
    let params = Params {
        n: n as u32,
        rank: shape.len() as u32,
        op: op as u32,
        shape: dims(&shape),
        xs: dims(&broadcast_strides(x.shape(), &shape)),
        ys: dims(&broadcast_strides(y.shape(), &shape)),
        ..Params::default()
    };
    launch(rec, "binary", params, &[(1, x), (2, y), (3, &out)])?;
    Ok(out)
}

/// Records the gradient of `which` operand of [`binary`] (of `op`, over the
/// forward's `x` and `y`) from the output's gradient `d`: shaped like that
/// operand, summed over the dimensions it was broadcast along.
pub fn binary_backward(
    rec: &mut Recorder,
    op: Binary,
    which: Operand,
    d: &Tensor,
    x: &Tensor,
    y: &Tensor,
) -> Result<Tensor> {
    super::check_f32(rec, op.name(), &[("d", d), ("x", x), ("y", y)])?;
    let shape = broadcast_shape(op.name(), x.shape(), y.shape())?;
    if d.shape() != shape {
        return Err(Error::ShapeMismatch {
            op: op.name(),
            what: "d",
            expected: format!("{shape:?}, the broadcast shape"),
            got: d.shape().to_vec(),
        });
    }
    let weight = match (op, which) {
        (Binary::Add, _) | (Binary::Sub, Operand::X) => 0,
        (Binary::Sub, Operand::Y) => 1,
        (Binary::Mul, Operand::X) => 2,
        (Binary::Mul, Operand::Y) => 3,
        (Binary::Div, Operand::X) => 4,
        (Binary::Div, Operand::Y) => 5,
    };
    let target = match which {
        Operand::X => x.shape(),
        Operand::Y => y.shape(),
    };
    reduce_to(rec, weight, d, target, x, y)
}

/// Records `d` summed over the dimensions along which `shape` broadcasts to
/// `d`'s shape: the gradient of an [`expand`] (or of a bias added to every
/// row), shaped `shape`.
pub fn sum_to(rec: &mut Recorder, d: &Tensor, shape: &[usize]) -> Result<Tensor> {
    signed_sum_to(rec, d, shape, false)
}

/// [`sum_to`], negated where `negate` (the gradient of a subtrahend).
pub(crate) fn signed_sum_to(
    rec: &mut Recorder,
    d: &Tensor,
    shape: &[usize],
    negate: bool,
) -> Result<Tensor> {
    super::check_f32(rec, OP, &[("d", d)])?;
    let fits = shape.len() <= d.shape().len()
        && broadcast_shape(OP, shape, d.shape()).is_ok_and(|s| s == d.shape());
    if !fits {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "shape",
            expected: format!("a shape that broadcasts to {:?}", d.shape()),
            got: shape.to_vec(),
        });
    }
    reduce_to(rec, u32::from(negate), d, shape, d, d)
}

/// The weighted sum of `d` (shaped like the broadcast of `x` and `y`) over the
/// positions each element of `target` was broadcast to.
fn reduce_to(
    rec: &mut Recorder,
    weight: u32,
    d: &Tensor,
    target: &[usize],
    x: &Tensor,
    y: &Tensor,
) -> Result<Tensor> {
    let out_shape = d.shape();
    check_numel(OP, out_shape)?;
    let rank = out_shape.len();
    let lead = rank - target.len();
    let aligned: Vec<usize> = (0..rank)
        .map(|i| i.checked_sub(lead).map_or(1, |j| target[j]))
        .collect();
    let kshape: Vec<usize> = (0..rank)
        .map(|i| {
            if aligned[i] == out_shape[i] {
                1
            } else {
                out_shape[i]
            }
        })
        .collect();
    let n = check_numel(OP, target)?;
    let grad = rec.empty(target, DType::F32)?;
    let params = Params {
        n: n as u32,
        rank: rank as u32,
        op: weight,
        k: kshape.iter().product::<usize>() as u32,
        shape: dims(&aligned),
        kshape: dims(&kshape),
        ostride: dims(&strides(out_shape)),
        xs: dims(&broadcast_strides(x.shape(), out_shape)),
        ys: dims(&broadcast_strides(y.shape(), out_shape)),
        ..Params::default()
    };
    launch(
        rec,
        "binary_backward",
        params,
        &[(1, x), (2, y), (3, &grad), (4, d)],
    )?;
    Ok(grad)
}

/// Records a copy of `x` (any 4-byte dtype) under `shape`, element `i` taken
/// from `x` at `offset + Σ c_d · strides[d]` for `i`'s row-major coordinates
/// `c` in `shape`. Every position read must lie in `x`.
fn strided(rec: &mut Recorder, x: &Tensor, shape: &[usize], strides: &[usize]) -> Result<Tensor> {
    rec.check_same_device(OP, &[x])?;
    if x.dtype().size() != 4 {
        return Err(Error::DType {
            op: OP,
            what: "x",
            expected: DType::F32,
            got: x.dtype(),
        });
    }
    let n = check_numel(OP, shape)?;
    let last: usize = shape.iter().zip(strides).map(|(&s, &t)| (s - 1) * t).sum();
    if last >= x.numel() {
        return Err(Error::ViewOutOfBounds {
            op: OP,
            what: "x",
            last,
            len: x.numel(),
        });
    }
    let out = rec.empty(shape, x.dtype())?;
    let params = Params {
        n: n as u32,
        rank: shape.len() as u32,
        shape: dims(shape),
        xs: dims(strides),
        ..Params::default()
    };
    launch(rec, "strided", params, &[(5, x), (6, &out)])?;
    Ok(out)
}

/// Records `x` with its dimensions in the order `perm` (output dimension `i`
/// is input dimension `perm[i]`, as `torch.permute`), a new tensor.
pub fn permute(rec: &mut Recorder, x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let shape = x.shape();
    if shape.len() > MAX_RANK {
        return Err(too_many_dims("permute", "x", shape));
    }
    let mut seen = vec![false; shape.len()];
    let valid = perm.len() == shape.len()
        && perm
            .iter()
            .all(|&p| p < seen.len() && !std::mem::replace(&mut seen[p], true));
    if !valid {
        return Err(Error::InvalidArgument {
            op: "permute",
            what: "dims",
            expected: "a permutation of the dimensions",
            got: format!("{perm:?} for shape {shape:?}"),
        });
    }
    let own = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let out_strides: Vec<usize> = perm.iter().map(|&p| own[p]).collect();
    strided(rec, x, &out_shape, &out_strides)
}

/// Records `x` repeated along the dimensions where it has size 1 (or lacks,
/// counting from the last) up to `shape`, as `torch.expand`: a new tensor of
/// any 4-byte dtype.
pub fn expand(rec: &mut Recorder, x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if shape.len() > MAX_RANK {
        return Err(too_many_dims("expand", "shape", shape));
    }
    let fits = shape.len() >= x.shape().len()
        && broadcast_shape("expand", x.shape(), shape).is_ok_and(|s| s == shape);
    if !fits {
        return Err(Error::ShapeMismatch {
            op: "expand",
            what: "x",
            expected: format!("a shape that broadcasts to {shape:?}"),
            got: x.shape().to_vec(),
        });
    }
    strided(rec, x, shape, &broadcast_strides(x.shape(), shape))
}

/// Records `value` where `mask` (u32, broadcasting to `x`'s shape) is not
/// zero and `x` elsewhere, as `torch.masked_fill`: a new tensor. Its gradient
/// is `masked_fill` of the output's gradient with 0.
pub fn masked_fill(rec: &mut Recorder, x: &Tensor, mask: &Tensor, value: f32) -> Result<Tensor> {
    super::check_f32(rec, "masked_fill", &[("x", x)])?;
    check_mask(rec, "masked_fill", mask, x.shape())?;
    let shape = x.shape();
    let n = check_numel("masked_fill", shape)?;
    let out = rec.empty(shape, DType::F32)?;
    let params = Params {
        n: n as u32,
        rank: shape.len() as u32,
        value,
        shape: dims(shape),
        ys: dims(&broadcast_strides(mask.shape(), shape)),
        ..Params::default()
    };
    launch(rec, "masked_fill", params, &[(1, x), (3, &out), (7, mask)])?;
    Ok(out)
}

/// Checks that `mask` is a u32 tensor on the recorder's device whose shape
/// broadcasts to `shape`.
pub(crate) fn check_mask(
    rec: &Recorder,
    op: &'static str,
    mask: &Tensor,
    shape: &[usize],
) -> Result<()> {
    rec.check_same_device(op, &[mask])?;
    if mask.dtype() != DType::U32 {
        return Err(Error::DType {
            op,
            what: "mask",
            expected: DType::U32,
            got: mask.dtype(),
        });
    }
    let fits = mask.shape().len() <= shape.len()
        && shape.len() <= MAX_RANK
        && broadcast_shape(op, mask.shape(), shape).is_ok_and(|s| s == shape);
    if !fits {
        return Err(Error::ShapeMismatch {
            op,
            what: "mask",
            expected: format!("a shape that broadcasts to {shape:?}"),
            got: mask.shape().to_vec(),
        });
    }
    Ok(())
}

/// `mask` as a u32 tensor of exactly `shape` (expanded when it broadcasts).
pub(crate) fn mask_as(
    rec: &mut Recorder,
    op: &'static str,
    mask: &Tensor,
    shape: &[usize],
) -> Result<Tensor> {
    check_mask(rec, op, mask, shape)?;
    if mask.shape() == shape {
        Ok(mask.clone())
    } else {
        expand(rec, mask, shape)
    }
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::BROADCAST);
