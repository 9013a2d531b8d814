//! One module per shader file; each launches its shader's entry points.

pub mod fma_probe;
pub mod gemm;
pub mod gru_cell;
pub mod lstm_cell;
pub mod recurrence;
pub mod rnn_cell;
