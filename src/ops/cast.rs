//! Storage conversion between f32 and f16, and copies and zero fills of element
//! ranges whatever the storage (a buffer copy or clear moves whole 4-byte words,
//! which an f16 range at an odd offset is not). See `shaders/cast.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::element_range;
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "cast";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct Params {
    n: u32,
    src_off: u32,
    dst_off: u32,
    _pad: u32,
}

/// Records `dst[dst_offset..][..len] = src[src_offset..][..len]`, rounding to
/// `dst`'s storage (f32 or f16 each). Between f32 tensors this is a buffer copy.
pub fn copy_range(
    rec: &mut Recorder,
    dst: &Tensor,
    dst_offset: usize,
    src: &Tensor,
    src_offset: usize,
    len: usize,
) -> Result<()> {
    super::check_float(rec, OP, &[("dst", dst), ("src", src)])?;
    if dst.dtype() == DType::F32 && src.dtype() == DType::F32 {
        return rec.copy_range(dst, dst_offset, src, src_offset, len);
    }
    element_range(OP, "src", src, src_offset, len)?;
    element_range(OP, "dst", dst, dst_offset, len)?;
    if dst.buffer() == src.buffer() {
        return Err(Error::Aliasing {
            op: OP,
            what: "dst",
        });
    }
    let params = Params {
        n: len as u32,
        src_off: src_offset as u32,
        dst_off: dst_offset as u32,
        _pad: 0,
    };
    let f16 = super::f16_aliases(&[("src_t", src), ("dst_t", dst)]);
    launch(rec, "convert", &f16, params, &[(1, src), (2, dst)])
}

/// Records `dst[offset..][..len] = 0` for f32 or f16 storage. On f32 a buffer clear.
pub fn zero_range(rec: &mut Recorder, dst: &Tensor, offset: usize, len: usize) -> Result<()> {
    super::check_float(rec, OP, &[("dst", dst)])?;
    if dst.dtype() == DType::F32 {
        return rec.zero_range(dst, offset, len);
    }
    element_range(OP, "dst", dst, offset, len)?;
    let params = Params {
        n: len as u32,
        dst_off: offset as u32,
        ..Params::default()
    };
    let f16 = super::f16_aliases(&[("dst_t", dst)]);
    launch(rec, "zero", &f16, params, &[(2, dst)])
}

/// Records a copy of `x` stored as `dtype` (f32 or f16); `x` itself when it
/// already is.
pub fn to(rec: &mut Recorder, x: &Tensor, dtype: DType) -> Result<Tensor> {
    super::check_float(rec, OP, &[("x", x)])?;
    if x.dtype() == dtype {
        return Ok(x.clone());
    }
    if dtype == DType::U32 {
        return Err(Error::DType {
            op: OP,
            what: "dtype",
            expected: DType::F16,
            got: dtype,
        });
    }
    let out = rec.empty(x.shape(), dtype)?;
    copy_range(rec, &out, 0, x, 0, x.numel())?;
    Ok(out)
}

fn launch(
    rec: &mut Recorder,
    entry: &'static str,
    f16: &[&'static str],
    params: Params,
    tensors: &[(u32, &Tensor)],
) -> Result<()> {
    let groups = super::grid_elems(rec, params.n as usize);
    rec.dispatch_entry(
        &shaders::CAST,
        entry,
        f16,
        bytemuck::bytes_of(&params),
        tensors,
        groups,
    )
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::CAST);
