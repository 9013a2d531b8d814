//! One module per shader file; each launches its shader's entry points.
//!
//! This is the low-level layer, public for those who build their own layers
//! from the library's kernels. Its functions follow the shaders: their
//! signatures may change in any release (each change noted in CHANGELOG.md),
//! where those of `nn`, `models`, `tape` and `train` change only with a
//! migration note there. The ops check every argument as the layers above do.

pub mod argmax;
pub mod attention;
pub mod beam;
pub mod broadcast;
pub mod cast;
pub mod crf;
pub mod cross_entropy;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
#[cfg(not(target_arch = "wasm32"))]
pub mod fma_probe;
pub mod gemm;
pub mod gru_cell;
pub mod layer_norm;
pub mod layer_norm_lstm;
pub mod lstm_cell;
pub mod min_rnn;
pub mod mse;
pub mod optim;
pub mod projection;
pub mod recurrence;
pub mod reduce;
pub mod rnn_cell;
pub mod sample;
pub mod softmax;
pub mod stream_step;

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::tensor::{DType, Tensor};

/// Checks per-sequence lengths: one for each of `batch` sequences, each in
/// 1..=`max` (the padded length).
pub(crate) fn check_lengths(
    op: &'static str,
    what: &'static str,
    lengths: &[usize],
    batch: usize,
    max: usize,
) -> Result<()> {
    if lengths.len() != batch {
        return Err(Error::ShapeMismatch {
            op,
            what,
            expected: format!("[{batch}], one per sequence"),
            got: vec![lengths.len()],
        });
    }
    match lengths
        .iter()
        .enumerate()
        .find(|&(_, &n)| n == 0 || n > max)
    {
        Some((index, &value)) => Err(Error::LengthOutOfRange {
            op,
            index,
            value,
            max,
        }),
        None => Ok(()),
    }
}

/// Checks that `tensors` live on the recorder's device and hold f32.
pub(crate) fn check_f32(
    rec: &Recorder,
    op: &'static str,
    tensors: &[(&'static str, &Tensor)],
) -> Result<()> {
    check_dtypes(rec, op, tensors, &[DType::F32])
}

/// Checks that `tensors` live on the recorder's device and hold f32 or f16 (a
/// kernel that declares their bindings' storage aliases).
pub(crate) fn check_float(
    rec: &Recorder,
    op: &'static str,
    tensors: &[(&'static str, &Tensor)],
) -> Result<()> {
    check_dtypes(rec, op, tensors, &[DType::F32, DType::F16])
}

fn check_dtypes(
    rec: &Recorder,
    op: &'static str,
    tensors: &[(&'static str, &Tensor)],
    allowed: &[DType],
) -> Result<()> {
    let list: Vec<&Tensor> = tensors.iter().map(|&(_, t)| t).collect();
    rec.check_same_device(op, &list)?;
    match tensors.iter().find(|(_, t)| !allowed.contains(&t.dtype())) {
        Some(&(what, t)) => Err(Error::DType {
            op,
            what,
            expected: DType::F32,
            got: t.dtype(),
        }),
        None => Ok(()),
    }
}

/// The storage aliases of a shader (see [`crate::shaders::Shader`]) to declare f16
/// for these bound tensors: those that hold f16.
pub(crate) fn f16_aliases(bound: &[(&'static str, &Tensor)]) -> Vec<&'static str> {
    bound
        .iter()
        .filter(|(_, t)| t.dtype() == DType::F16)
        .map(|&(alias, _)| alias)
        .collect()
}

/// A unit test that the module's `Params` has the size naga lays out for the
/// `Params` of each shader given.
#[cfg(test)]
macro_rules! params_match_the_wgsl_struct {
    ($($shader:expr),+) => {
        #[cfg(test)]
        mod params_layout {
            #[test]
            fn params_match_the_wgsl_struct() {
                for shader in [$($shader),+] {
                    assert_eq!(
                        crate::shaders::wgsl_struct_size(&shader, "Params"),
                        std::mem::size_of::<super::Params>(),
                        "{}",
                        shader.name
                    );
                }
            }
        }
    };
}
#[cfg(test)]
pub(crate) use params_match_the_wgsl_struct;

/// The rows of `x` `[.., C]`: (rows, C, the shape of one value per row — the
/// leading dimensions, or `[1]` for a vector). Empty is an error.
pub(crate) fn rows_of(
    op: &'static str,
    what: &'static str,
    x: &Tensor,
) -> Result<(usize, usize, Vec<usize>)> {
    let c = x.shape().last().copied().unwrap_or(0);
    if c == 0 || x.numel() == 0 {
        return Err(Error::Empty {
            op,
            what,
            shape: x.shape().to_vec(),
        });
    }
    let lead = &x.shape()[..x.shape().len() - 1];
    let per_row = if lead.is_empty() {
        vec![1]
    } else {
        lead.to_vec()
    };
    Ok((x.numel() / c, c, per_row))
}

/// Workgroups for `x_groups` along x and one row of workgroups per row, rows
/// beyond the per-dimension limit continuing in z (the shaders compute the row
/// as `wid.y + wid.z · nwg.y`).
pub(crate) fn grid_rows(rec: &Recorder, x_groups: usize, rows: usize) -> [u32; 3] {
    let max = rec.context().limits().max_compute_workgroups_per_dimension as usize;
    let y = rows.clamp(1, max);
    [x_groups as u32, y as u32, rows.div_ceil(y) as u32]
}

/// Records `entry` of `shader` with one invocation per element of `n` (see
/// [`grid_elems`]), its parameters `params`.
pub(crate) fn launch_elems(
    rec: &mut Recorder,
    shader: &crate::shaders::Shader,
    entry: &'static str,
    n: usize,
    params: &[u8],
    tensors: &[(u32, &Tensor)],
) -> Result<()> {
    let groups = grid_elems(rec, n);
    rec.dispatch_entry(shader, entry, &[], params, tensors, groups)
}

/// Workgroups of 64 for `n` elements, folded into y beyond the per-dimension
/// limit (the shaders compute the element as `gid.x + gid.y · nwg.x · 64`).
pub(crate) fn grid_elems(rec: &Recorder, n: usize) -> [u32; 3] {
    let max = rec.context().limits().max_compute_workgroups_per_dimension as usize;
    let groups = n.div_ceil(64);
    let x = groups.clamp(1, max);
    [x as u32, groups.div_ceil(x) as u32, 1]
}

/// p·2³² rounded, for masks drawn from `shaders/hash.wgsl`: an element is chosen
/// (dropped, zoned out) where its hash is below it. Below 2³² for p < 1.
pub(crate) fn hash_threshold(p: f32) -> u32 {
    (f64::from(p) * 4_294_967_296.0)
        .round()
        .min(f64::from(u32::MAX)) as u32
}
