//! Elman RNN cell (`shaders/rnn_cell.wgsl`) with tanh or relu, as torch.nn.RNN,
//! and its backward. Layouts and the step convention are in
//! [`recurrence`].

use super::recurrence::{self, BackwardIo, Cell, ForwardIo, Geometry};
use crate::error::Result;
use crate::gpu::Recorder;
use crate::shaders;

/// The Elman cell with tanh (`relu` false) or relu: 1 gate, nothing saved beyond h.
pub const fn cell(relu: bool) -> Cell {
    Cell {
        shader: shaders::RNN_CELL,
        gates: 1,
        saves_acts: false,
        has_c: false,
        constants: if relu { &[("RELU", 1.0)] } else { &[] },
        dgi_is_dgh: true,
    }
}

/// Records forward step `step`; see [`recurrence::forward`].
pub fn forward(
    rec: &mut Recorder,
    relu: bool,
    geo: Geometry,
    step: usize,
    io: &ForwardIo,
) -> Result<()> {
    recurrence::forward(rec, &cell(relu), geo, step, io, None)
}

/// Records backward step `step`; see [`recurrence::backward`].
pub fn backward(
    rec: &mut Recorder,
    relu: bool,
    geo: Geometry,
    step: usize,
    io: &BackwardIo,
) -> Result<()> {
    recurrence::backward(rec, &cell(relu), geo, step, io)
}
