//! Recurrent sequence models trained and run on the GPU through WGSL compute
//! shaders on wgpu (Vulkan, Metal, DX12, GL).
//!
//! The host records work into a [`Recorder`] (one command encoder, one submit per
//! step); ops in [`ops`] launch the shaders in `shaders/`; [`Tensor`]s live in GPU
//! buffers drawn from the [`Context`]'s pool. A [`Tape`] over a recorder records
//! the backward of every op and layer, so models ([`models`]) are written
//! forward-only and trained by one generic step ([`train::TrainStep`]).
//!
//! Layers: models → nn, train → tape → ops → gpu; `data` knows no layers and
//! `nn` no optimizer.

#![deny(missing_docs)]

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

pub use error::{Error, KernelProblem, Result};
pub use gpu::{Context, ContextOptions, Kernel, Recorder};
pub use tape::{Tape, Var};
pub use tensor::{DType, Tensor};
/// The wgpu this crate is built on, for interop (features, limits, devices).
pub use wgpu;

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
