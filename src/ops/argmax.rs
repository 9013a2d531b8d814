//! Row-wise argmax on the GPU (`shaders/argmax.wgsl`): greedy decoding and
//! accuracy read back one index per row instead of the scores.

use crate::error::Result;
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "argmax";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    c: u32,
    _pad: [u32; 2],
}

/// Records the index of the largest value along the last dimension of `x`
/// (`[.., C]`; the lowest index on ties); returns a u32 tensor of the leading
/// shape.
pub fn forward(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    super::check_f32(rec, OP, &[("x", x)])?;
    let (rows, c, per_row) = super::rows_of(OP, "x [.., C]", x)?;
    let out = rec.empty(&per_row, DType::U32)?;
    let params = Params {
        rows: rows as u32,
        c: c as u32,
        ..Params::default()
    };
    let pipeline = rec.context().pipeline(&shaders::ARGMAX, "forward", &[]);
    let groups = super::grid_rows(rec, 1, rows);
    rec.dispatch_tensors(
        "argmax::forward",
        &pipeline,
        bytemuck::bytes_of(&params),
        &[(1, x), (2, &out)],
        groups,
    )?;
    Ok(out)
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::ARGMAX);
