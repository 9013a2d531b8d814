//! What the training examples share: the progress bar, checkpoint folders and
//! resuming, and file errors.
#![allow(dead_code)] // each example uses its own subset

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use rnn_wgpu::nn::Named;
use rnn_wgpu::train::checkpoint::Checkpoint;
use rnn_wgpu::train::Optimizer;
use rnn_wgpu::{Context, Error, Result};

/// A progress bar of `len` steps labelled `prefix`; its message shows the loss
/// and throughput.
pub fn bar(len: usize, prefix: String) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar
}

/// A file error naming `path`.
pub fn file_err(path: &Path, e: impl ToString) -> Error {
    Error::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Creates the folder a checkpoint goes to.
pub fn checkpoint_dir(checkpoint: &Path) -> Result<()> {
    match checkpoint.parent() {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e)),
        None => Ok(()),
    }
}

/// Loads the parameters and optimizer state saved at `checkpoint` into `params`
/// and `opt`.
pub fn resume(checkpoint: &Path, params: &[Named], opt: &mut Optimizer) -> Result<()> {
    let name = checkpoint.display().to_string();
    let ck = Checkpoint::load(checkpoint)?;
    ck.apply(params, &name)?;
    ck.apply_optimizer(opt, &name)?;
    println!("resumed from {name} at step {}", opt.steps());
    Ok(())
}

/// The context's buffer pool in a few words, for watching memory over long runs:
/// what it holds, the most ever in use at once, and the buffers created so far.
pub fn pool(ctx: &Context) -> String {
    let s = ctx.pool_stats();
    format!(
        "pool {} MiB (peak in use {} MiB, {} of them packed operands; {} MiB idle, {} buffers created)",
        s.bytes >> 20,
        s.peak_live_bytes >> 20,
        s.peak_texture_bytes >> 20,
        s.idle_bytes >> 20,
        s.created
    )
}
