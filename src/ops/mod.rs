//! One module per shader file; each launches its shader's entry points.

pub mod fma_probe;
pub mod gemm;
