//! One module per shader file; each launches its shader's entry points.

pub mod cross_entropy;
pub mod dropout;
pub mod embedding;
pub mod fma_probe;
pub mod gemm;
pub mod gru_cell;
pub mod lstm_cell;
pub mod mse;
pub mod optim;
pub mod recurrence;
pub mod rnn_cell;

use crate::gpu::Recorder;

/// Workgroups for `x_groups` along x and one row of workgroups per row, rows
/// beyond the per-dimension limit continuing in z (the shaders compute the row
/// as `wid.y + wid.z · nwg.y`).
pub(crate) fn grid_rows(rec: &Recorder, x_groups: usize, rows: usize) -> [u32; 3] {
    let max = rec.context().limits().max_compute_workgroups_per_dimension as usize;
    let y = rows.clamp(1, max);
    [x_groups as u32, y as u32, rows.div_ceil(y) as u32]
}

/// Workgroups of 64 for `n` elements, folded into y beyond the per-dimension
/// limit (the shaders compute the element as `gid.x + gid.y · nwg.x · 64`).
pub(crate) fn grid_elems(rec: &Recorder, n: usize) -> [u32; 3] {
    let max = rec.context().limits().max_compute_workgroups_per_dimension as usize;
    let groups = n.div_ceil(64);
    let x = groups.clamp(1, max);
    [x as u32, groups.div_ceil(x) as u32, 1]
}
