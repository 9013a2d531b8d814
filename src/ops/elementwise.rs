//! Elementwise and layout ops between the big kernels (`shaders/elementwise.wgsl`):
//! tanh, ReLU, sigmoid, exp and log with their backward, in-place add, scale, product, concatenation
//! along the last dimension with its backward (split), and copies of column blocks. Blocks may start inside a tensor, so a
//! slice such as one direction's final state needs no copy first.

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "elementwise";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    rows: u32,
    a: u32,
    b: u32,
    x_off: u32,
    y_off: u32,
    out_off: u32,
    alpha: f32,
    inner: u32,
    _pad: [u32; 3],
}

/// `rows × width` row-major elements of `tensor` from element `offset`.
#[derive(Clone, Copy, Debug)]
pub struct Block<'a> {
    /// The tensor.
    pub tensor: &'a Tensor,
    /// Element offset of the first row.
    pub offset: usize,
    /// Elements per row.
    pub width: usize,
}

impl<'a> Block<'a> {
    /// All of `tensor` `[.., width]` with its last dimension as the width.
    pub fn whole(tensor: &'a Tensor) -> Self {
        Self {
            tensor,
            offset: 0,
            width: tensor.shape().last().copied().unwrap_or(0),
        }
    }

    fn check(&self, rec: &Recorder, what: &'static str, rows: usize) -> Result<()> {
        super::check_f32(rec, OP, &[(what, self.tensor)])?;
        let end = self.offset.saturating_add(rows.saturating_mul(self.width));
        if self.width == 0 || rows == 0 {
            return Err(Error::Empty {
                op: OP,
                what,
                shape: vec![rows, self.width],
            });
        }
        if end > self.tensor.numel() || end > u32::MAX as usize {
            return Err(Error::ViewOutOfBounds {
                op: OP,
                what,
                last: end - 1,
                len: self.tensor.numel(),
            });
        }
        Ok(())
    }
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
        &shaders::ELEMENTWISE,
        entry,
        params.n as usize,
        params_bytes,
        tensors,
    )
}

fn nonempty(x: &Tensor, what: &'static str) -> Result<()> {
    if x.numel() == 0 {
        return Err(Error::Empty {
            op: OP,
            what,
            shape: x.shape().to_vec(),
        });
    }
    Ok(())
}

/// A pointwise function with a backward computed from its output (from its
/// input for [`Log`](Self::Log): see [`saves_input`](Self::saves_input)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Activation {
    /// tanh
    Tanh,
    /// max(x, 0)
    Relu,
    /// `1 / (1 + exp(−x))`.
    Sigmoid,
    /// eˣ
    Exp,
    /// The natural logarithm.
    Log,
}

impl Activation {
    fn entries(self) -> (&'static str, &'static str) {
        match self {
            Self::Tanh => ("tanh_forward", "tanh_backward"),
            Self::Relu => ("relu_forward", "relu_backward"),
            Self::Sigmoid => ("sigmoid_forward", "sigmoid_backward"),
            Self::Exp => ("exp_forward", "exp_backward"),
            Self::Log => ("log_forward", "log_backward"),
        }
    }

    /// Whether [`activate_backward`] takes the forward's input rather than its
    /// output (`d log x / dx = 1 / x`).
    pub fn saves_input(self) -> bool {
        self == Self::Log
    }
}

/// Records `f(x)` into a new tensor of `x`'s shape.
pub fn activate(rec: &mut Recorder, f: Activation, x: &Tensor) -> Result<Tensor> {
    super::check_f32(rec, OP, &[("x", x)])?;
    nonempty(x, "x")?;
    let out = rec.empty(x.shape(), DType::F32)?;
    let params = Params {
        n: x.numel() as u32,
        ..Params::default()
    };
    launch(rec, f.entries().0, params, &[(1, x), (3, &out)])?;
    Ok(out)
}

