//! A training loop for any [`TrainStep`] model: epochs and a time budget, an
//! evaluation after each epoch that keeps the best model, checkpoints with an
//! exact resume (mid-epoch included), and the run's history for its plots.
//!
//! A resumed run repeats the run it resumes, step for step: the checkpoint holds
//! the parameters, the optimizer's state and step count, the position in the
//! data (epoch and batch) and the history; dropout masks come from the step's
//! number ([`Tape::with_stream`](crate::Tape::with_stream)); and the data
//! ([`Epochs`]) builds any batch from its epoch and index alone.
//!
//! ```
//! # use rnn_wgpu::{Context, Result, data::{Batch, Vocab}};
//! # use rnn_wgpu::models::{BiLstmTagger, TaggerConfig};
//! # use rnn_wgpu::nn::Module;
//! # use rnn_wgpu::train::{fit, Epochs, Event, FitConfig, Method, OptimConfig, Optimizer};
//! struct Toy;
//! impl Epochs for Toy {
//!     type Batch = Batch;
//!     fn batches(&mut self, _epoch: usize) -> Result<usize> {
//!         Ok(4)
//!     }
//!     fn batch(&mut self, epoch: usize, index: usize) -> Result<Batch> {
//!         let ids = [2 + (epoch + index) as u32 % 5, 3, 4];
//!         Batch::pad(&[(&ids[..], &[0, 1, 2][..])], Vocab::PAD)
//!     }
//! }
//! # fn main() -> Result<()> {
//! let ctx = Context::new()?;
//! let model = BiLstmTagger::new(&ctx, TaggerConfig::new(8, 3), 1)?;
//! let mut opt = Optimizer::new(&ctx, OptimConfig::new(Method::ADAM, 1e-2), model.params())?;
//! let cfg = FitConfig::new(3)
//!     .with_minutes(Some(1.0))
//!     .with_checkpoint(Some(std::env::temp_dir().join("toy.safetensors")));
//! // The score of an evaluation: higher is better unless `with_goal(Goal::Lower)`.
//! let history = fit(&ctx, &model, &mut opt, &mut Toy, &cfg, |_| Ok(0.5), |e| {
//!     if let Event::Evaluated { epoch, score, .. } = e {
//!         println!("epoch {} scored {score}", epoch + 1);
//!     }
//! })?;
//! assert_eq!(history.losses.len(), 12);
//! println!("best {:?}", history.best);
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::checkpoint::Checkpoint;
use super::{Optimizer, StepReport, TrainStep};
use crate::error::{Error, Result};
use crate::gpu::Context;

const OP: &str = "fit";

/// The training data as [`fit`] reads it: each epoch's batches in a fixed order,
/// any one of them built on demand, so that a resumed run starts at the very
/// batch it stopped before.
pub trait Epochs {
    /// What a training step takes.
    type Batch;

    /// How many batches epoch `epoch` (from 0) has.
    fn batches(&mut self, epoch: usize) -> Result<usize>;

    /// Batch `index` of epoch `epoch`. Its random choices (the epoch's order,
    /// word dropout) come from the epoch and the index, not from the batches
    /// built before it: a resumed run asks for it without the others.
    fn batch(&mut self, epoch: usize, index: usize) -> Result<Self::Batch>;
}

/// Whether a higher or a lower evaluation score is better.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Goal {
    /// Accuracy, BLEU.
    #[default]
    Higher,
    /// A loss, perplexity.
    Lower,
}

/// How [`fit`] runs: [`new`](Self::new) with the epochs, then `with_*`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FitConfig {
    /// Passes over the data.
    pub epochs: usize,
    /// Stop after this many minutes of the run (its evaluations included),
    /// then evaluate and save; `None`: no limit.
    pub minutes: Option<f64>,
    /// Stop after this many optimizer steps in all (counting those before a
    /// resume); `None`: no limit.
    pub max_steps: Option<u32>,
    /// The latest state (model, optimizer, position, history) goes here after
    /// every epoch and when the run stops; the best model beside it
    /// ([`best_path`]). `None`: nothing is written.
    pub checkpoint: Option<PathBuf>,
    /// Also save the latest state every this many steps.
    pub every: Option<u32>,
    /// Continue from `checkpoint`.
    pub resume: bool,
    /// Which evaluation scores are better.
    pub goal: Goal,
}

