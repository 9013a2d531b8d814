//! Fused LSTM cell (`shaders/lstm_cell.wgsl`): gates i, f, g, o as torch.nn.LSTM,
//! cell and hidden state in one kernel per step, and its backward. Layouts and
//! the step convention are in [`recurrence`].

use super::recurrence::{self, BackwardIo, Cell, ForwardIo, Geometry};
use crate::error::Result;
use crate::gpu::Recorder;
use crate::shaders;

/// The LSTM cell: 4 gates, saves [i f g o], carries c.
pub const CELL: Cell = Cell {
    shader: shaders::LSTM_CELL,
    gates: 4,
    saves_acts: true,
    has_c: true,
    constants: &[],
    dgi_is_dgh: true,
};

/// Records forward step `step`; see [`recurrence::forward`].
pub fn forward(rec: &mut Recorder, geo: Geometry, step: usize, io: &ForwardIo) -> Result<()> {
    recurrence::forward(rec, &CELL, geo, step, io, None)
}

/// Records backward step `step`; see [`recurrence::backward`].
pub fn backward(rec: &mut Recorder, geo: Geometry, step: usize, io: &BackwardIo) -> Result<()> {
    recurrence::backward(rec, &CELL, geo, step, io)
}