/// Records the gradient of [`activate`] for upstream `dy`, given its output `y`
/// (its input, where [`Activation::saves_input`]).
pub fn activate_backward(
    rec: &mut Recorder,
    f: Activation,
    dy: &Tensor,
    y: &Tensor,
) -> Result<Tensor> {
    super::check_f32(rec, OP, &[("dy", dy), ("y", y)])?;
    nonempty(y, "y")?;
    if dy.shape() != y.shape() {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "dy",
            expected: format!("{:?} like y", y.shape()),
            got: dy.shape().to_vec(),
        });
    }
    let dx = rec.empty(y.shape(), DType::F32)?;
    let params = Params {
        n: y.numel() as u32,
        ..Params::default()
    };
    launch(rec, f.entries().1, params, &[(1, dy), (2, y), (3, &dx)])?;
    Ok(dx)
}

/// Records `dst[dst_offset + i] += src[src_offset + i]` for `i < len`.
pub fn add(
    rec: &mut Recorder,
    dst: &Tensor,
    dst_offset: usize,
    src: &Tensor,
    src_offset: usize,
    len: usize,
) -> Result<()> {
    let d = Block {
        tensor: dst,
        offset: dst_offset,
        width: len,
    };
    let s = Block {
        tensor: src,
        offset: src_offset,
        width: len,
    };
    d.check(rec, "dst", 1)?;
    s.check(rec, "src", 1)?;
    if dst.buffer() == src.buffer() {
        return Err(Error::Aliasing {
            op: OP,
            what: "dst",
        });
    }
    let params = Params {
        n: len as u32,
        x_off: src_offset as u32,
        out_off: dst_offset as u32,
        ..Params::default()
    };
    launch(rec, "add", params, &[(1, src), (3, dst)])
}

/// Records `dst += src` for tensors of the same shape.
pub fn accumulate(rec: &mut Recorder, dst: &Tensor, src: &Tensor) -> Result<()> {
    same_shape(src, dst, "src")?;
    add(rec, dst, 0, src, 0, src.numel())
}

/// Records `x + y` (same shapes) into a new tensor: a copy of `x`, then `y` added.
pub fn sum(rec: &mut Recorder, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    same_shape(y, x, "y")?;
    let out = rec.empty(x.shape(), DType::F32)?;
    rec.copy(&out, x)?;
    accumulate(rec, &out, y)?;
    Ok(out)
}

fn same_shape(x: &Tensor, y: &Tensor, what: &'static str) -> Result<()> {
    if x.shape() != y.shape() {
        return Err(Error::ShapeMismatch {
            op: OP,
            what,
            expected: format!("{:?}", y.shape()),
            got: x.shape().to_vec(),
        });
    }
    Ok(())
}

/// Records `alpha · x` into a new tensor.
pub fn scale(rec: &mut Recorder, x: &Tensor, alpha: f32) -> Result<Tensor> {
    super::check_f32(rec, OP, &[("x", x)])?;
    nonempty(x, "x")?;
    let out = rec.empty(x.shape(), DType::F32)?;
    let params = Params {
        n: x.numel() as u32,
        alpha,
        ..Params::default()
    };
    launch(rec, "scale", params, &[(1, x), (3, &out)])?;
    Ok(out)
}

/// Records `x · y` elementwise into a new tensor: `y` of `x`'s shape, or one
/// value (`[1]`) that multiplies every element.
pub fn mul(rec: &mut Recorder, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    super::check_f32(rec, OP, &[("x", x), ("y", y)])?;
    nonempty(x, "x")?;
    let scalar = y.shape() == [1];
    if !scalar {
        same_shape(y, x, "y")?;
    }
    let out = rec.empty(x.shape(), DType::F32)?;
    let params = Params {
        n: x.numel() as u32,
        a: u32::from(scalar),
        ..Params::default()
    };
    launch(rec, "mul", params, &[(1, x), (2, y), (3, &out)])?;
    Ok(out)
}