impl FitConfig {
    /// `epochs` passes, no time limit, nothing saved.
    pub fn new(epochs: usize) -> Self {
        Self {
            epochs,
            minutes: None,
            max_steps: None,
            checkpoint: None,
            every: None,
            resume: false,
            goal: Goal::Higher,
        }
    }

    /// Sets [`minutes`](Self::minutes).
    pub fn with_minutes(mut self, minutes: Option<f64>) -> Self {
        self.minutes = minutes;
        self
    }

    /// Sets [`max_steps`](Self::max_steps).
    pub fn with_max_steps(mut self, max_steps: Option<u32>) -> Self {
        self.max_steps = max_steps;
        self
    }

    /// Sets [`checkpoint`](Self::checkpoint).
    pub fn with_checkpoint(mut self, checkpoint: Option<PathBuf>) -> Self {
        self.checkpoint = checkpoint;
        self
    }

    /// Sets [`every`](Self::every).
    pub fn with_every(mut self, every: Option<u32>) -> Self {
        self.every = every;
        self
    }

    /// Sets [`resume`](Self::resume).
    pub fn with_resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Sets [`goal`](Self::goal).
    pub fn with_goal(mut self, goal: Goal) -> Self {
        self.goal = goal;
        self
    }

    fn check(&self) -> Result<()> {
        let bad = |what: &'static str, expected: &'static str, got: String| {
            Err(Error::InvalidArgument {
                op: OP,
                what,
                expected,
                got,
            })
        };
        if let Some(m) = self.minutes.filter(|m| !(m.is_finite() && *m > 0.0)) {
            return bad("minutes", "a finite number above 0", m.to_string());
        }
        if self.every == Some(0) {
            return bad("every", "at least 1 step", "0".into());
        }
        if self.resume && self.checkpoint.is_none() {
            return bad("resume", "a checkpoint to resume from", "none".into());
        }
        Ok(())
    }
}

/// Where [`fit`] keeps the best model of a run saving to `checkpoint`:
/// `runs/tagger.safetensors` → `runs/tagger.best.safetensors`.
pub fn best_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("best.safetensors")
}

/// Why a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stop {
    /// Every epoch ran.
    Epochs,
    /// The time budget ran out.
    Time,
    /// The step limit was reached.
    Steps,
}

/// What [`fit`] tells its observer as the run goes.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a, B> {
    /// Continued from the checkpoint at `step`, at batch `index` of `epoch`.
    Resumed {
        /// The optimizer's step count.
        step: u32,
        /// The epoch (from 0).
        epoch: usize,
        /// The next batch of it.
        index: usize,
    },
    /// An epoch starts (or continues) at batch `from` of `batches`.
    Epoch {
        /// The epoch (from 0).
        epoch: usize,
        /// Its batches.
        batches: usize,
        /// The first batch this run trains on.
        from: usize,
    },
    /// A step trained on `batch`, the `index`-th of `epoch`.
    Step {
        /// The epoch (from 0).
        epoch: usize,
        /// The batch's place in the epoch.
        index: usize,
        /// The batch.
        batch: &'a B,
        /// The step's loss, gradient norm and metrics.
        report: &'a StepReport,
        /// The optimizer's step count after it.
        step: u32,
    },
    /// An evaluation after `epoch` (or when the run stopped inside it).
    Evaluated {
        /// The epoch (from 0).
        epoch: usize,
        /// The optimizer's step count.
        step: u32,
        /// The score.
        score: f64,
        /// Whether it is the best of the run so far (its model was saved).
        best: bool,
    },
    /// The run stopped.
    Stopped {
        /// Why.
        why: Stop,
        /// The optimizer's step count.
        step: u32,
    },
}

