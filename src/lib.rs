//! Recurrent sequence models trained and run on the GPU through WGSL compute
//! shaders on wgpu (Vulkan, Metal, DX12, GL).
//!
//! The host records work into a [`Recorder`] (one command encoder, one submit per
//! step); ops in [`ops`] launch the shaders in `shaders/`; [`Tensor`]s live in GPU
//! buffers drawn from the [`Context`]'s pool.

pub mod data;
pub mod error;
pub mod gpu;
pub mod init;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod ops;
pub mod shaders;
pub mod tape;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
pub use gpu::{Context, ContextOptions, Recorder};
pub use tape::{Tape, Var};
pub use tensor::{DType, Tensor};
/// The wgpu this crate is built on, for interop (features, limits, devices).
pub use wgpu;
