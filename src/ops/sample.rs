//! Sampling from softmax(logits / temperature) on the GPU (`shaders/sample.wgsl`):
//! text generation reads back one id per row instead of the distribution.

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const OP: &str = "sample";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    c: u32,
    inv_t: f32,
    _pad: u32,
}

/// Records one draw per row of `logits` (`[.., C]`) from softmax(logits /
/// `temperature`), inverting its cumulative distribution at `u` (`[rows]`,
/// uniform numbers in [0, 1) the caller draws, so that runs repeat); returns the
/// u32 indices, shaped as the leading dimensions.
pub fn forward(
    rec: &mut Recorder,
    logits: &Tensor,
    u: &Tensor,
    temperature: f32,
) -> Result<Tensor> {
    super::check_f32(rec, OP, &[("logits", logits), ("u", u)])?;
    let (rows, c, per_row) = super::rows_of(OP, "logits [.., C]", logits)?;
    if u.shape() != [rows] {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "u",
            expected: format!("[{rows}], one per row"),
            got: u.shape().to_vec(),
        });
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::InvalidArgument {
            op: OP,
            what: "temperature",
            expected: "a finite number above 0",
            got: temperature.to_string(),
        });
    }
    let out = rec.empty(&per_row, DType::U32)?;
    let params = Params {
        rows: rows as u32,
        c: c as u32,
        inv_t: 1.0 / temperature,
        _pad: 0,
    };
    let pipeline = rec.context().pipeline(&shaders::SAMPLE, "forward", &[]);
    let groups = super::grid_rows(rec, 1, rows);
    rec.dispatch_tensors(
        "sample::forward",
        &pipeline,
        bytemuck::bytes_of(&params),
        &[(1, logits), (2, u), (3, &out)],
        groups,
    )?;
    Ok(out)
}

#[cfg(test)]
super::params_match_the_wgsl_struct!(crate::shaders::SAMPLE);
