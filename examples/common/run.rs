//! What the training examples share: the progress bar, checkpoint folders,
//! resuming, the parameters kept for averaging, and file errors.
#![allow(dead_code)] // each example uses its own subset

use std::cell::RefCell;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rnn_wgpu::data::token_buckets;
use rnn_wgpu::nn::Named;
use rnn_wgpu::train::checkpoint::Checkpoint;
use rnn_wgpu::train::{Epochs, Event, History, Optimizer, Stop};
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

/// Length buckets as `train::fit` reads them: epoch e's batches are
/// `token_buckets` of the lengths seeded by `seed + e`, and `make(indices,
/// epoch, index)` builds one from its sequences' indices (any randomness it
/// draws from the epoch and index).
pub struct Buckets<B, F> {
    lengths: Vec<usize>,
    size: usize,
    max_tokens: usize,
    seed: u64,
    make: F,
    /// The batches of the epoch asked for last.
    order: Option<(usize, Vec<Vec<usize>>)>,
    batch: PhantomData<fn() -> B>,
}

impl<B, F: FnMut(&[usize], usize, usize) -> Result<B>> Buckets<B, F> {
    /// Batches of at most `size` sequences and `max_tokens` padded tokens.
    pub fn new(lengths: Vec<usize>, size: usize, max_tokens: usize, seed: u64, make: F) -> Self {
        Self {
            lengths,
            size,
            max_tokens,
            seed,
            make,
            order: None,
            batch: PhantomData,
        }
    }

    fn order(&mut self, epoch: usize) -> &[Vec<usize>] {
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let seed = self.seed + epoch as u64;
            let batches = token_buckets(&self.lengths, self.size, self.max_tokens, seed);
            self.order = Some((epoch, batches));
        }
        self.order.as_ref().map_or(&[], |(_, b)| b)
    }
}

impl<B, F: FnMut(&[usize], usize, usize) -> Result<B>> Epochs for Buckets<B, F> {
    type Batch = B;

    fn batches(&mut self, epoch: usize) -> Result<usize> {
        Ok(self.order(epoch).len())
    }

    fn batch(&mut self, epoch: usize, index: usize) -> Result<B> {
        let indices = self.order(epoch)[index].clone();
        (self.make)(&indices, epoch, index)
    }
}

/// What a `train::fit` run shows as it goes: a bar per epoch with the loss,
/// the model's metrics and the throughput (`tokens` counts a batch's), and a line
/// per evaluation (`score` words it) with the run's clock and the memory pool.
pub fn progress<B>(
    ctx: &Context,
    score: impl Fn(f64) -> String,
    tokens: impl Fn(&B) -> usize,
) -> impl FnMut(Event<'_, B>) {
    progress_then(ctx, score, ("tokens", tokens), || None)
}

