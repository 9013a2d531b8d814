//! A training loop for any [`TrainStep`] model: epochs and a time budget, an
//! evaluation after each epoch that keeps the best model, checkpoints with an
//! exact resume (mid-epoch included), and the run's history for its plots.
//!
//! A resumed run repeats the run it resumes, step for step: the checkpoint holds
//! the parameters, the optimizer's state and step count, the position in the
//! data (epoch and batch), the state carried into the next batch (a language
//! model's, under truncated BPTT: [`Carried`]), the run's clock
//! and the history; dropout masks come from the step's number
//! ([`Tape::with_stream`](crate::Tape::with_stream)); and the data ([`Epochs`])
//! builds any batch from its epoch and index alone. Only what follows the
//! clock (a time budget, [`FitConfig::cycles`] over minutes) can differ.
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
use super::{step, Carried, Optimizer, StepReport, TrainStep};
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::nn::Module;
use crate::tensor::Tensor;

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

/// What the run's clock counts: the time budget, the evaluations every so many
/// minutes, the learning-rate cycles and the minutes in the history read it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Clock {
    /// All of it: training, evaluations and checkpoint writes.
    #[default]
    Run,
    /// Training only: evaluations and checkpoint writes are off the clock, so
    /// that runs that evaluate more or less often train for the same time.
    Training,
}

/// How [`fit`] runs: [`new`](Self::new) with the epochs, then `with_*`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FitConfig {
    /// Passes over the data.
    pub epochs: usize,
    /// Stop after this many minutes on the run's [`clock`](Self::clock), those
    /// before a resume included, then evaluate and save; `None`: no limit.
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
    /// What the run's clock counts.
    pub clock: Clock,
    /// Also evaluate inside an epoch every this many minutes on the clock (for
    /// a score against time); `None`: after each epoch only.
    pub eval_minutes: Option<f64>,
    /// Sets the learning rate before every step: a cosine from the optimizer's
    /// base rate down to zero, this many times over the run (warm restarts).
    /// The run's length is its [`minutes`](Self::minutes) where it has them,
    /// else its [`max_steps`](Self::max_steps), else its epochs. `None`: the
    /// optimizer's own schedule alone.
    pub cycles: Option<u32>,
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
            clock: Clock::Run,
            eval_minutes: None,
            cycles: None,
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

    /// Sets [`clock`](Self::clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets [`eval_minutes`](Self::eval_minutes).
    pub fn with_eval_minutes(mut self, eval_minutes: Option<f64>) -> Self {
        self.eval_minutes = eval_minutes;
        self
    }

    /// Sets [`cycles`](Self::cycles).
    pub fn with_cycles(mut self, cycles: Option<u32>) -> Self {
        self.cycles = cycles;
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
        let positive = |m: &f64| !(m.is_finite() && *m > 0.0);
        if let Some(m) = self.minutes.filter(positive) {
            return bad("minutes", "a finite number above 0", m.to_string());
        }
        if let Some(m) = self.eval_minutes.filter(positive) {
            return bad("eval_minutes", "a finite number above 0", m.to_string());
        }
        if self.every == Some(0) {
            return bad("every", "at least 1 step", "0".into());
        }
        if self.cycles == Some(0) {
            return bad("cycles", "at least 1 cycle", "0".into());
        }
        if self.resume && self.checkpoint.is_none() {
            return bad("resume", "a checkpoint to resume from", "none".into());
        }
        Ok(())
    }

    /// How far through its length the run is, from 0 to 1.
    fn progress(
        &self,
        minutes: f64,
        steps: u32,
        epoch: usize,
        index: usize,
        batches: usize,
    ) -> f64 {
        let done = match (self.minutes, self.max_steps) {
            (Some(m), _) => minutes / m,
            (None, Some(s)) => f64::from(steps) / f64::from(s.max(1)),
            (None, None) => (epoch as f64 + index as f64 / batches as f64) / self.epochs as f64,
        };
        done.clamp(0.0, 1.0)
    }

    /// The learning rate at `progress` of the run in `cycles` cosine cycles
    /// from `base` (zero at the very end).
    fn cycle_lr(base: f32, cycles: u32, progress: f64) -> f32 {
        let t = progress * f64::from(cycles);
        let within = if t >= f64::from(cycles) {
            1.0
        } else {
            t.fract()
        };
        base * (0.5 * (1.0 + (std::f64::consts::PI * within).cos())) as f32
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

/// What [`fit`] tells its observer as the run goes. Match a variant with `..`:
/// later versions may tell more.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a, B> {
    /// Continued from the checkpoint at `step`, at batch `index` of `epoch`.
    #[non_exhaustive]
    Resumed {
        /// The optimizer's step count.
        step: u32,
        /// The epoch (from 0).
        epoch: usize,
        /// The next batch of it.
        index: usize,
    },
    /// An epoch starts (or continues) at batch `from` of `batches`.
    #[non_exhaustive]
    Epoch {
        /// The epoch (from 0).
        epoch: usize,
        /// Its batches.
        batches: usize,
        /// The first batch this run trains on.
        from: usize,
    },
    /// A step trained on `batch`, the `index`-th of `epoch`.
    #[non_exhaustive]
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
        /// The run's clock after it, in minutes.
        minutes: f64,
    },
    /// An evaluation inside `epoch` or after it.
    #[non_exhaustive]
    Evaluated {
        /// The epoch (from 0).
        epoch: usize,
        /// The optimizer's step count.
        step: u32,
        /// The score.
        score: f64,
        /// Whether it is the best of the run so far (its model was saved).
        best: bool,
        /// The run's clock, in minutes.
        minutes: f64,
    },
    /// The run stopped.
    #[non_exhaustive]
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
    /// The run's clock (minutes) after each step of `losses`.
    pub loss_minutes: Vec<f64>,
    /// The run's clock (minutes) at each evaluation of `scores`.
    pub score_minutes: Vec<f64>,
    /// The run's clock (minutes) at the stop.
    pub minutes: f64,
}