/// A run's history, kept in its checkpoint: a resumed run's history (and so its
/// plots and its best score) covers the whole run.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct History {
    /// (optimizer step, loss) of every step.
    pub losses: Vec<(u32, f32)>,
    /// (optimizer step, score) of every evaluation.
    pub scores: Vec<(u32, f64)>,
    /// The best (step, score).
    pub best: Option<(u32, f64)>,
    /// Why the run stopped.
    pub stop: Option<Stop>,
}

/// The position of the next batch and the history, as a checkpoint holds them.
fn store(ck: &mut Checkpoint, history: &History, epoch: usize, index: usize) {
    let pairs = |v: Vec<f32>| (vec![v.len() / 2, 2], v);
    let losses = history
        .losses
        .iter()
        .flat_map(|&(s, l)| [s as f32, l])
        .collect();
    let scores = history
        .scores
        .iter()
        .flat_map(|&(s, v)| [s as f32, v as f32])
        .collect();
    ck.tensors.insert("fit.losses".into(), pairs(losses));
    ck.tensors.insert("fit.scores".into(), pairs(scores));
    ck.metadata.insert("fit.epoch".into(), epoch.to_string());
    ck.metadata.insert("fit.index".into(), index.to_string());
    if let Some(best) = history.best {
        mark_best(ck, best);
    }
}

/// The best (step, score) in a checkpoint's metadata: the exact score, which
/// f32 tensors would round.
fn mark_best(ck: &mut Checkpoint, (step, score): (u32, f64)) {
    ck.metadata.insert("fit.best_step".into(), step.to_string());
    ck.metadata.insert("fit.best".into(), score.to_string());
}

/// What [`store`] wrote: the position and the history.
fn restore(ck: &Checkpoint, name: &str) -> Result<(usize, usize, History)> {
    let err = |reason: String| Error::File {
        path: name.into(),
        reason,
    };
    let meta = |key: &str| {
        ck.metadata
            .get(key)
            .ok_or_else(|| err(format!("no {key} in the metadata: not saved by fit")))
    };
    let number =
        |key: &str| -> Result<usize> { meta(key)?.parse().map_err(|e| err(format!("{key}: {e}"))) };
    let pairs = |key: &str| -> Result<Vec<(u32, f32)>> {
        match ck.tensors.get(key) {
            Some((shape, v)) if shape.len() == 2 && shape[1] == 2 => {
                Ok(v.chunks(2).map(|p| (p[0] as u32, p[1])).collect())
            }
            _ => Err(err(format!("no {key} of shape [n, 2]"))),
        }
    };
    let best = match (
        ck.metadata.get("fit.best_step"),
        ck.metadata.get("fit.best"),
    ) {
        (Some(step), Some(score)) => Some((
            step.parse()
                .map_err(|e| err(format!("fit.best_step: {e}")))?,
            score.parse().map_err(|e| err(format!("fit.best: {e}")))?,
        )),
        _ => None,
    };
    let history = History {
        losses: pairs("fit.losses")?,
        scores: pairs("fit.scores")?
            .into_iter()
            .map(|(s, v)| (s, f64::from(v)))
            .collect(),
        best,
        stop: None,
    };
    Ok((number("fit.epoch")?, number("fit.index")?, history))
}

