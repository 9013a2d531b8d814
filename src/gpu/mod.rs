//! Device, queue, buffers and pipelines: everything between wgpu and the ops.

mod context;
pub(crate) mod pipeline;
pub(crate) mod pool;
pub mod profile;
mod recorder;

pub use context::{parse_backends, Context, ContextOptions, RecordingStats};
pub use pool::PoolStats;
pub(crate) use recorder::element_range;
pub use recorder::Recorder;