/// The run's clock: the seconds before a resume, then this run's less the time
/// spent off the clock.
struct Timer {
    before: f64,
    start: Instant,
    off: f64,
    clock: Clock,
}

impl Timer {
    fn minutes(&self) -> f64 {
        (self.before + self.start.elapsed().as_secs_f64() - self.off) / 60.0
    }

    /// Runs `f`, off the clock unless it counts everything.
    fn off<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        if self.clock == Clock::Training {
            self.off += t.elapsed().as_secs_f64();
        }
        out
    }
}

/// What [`store`] keeps of a mid-epoch carry: each tensor's shape and values.
type HostTensors = Vec<(Vec<usize>, Vec<f32>)>;

/// The position of the next batch, the clock, the history and the carry into
/// the next batch, as a checkpoint holds them.
fn store(ck: &mut Checkpoint, history: &History, epoch: usize, index: usize, carry: HostTensors) {
    let pairs = |v: Vec<f32>| (vec![v.len() / 2, 2], v);
    let list = |v: &[f64]| (vec![v.len()], v.iter().map(|&m| m as f32).collect());
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
    ck.tensors
        .insert("fit.loss_minutes".into(), list(&history.loss_minutes));
    ck.tensors
        .insert("fit.score_minutes".into(), list(&history.score_minutes));
    for (i, t) in carry.into_iter().enumerate() {
        ck.tensors.insert(format!("fit.carry.{i}"), t);
    }
    ck.metadata.insert("fit.epoch".into(), epoch.to_string());
    ck.metadata.insert("fit.index".into(), index.to_string());
    ck.metadata
        .insert("fit.seconds".into(), (history.minutes * 60.0).to_string());
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

/// What [`store`] wrote: the position, the history (its `minutes` the clock)
/// and the carry. A checkpoint from before the clock was kept reads as one
/// whose minutes are all 0.
fn restore(ck: &Checkpoint, name: &str) -> Result<(usize, usize, History, HostTensors)> {
    let err = |reason: String| Error::File {
        path: name.into(),
        reason,
    };
    let meta = |key: &str| {
        ck.metadata
            .get(key)
            .ok_or_else(|| err(format!("no {key} in the metadata: not saved by fit")))
    };
    let parse =
        |key: &str, v: &str| -> Result<f64> { v.parse().map_err(|e| err(format!("{key}: {e}"))) };
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
    let minutes = |key: &str, n: usize| -> Result<Vec<f64>> {
        match ck.tensors.get(key) {
            None => Ok(vec![0.0; n]),
            Some((shape, v)) if shape[..] == [n] => Ok(v.iter().map(|&m| f64::from(m)).collect()),
            Some((shape, _)) => Err(err(format!("{key} has shape {shape:?}, expected [{n}]"))),
        }
    };
    let best = match (
        ck.metadata.get("fit.best_step"),
        ck.metadata.get("fit.best"),
    ) {
        (Some(step), Some(score)) => Some((
            step.parse()
                .map_err(|e| err(format!("fit.best_step: {e}")))?,
            parse("fit.best", score)?,
        )),
        _ => None,
    };
    let losses = pairs("fit.losses")?;
    let scores: Vec<(u32, f64)> = pairs("fit.scores")?
        .into_iter()
        .map(|(s, v)| (s, f64::from(v)))
        .collect();
    let seconds = match ck.metadata.get("fit.seconds") {
        Some(s) => parse("fit.seconds", s)?,
        None => 0.0,
    };
    let history = History {
        loss_minutes: minutes("fit.loss_minutes", losses.len())?,
        score_minutes: minutes("fit.score_minutes", scores.len())?,
        losses,
        scores,
        best,
        stop: None,
        minutes: seconds / 60.0,
    };
    let carry = (0..)
        .map_while(|i| ck.tensors.get(&format!("fit.carry.{i}")).cloned())
        .collect();
    Ok((number("fit.epoch")?, number("fit.index")?, history, carry))
}

/// Scores `model` at `step`, adds it to `history`, and saves the model beside
/// `checkpoint` when it is the best so far; returns the score and whether it is.
fn evaluate_now<M: Module>(
    model: &M,
    evaluate: &mut impl FnMut(&M) -> Result<f64>,
    history: &mut History,
    cfg: &FitConfig,
    step: u32,
    minutes: f64,
) -> Result<(f64, bool)> {
    let score = evaluate(model)?;
    let best = history.best.is_none_or(|(_, b)| match cfg.goal {
        Goal::Higher => score > b,
        Goal::Lower => score < b,
    });
    history.scores.push((step, score));
    history.score_minutes.push(minutes);
    if best {
        history.best = Some((step, score));
        if let Some(path) = &cfg.checkpoint {
            let mut ck = Checkpoint::capture(&model.named_params(), None)?;
            mark_best(&mut ck, (step, score));
            ck.save(&best_path(path))?;
        }
    }
    Ok((score, best))
}

/// Trains `model` on `data` with `opt` as `cfg` says: evaluates (`evaluate`
/// scores the model on held-out data) after every epoch, every
/// [`eval_minutes`](FitConfig::eval_minutes) and when the run stops inside an
/// epoch, keeps the best model at [`best_path`], saves the latest state after
/// every epoch, every [`every`](FitConfig::every) steps and at the stop, and
/// tells `on` what happens. Each step's [carry](TrainStep::Carry) goes to the
/// next batch of its epoch ([`TrainStep::continued`]) and into the checkpoints
/// saved inside an epoch. Returns the whole run's history. A checkpoint from
/// an older run, a resume without a checkpoint, or an epoch without batches
/// are errors before anything trains; a non-finite step is
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
    M: TrainStep<Batch = D::Batch>,
    M::Carry: Carried,
    D: Epochs,
{
    cfg.check()?;
    let (mut epoch, mut index, mut history) = (0, 0, History::default());
    let mut carry: Option<M::Carry> = None;
    if let (true, Some(path)) = (cfg.resume, &cfg.checkpoint) {
        let name = path.display().to_string();
        let ck = Checkpoint::load(path)?;
        let (e, i, h, tensors) = restore(&ck, &name)?;
        if i > 0 {
            let uploaded = tensors
                .iter()
                .map(|(shape, v)| Tensor::from_slice(ctx, shape, v))
                .collect::<Result<Vec<_>>>()?;
            carry = Some(M::Carry::from_tensors(uploaded).map_err(|err| Error::File {
                path: name.clone(),
                reason: format!("the carry into batch {i} of epoch {e}: {err}"),
            })?);
        }
        ck.apply(&model.named_params(), &name)?;
        ck.apply_optimizer(opt, &name)?;
        (epoch, index, history) = (e, i, h);
        on(Event::Resumed {
            step: opt.steps(),
            epoch,
            index,
        });
    }
    let save = |opt: &Optimizer, history: &History, epoch, index, carry: Option<&M::Carry>| {
        let Some(path) = &cfg.checkpoint else {
            return Ok(());
        };
        let mut ck = Checkpoint::capture(&model.named_params(), Some(opt))?;
        let carry = carry
            .map_or(Vec::new(), |c| c.tensors())
            .into_iter()
            .map(|t| Ok((t.shape().to_vec(), t.to_vec()?)))
            .collect::<Result<_>>()?;
        store(&mut ck, history, epoch, index, carry);
        ck.save(path)
    };
    let mut timer = Timer {
        before: history.minutes * 60.0,
        start: Instant::now(),
        off: 0.0,
        clock: cfg.clock,
    };
    let next_eval = |minutes: f64| cfg.eval_minutes.map(|e| ((minutes / e).floor() + 1.0) * e);
    let mut eval_at = next_eval(history.minutes);
    let base_lr = opt.config().lr;
    // A resumed run whose budget is spent trains no further.
    let mut stop = cfg
        .minutes
        .filter(|&m| history.minutes > m)
        .map(|_| Stop::Time);
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
            if let Some(cycles) = cfg.cycles {
                let done = cfg.progress(timer.minutes(), opt.steps(), epoch, index, batches);
                opt.set_lr(FitConfig::cycle_lr(base_lr, cycles, done))?;
            }
            let batch = data.batch(epoch, index)?;
            let batch = match carry.take() {
                Some(c) => M::continued(batch, c),
                None => batch,
            };
            let (report, next) = step(model, ctx, &batch, opt)?;
            carry = Some(next);
            index += 1;
            let (step, minutes) = (opt.steps(), timer.minutes());
            history.losses.push((step, report.loss));
            history.loss_minutes.push(minutes);
            history.minutes = minutes;
            on(Event::Step {
                epoch,
                index: index - 1,
                batch: &batch,
                report: &report,
                step,
                minutes,
            });
            if index == batches {
                break;
            }
            if cfg.every.is_some_and(|e| step.is_multiple_of(e)) {
                history.minutes = timer.minutes();
                timer.off(|| save(opt, &history, epoch, index, carry.as_ref()))?;
            }
            if cfg.minutes.is_some_and(|m| minutes > m) {
                stop = Some(Stop::Time);
                break;
            }
            if eval_at.is_some_and(|at| minutes >= at) {
                let (score, best) = timer
                    .off(|| evaluate_now(model, &mut evaluate, &mut history, cfg, step, minutes))?;
                eval_at = next_eval(minutes);
                on(Event::Evaluated {
                    epoch,
                    step,
                    score,
                    best,
                    minutes,
                });
            }
        }
        let evaluated = epoch;
        if index == batches {
            (epoch, index, carry) = (epoch + 1, 0, None);
            if cfg.minutes.is_some_and(|m| history.minutes > m) {
                stop = Some(Stop::Time);
            }
        }
        let step = opt.steps();
        // A stop before the first step of this run leaves nothing new to score.
        if history.losses.last().is_some_and(|&(s, _)| s == step)
            && history.scores.last().is_none_or(|&(s, _)| s != step)
        {
            let minutes = history.minutes;
            let (score, best) = timer
                .off(|| evaluate_now(model, &mut evaluate, &mut history, cfg, step, minutes))?;
            eval_at = next_eval(minutes);
            on(Event::Evaluated {
                epoch: evaluated,
                step,
                score,
                best,
                minutes,
            });
        }
        history.minutes = timer.minutes();
        timer.off(|| save(opt, &history, epoch, index, carry.as_ref()))?;
    }
    if cfg.cycles.is_some() {
        opt.set_lr(base_lr)?;
    }
    let why = stop.unwrap_or(Stop::Epochs);
    history.stop = Some(why);
    on(Event::Stopped {
        why,
        step: opt.steps(),
    });
    Ok(history)
}