/// [`progress`] counting `unit`s (characters) with `count`, each evaluation's
/// line followed by what `then` gives (a sample of the model's text).
pub fn progress_then<B>(
    ctx: &Context,
    score: impl Fn(f64) -> String,
    (unit, tokens): (&'static str, impl Fn(&B) -> usize),
    mut then: impl FnMut() -> Option<String>,
) -> impl FnMut(Event<'_, B>) {
    let ctx = ctx.clone();
    let mut shown: Option<ProgressBar> = None;
    // Tokens and seconds of training since the epoch's bar started.
    let (mut count, mut secs, mut t0) = (0usize, 0.0f64, Instant::now());
    let mut last = None;
    move |event| match event {
        Event::Resumed {
            step, epoch, index, ..
        } => {
            println!(
                "resumed at step {step}: epoch {}, batch {}",
                epoch + 1,
                index + 1
            )
        }
        Event::Epoch {
            epoch,
            batches,
            from,
            ..
        } => {
            let b = bar(batches, format!("epoch {}", epoch + 1));
            b.set_position(from as u64);
            shown = Some(b);
            (count, secs) = (0, 0.0);
            t0 = Instant::now();
        }
        Event::Step {
            batch,
            report,
            index,
            ..
        } => {
            count += tokens(batch);
            secs += t0.elapsed().as_secs_f64();
            last = Some(index);
            if let Some(b) = &shown {
                let metrics: String = report
                    .metrics
                    .iter()
                    .map(|(name, v)| format!("  {name} {v:.3}"))
                    .collect();
                b.set_message(format!(
                    "loss {:.3}{metrics}  {:.0} {unit}/s",
                    report.loss,
                    count as f64 / secs
                ));
                b.inc(1);
            }
            t0 = Instant::now();
        }
        Event::Evaluated {
            epoch,
            step,
            score: s,
            minutes,
            ..
        } => {
            let mut line = format!(
                "epoch {} (step {step}, {minutes:.1} min) {}  ({:.0} {unit}/s training; {})",
                epoch + 1,
                score(s),
                count as f64 / secs,
                pool(&ctx)
            );
            if let Some(more) = then() {
                line = format!("{line}\n{more}");
            }
            match &shown {
                // Inside the epoch: the line goes above its bar.
                Some(b) if last.is_some_and(|i| i + 1 < b.length().unwrap_or(0) as usize) => {
                    b.suspend(|| println!("{line}"))
                }
                _ => {
                    if let Some(b) = shown.take() {
                        b.finish();
                    }
                    println!("{line}");
                }
            }
            t0 = Instant::now();
        }
        Event::Stopped {
            why: Stop::Time,
            step,
            ..
        } => println!("time budget reached at step {step}"),
        _ => {}
    }
}

/// (x, y) points of a curve.
pub type Points = Vec<(f64, f64)>;

/// A `train::fit` run's training losses and evaluation scores against its clock
/// (minutes), as the plots draw them.
pub fn curves(history: &History) -> (Points, Points) {
    let losses = history.losses.iter().map(|&(_, l)| f64::from(l));
    let scores = history.scores.iter().map(|&(_, v)| v);
    (
        history.loss_minutes.iter().copied().zip(losses).collect(),
        history.score_minutes.iter().copied().zip(scores).collect(),
    )
}

/// A file error naming `path`.
pub fn file_err(path: &Path, e: impl ToString) -> Error {
    Error::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The parameters at a run's last `keep` evaluations, saved beside its
/// checkpoint (`runs/translate.step1200.safetensors` after step 1200 for
/// `runs/translate.safetensors`), so that a resumed run averages the
/// evaluations before its resume too.
pub struct Snapshots<'a> {
    /// The run's checkpoint.
    pub checkpoint: &'a Path,
    /// How many evaluations' parameters are kept.
    pub keep: usize,
}

impl<'a> Snapshots<'a> {
    /// The snapshots of the run at `checkpoint`, `keep` of them; a run that
    /// does not resume first deletes an earlier run's.
    pub fn new(checkpoint: &'a Path, keep: usize, resume: bool) -> Result<Self> {
        let snapshots = Self { checkpoint, keep };
        if !resume {
            for step in snapshots.steps()? {
                snapshots.remove(step)?;
            }
        }
        Ok(snapshots)
    }

    /// `on` that first saves the parameters `params` lists at each evaluation
    /// (when keeping two or more); the first error doing so goes to `failed`,
    /// for the caller to return once `fit` is done.
    pub fn keeping<'b, B>(
        &'b self,
        params: impl Fn() -> Vec<Named> + 'b,
        failed: &'b RefCell<Option<Error>>,
        mut on: impl FnMut(Event<'_, B>) + 'b,
    ) -> impl FnMut(Event<'_, B>) + 'b {
        move |event| {
            if let (Event::Evaluated { step, .. }, true) = (&event, self.keep > 1) {
                if let Err(e) = self.save(&params(), *step) {
                    failed.borrow_mut().get_or_insert(e);
                }
            }
            on(event)
        }
    }

    fn path(&self, step: u32) -> PathBuf {
        self.checkpoint
            .with_extension(format!("step{step}.safetensors"))
    }

    /// The steps of the snapshots on disk, oldest first.
    pub fn steps(&self) -> Result<Vec<u32>> {
        let dir = match self.checkpoint.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let stem = self.checkpoint.file_stem().unwrap_or_default();
        let prefix = format!("{}.step", stem.to_string_lossy());
        let mut steps: Vec<u32> = std::fs::read_dir(dir)
            .map_err(|e| file_err(dir, e))?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name();
                let name = name.to_str()?;
                name.strip_prefix(&prefix)?
                    .strip_suffix(".safetensors")?
                    .parse()
                    .ok()
            })
            .collect();
        steps.sort_unstable();
        Ok(steps)
    }

    /// Saves `params` as the snapshot of `step` and deletes those older than
    /// the last `keep`.
    pub fn save(&self, params: &[Named], step: u32) -> Result<()> {
        Checkpoint::capture(params, None)?.save(&self.path(step))?;
        let steps = self.steps()?;
        let old = steps.len().saturating_sub(self.keep);
        steps[..old].iter().try_for_each(|&s| self.remove(s))
    }

    /// Deletes the snapshot of `step`.
    pub fn remove(&self, step: u32) -> Result<()> {
        let path = self.path(step);
        std::fs::remove_file(&path).map_err(|e| file_err(&path, e))
    }

    /// The snapshots of the last `keep` evaluations in `scores` (the run's, those
    /// before a resume included), oldest first: one missing (its run stopped
    /// before saving it) leaves the older ones out too. None when keeping fewer
    /// than two (nothing to average).
    pub fn last(&self, scores: &[(u32, f64)]) -> Result<Vec<PathBuf>> {
        if self.keep < 2 {
            return Ok(Vec::new());
        }
        let on_disk = self.steps()?;
        let kept = scores
            .iter()
            .rev()
            .take(self.keep)
            .take_while(|(step, _)| on_disk.contains(step));
        let mut paths: Vec<PathBuf> = kept.map(|&(step, _)| self.path(step)).collect();
        paths.reverse();
        Ok(paths)
    }
}

/// The mean of the parameters saved in `paths` (at least one), saved beside
/// `checkpoint` as *.avg.safetensors and loaded into `params`; returns its path.
pub fn average(paths: &[PathBuf], checkpoint: &Path, params: &[Named]) -> Result<PathBuf> {
    let Some((first, rest)) = paths.split_first() else {
        return Err(Error::Empty {
            op: "average",
            what: "snapshots",
            shape: vec![0],
        });
    };
    let mut mean = Checkpoint::load(first)?;
    for path in rest {
        let other = Checkpoint::load(path)?;
        for (name, (_, values)) in &mut mean.tensors {
            let Some((_, add)) = other
                .tensors
                .get(name)
                .filter(|t| t.1.len() == values.len())
            else {
                return Err(file_err(
                    path,
                    format!("no tensor {name} as in {}", first.display()),
                ));
            };
            values.iter_mut().zip(add).for_each(|(m, x)| *m += x);
        }
    }
    let n = paths.len() as f32;
    for (_, values) in mean.tensors.values_mut() {
        values.iter_mut().for_each(|m| *m /= n);
    }
    let path = checkpoint.with_extension("avg.safetensors");
    mean.save(&path)?;
    mean.apply(params, &path.display().to_string())?;
    Ok(path)
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
