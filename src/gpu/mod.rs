//! Device, queue, buffers and pipelines: everything between wgpu and the ops.

mod context;
mod kernel;
pub(crate) mod pipeline;
pub(crate) mod pool;
pub mod profile;
mod recorder;
pub(crate) mod reflect;

pub use context::{parse_backends, CompileStats, Context, ContextOptions, RecordingStats};
pub use kernel::{Kernel, Launch};
pub use pool::PoolStats;
pub(crate) use recorder::element_range;
pub use recorder::Recorder;