/// Records the copy of a block of `rows × width` elements: row r comes from
/// `src.offset + r · src.width` and goes to `dst.offset + r · dst.width`, so the
/// block may be some of the columns of wider rows on either side (a slice along a
/// dimension, or its gradient put back in place).
pub fn copy_block(
    rec: &mut Recorder,
    rows: usize,
    width: usize,
    dst: Block,
    src: Block,
) -> Result<()> {
    if width == 0 || rows == 0 || width > src.width || width > dst.width {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "block [rows, width]",
            expected: format!("non-empty, at most {} columns", src.width.min(dst.width)),
            got: vec![rows, width],
        });
    }
    for (what, b) in [("src", &src), ("dst", &dst)] {
        super::check_f32(rec, OP, &[(what, b.tensor)])?;
        // The last element the block touches.
        let last = b.offset + (rows - 1) * b.width + width - 1;
        if last >= b.tensor.numel() || last > u32::MAX as usize {
            return Err(Error::ViewOutOfBounds {
                op: OP,
                what,
                last,
                len: b.tensor.numel(),
            });
        }
    }
    if dst.tensor.buffer() == src.tensor.buffer() {
        return Err(Error::Aliasing {
            op: OP,
            what: "dst",
        });
    }
    let params = Params {
        n: u32::try_from(rows * width).map_err(|_| too_large(rows, width))?,
        rows: rows as u32,
        a: src.width as u32,
        b: dst.width as u32,
        x_off: src.offset as u32,
        out_off: dst.offset as u32,
        ..Params::default()
    };
    launch(
        rec,
        "copy_block",
        params,
        &[(1, src.tensor), (3, dst.tensor)],
    )
}

/// Records `[x, y]` along the last dimension for `rows` rows: a new tensor
/// `[rows, x.width + y.width]`.
pub fn concat(rec: &mut Recorder, rows: usize, x: Block, y: Block) -> Result<Tensor> {
    x.check(rec, "x", rows)?;
    y.check(rec, "y", rows)?;
    let width = x.width + y.width;
    let out = rec.empty(&[rows, width], DType::F32)?;
    let params = Params {
        n: u32::try_from(rows * width).map_err(|_| too_large(rows, width))?,
        rows: rows as u32,
        a: x.width as u32,
        b: y.width as u32,
        x_off: x.offset as u32,
        y_off: y.offset as u32,
        ..Params::default()
    };
    launch(
        rec,
        "concat",
        params,
        &[(1, x.tensor), (2, y.tensor), (3, &out)],
    )?;
    Ok(out)
}

/// Records the backward of [`concat()`] for `rows` rows of `d` (width `a + b`):
/// new tensors `[rows, a]` and `[rows, b]`.
pub fn split(
    rec: &mut Recorder,
    rows: usize,
    d: Block,
    a: usize,
    b: usize,
) -> Result<(Tensor, Tensor)> {
    if d.width != a + b || a == 0 || b == 0 {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "d",
            expected: format!("rows of {a} + {b}, both parts non-empty"),
            got: vec![rows, d.width],
        });
    }
    d.check(rec, "d", rows)?;
    let dx = rec.empty(&[rows, a], DType::F32)?;
    let dy = rec.empty(&[rows, b], DType::F32)?;
    let params = Params {
        n: (rows * d.width) as u32,
        rows: rows as u32,
        a: a as u32,
        b: b as u32,
        x_off: d.offset as u32,
        ..Params::default()
    };
    launch(rec, "split", params, &[(4, d.tensor), (5, &dx), (6, &dy)])?;
    Ok((dx, dy))
}

/// Records `x` `[rows, a, b, inner]` with its middle two dimensions swapped:
/// a new tensor `[rows, b, a, inner]`.
pub fn transpose(
    rec: &mut Recorder,
    x: &Tensor,
    [rows, a, b, inner]: [usize; 4],
) -> Result<Tensor> {
    super::check_f32(rec, OP, &[("x", x)])?;
    nonempty(x, "x")?;
    let n = rows * a * b * inner;
    if n != x.numel() {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "x",
            expected: format!("[{rows}, {a}, {b}, {inner}]"),
            got: x.shape().to_vec(),
        });
    }
    let out = rec.empty(&[rows, b, a, inner], DType::F32)?;
    let params = Params {
        n: u32::try_from(n).map_err(|_| too_large(rows, a * b * inner))?,
        rows: rows as u32,
        a: a as u32,
        b: b as u32,
        inner: inner as u32,
        ..Params::default()
    };
    launch(rec, "transpose", params, &[(1, x), (3, &out)])?;
    Ok(out)
}

fn too_large(rows: usize, width: usize) -> Error {
    Error::LimitExceeded {
        op: OP,
        what: "elements of one concatenation",
        value: (rows as u64).saturating_mul(width as u64),
        limit: u32::MAX.into(),
    }
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::ELEMENTWISE);
