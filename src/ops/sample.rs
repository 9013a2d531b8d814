//! Sampling from softmax(logits / temperature) on the GPU, optionally among the
//! top k logits and within the top-p (nucleus) mass (`shaders/sample.wgsl`): text
//! generation reads back one id per row instead of the distribution.

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
    top_k: u32,
    top_p: f32,
    _pad: [u32; 3],
}

/// How to draw: the temperature, and optionally only among the `top_k` largest
/// logits and the smallest set of largest ones holding `top_p` of the
/// probability (applied after top-k, as Hugging Face's samplers do). Logits tied
/// with the last one kept are kept too.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Divides the logits (1: as they are).
    pub temperature: f32,
    /// Keep the k most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the most likely tokens up to this probability mass.
    pub top_p: Option<f32>,
}

impl Sampling {
    /// From the whole distribution at `temperature`.
    pub fn at(temperature: f32) -> Self {
        Self {
            temperature,
            top_k: None,
            top_p: None,
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |what, expected, got: String| {
            Err(Error::InvalidArgument {
                op: OP,
                what,
                expected,
                got,
            })
        };
        let t = self.temperature;
        if !(t.is_finite() && t > 0.0) {
            return bad("temperature", "a finite number above 0", t.to_string());
        }
        if self.top_k == Some(0) {
            return bad("top_k", "at least 1", "0".into());
        }
        match self.top_p {
            Some(p) if !(p > 0.0 && p <= 1.0) => bad("top_p", "in (0, 1]", p.to_string()),
            _ => Ok(()),
        }
    }
}

/// Records one draw per row of `logits` (`[.., C]`) from softmax(logits /
/// temperature), restricted as `how` says, inverting its cumulative distribution
/// at `u` (`[rows]`, uniform numbers in [0, 1) the caller draws, so that runs
/// repeat); returns the u32 indices, shaped as the leading dimensions.
pub fn forward(rec: &mut Recorder, logits: &Tensor, u: &Tensor, how: &Sampling) -> Result<Tensor> {
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
    how.check()?;
    let out = rec.empty(&per_row, DType::U32)?;
    let params = Params {
        rows: rows as u32,
        c: c as u32,
        inv_t: 1.0 / how.temperature,
        top_k: how.top_k.map_or(0, |k| k.min(c) as u32),
        top_p: how.top_p.unwrap_or(1.0),
        _pad: [0; 3],
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