/// Trains `model` on `data` with `opt` as `cfg` says: evaluates (`evaluate`
/// scores the model on held-out data) after every epoch and when the run stops
/// inside one, keeps the best model at [`best_path`], saves the latest state
/// after every epoch, every [`every`](FitConfig::every) steps and at the stop,
/// and tells `on` what happens. Returns the whole run's history. A checkpoint
/// from an older run, a resume without a checkpoint, or an epoch without
/// batches are errors before anything trains; a non-finite step is
/// [`Error::NonFinite`] with the weights as they were (native only: it blocks
/// on each step).
pub fn fit<M, D>(
    ctx: &Context,
    model: &M,
    opt: &mut Optimizer,
    data: &mut D,
    cfg: &FitConfig,
    mut evaluate: impl FnMut(&M) -> Result<f64>,
    mut on: impl FnMut(Event<'_, D::Batch>),
) -> Result<History>
where
    M: TrainStep<Batch = D::Batch, Carry = ()>,
    D: Epochs,
{
    cfg.check()?;
    let (mut epoch, mut index, mut history) = (0, 0, History::default());
    if let (true, Some(path)) = (cfg.resume, &cfg.checkpoint) {
        let name = path.display().to_string();
        let ck = Checkpoint::load(path)?;
        let restored = restore(&ck, &name)?;
        ck.apply(&model.named_params(), &name)?;
        ck.apply_optimizer(opt, &name)?;
        (epoch, index, history) = restored;
        on(Event::Resumed {
            step: opt.steps(),
            epoch,
            index,
        });
    }
    let save = |opt: &Optimizer, history: &History, epoch, index| -> Result<()> {
        let Some(path) = &cfg.checkpoint else {
            return Ok(());
        };
        let mut ck = Checkpoint::capture(&model.named_params(), Some(opt))?;
        store(&mut ck, history, epoch, index);
        ck.save(path)
    };
    let start = Instant::now();
    let out_of_time = || {
        cfg.minutes
            .is_some_and(|m| start.elapsed().as_secs_f64() > m * 60.0)
    };
    let mut stop = None;
    while stop.is_none() && epoch < cfg.epochs {
        let batches = data.batches(epoch)?;
        if batches == 0 {
            return Err(Error::Empty {
                op: OP,
                what: "epoch",
                shape: vec![epoch],
            });
        }
        on(Event::Epoch {
            epoch,
            batches,
            from: index,
        });
        while index < batches {
            if cfg.max_steps.is_some_and(|m| opt.steps() >= m) {
                stop = Some(Stop::Steps);
                break;
            }
            let batch = data.batch(epoch, index)?;
            let report = model.train_step(ctx, &batch, opt)?;
            index += 1;
            let step = opt.steps();
            history.losses.push((step, report.loss));
            on(Event::Step {
                epoch,
                index: index - 1,
                batch: &batch,
                report: &report,
                step,
            });
            if cfg.every.is_some_and(|e| step.is_multiple_of(e)) && index < batches {
                save(opt, &history, epoch, index)?;
            }
            if out_of_time() {
                stop = Some(Stop::Time);
                break;
            }
        }
        let evaluated = epoch;
        if index == batches {
            (epoch, index) = (epoch + 1, 0);
        }
        let step = opt.steps();
        // A stop before the first step of this run leaves nothing new to score.
        if history.losses.last().is_some_and(|&(s, _)| s == step)
            && history.scores.last().is_none_or(|&(s, _)| s != step)
        {
            let score = evaluate(model)?;
            let best = history.best.is_none_or(|(_, b)| match cfg.goal {
                Goal::Higher => score > b,
                Goal::Lower => score < b,
            });
            history.scores.push((step, score));
            if best {
                history.best = Some((step, score));
                if let Some(path) = &cfg.checkpoint {
                    let mut ck = Checkpoint::capture(&model.named_params(), None)?;
                    mark_best(&mut ck, (step, score));
                    ck.save(&best_path(path))?;
                }
            }
            on(Event::Evaluated {
                epoch: evaluated,
                step,
                score,
                best,
            });
        }
        save(opt, &history, epoch, index)?;
    }
    let why = stop.unwrap_or(Stop::Epochs);
    history.stop = Some(why);
    on(Event::Stopped {
        why,
        step: opt.steps(),
    });
    Ok(history)
}
