//! Fused GRU cell (`shaders/gru_cell.wgsl`): gates r, z, n as torch.nn.GRU, with
//! b_hn inside the reset product, and its backward. Layouts and the step
//! convention are in [`recurrence`].

use super::recurrence::{self, BackwardIo, Cell, ForwardIo, Geometry};
use crate::error::Result;
use crate::gpu::Recorder;
use crate::shaders;

/// The GRU cell: 3 gates, saves [r z n (W_hn·h + b_hn)].
pub const CELL: Cell = Cell {
    shader: shaders::GRU_CELL,
    gates: 3,
    saves_acts: true,
    has_c: false,
    constants: &[],
    dgi_is_dgh: false,
};

/// Records forward step `step`; see [`recurrence::forward`].
pub fn forward(rec: &mut Recorder, geo: Geometry, step: usize, io: &ForwardIo) -> Result<()> {
    recurrence::forward(rec, &CELL, geo, step, io, None)
}

/// Records backward step `step`; see [`recurrence::backward`].
pub fn backward(rec: &mut Recorder, geo: Geometry, step: usize, io: &BackwardIo) -> Result<()> {
    recurrence::backward(rec, &CELL, geo, step, io)
}
