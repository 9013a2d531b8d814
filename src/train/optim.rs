//! Optimizers with their state in GPU buffers: SGD (momentum, weight decay), Adam
//! and AdamW as torch.optim defines them; clipping by global norm and by value;
//! learning-rate schedules (constant, step, cosine, with linear warm-up).

use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::nn::Param;
use crate::ops::optim::{self, Params, Rule, PARTS};
use crate::tensor::{DType, Tensor};

/// The update rule and its constants.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Method {
    /// torch.optim.SGD.
    Sgd {
        /// Momentum (0: none).
        momentum: f32,
    },
    /// torch.optim.Adam (weight decay added to the gradient).
    Adam {
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Added to the second moment's square root.
        eps: f32,
    },
    /// torch.optim.AdamW (weight decay applied to the weights).
    AdamW {
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Added to the second moment's square root.
        eps: f32,
    },
}

impl Method {
    /// Adam with PyTorch's defaults (0.9, 0.999, 1e-8).
    pub const ADAM: Method = Method::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    /// AdamW with PyTorch's defaults (0.9, 0.999, 1e-8).
    pub const ADAMW: Method = Method::AdamW {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
}

/// How the learning rate changes with the step (after warm-up).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// Multiplied by `gamma` every `every` steps.
    Step {
        /// Steps between multiplications.
        every: u32,
        /// The factor.
        gamma: f32,
    },
    /// Cosine from the base rate down to `min_lr` over `total` steps, then `min_lr`.
    Cosine {
        /// Steps of the descent.
        total: u32,
        /// The rate at its end.
        min_lr: f32,
    },
}

/// An optimizer's settings: [`OptimConfig::new`], then `with_*`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct OptimConfig {
    /// The update rule.
    pub method: Method,
    /// The base learning rate.
    pub lr: f32,
    /// Weight decay (L2 for SGD and Adam, decoupled for AdamW).
    pub weight_decay: f32,
    /// Clip the global gradient norm to this.
    pub max_norm: Option<f32>,
    /// Clamp every gradient element to ±this (after the norm clip).
    pub clip_value: Option<f32>,
    /// How the rate changes with the step.
    pub schedule: Schedule,
    /// Steps of linear warm-up from lr / warmup to lr before the schedule.
    pub warmup: u32,
}

impl OptimConfig {
    /// `method` at rate `lr`; no decay, clipping, schedule or warm-up.
    pub fn new(method: Method, lr: f32) -> Self {
        Self {
            method,
            lr,
            weight_decay: 0.0,
            max_norm: None,
            clip_value: None,
            schedule: Schedule::Constant,
            warmup: 0,
        }
    }

    /// The base learning rate.
    pub fn with_lr(self, lr: f32) -> Self {
        Self { lr, ..self }
    }

    /// Weight decay (L2 for SGD and Adam, decoupled for AdamW).
    pub fn with_weight_decay(self, weight_decay: f32) -> Self {
        Self {
            weight_decay,
            ..self
        }
    }

    /// Clip the global gradient norm to `max_norm` (`None`: no clip).
    pub fn with_max_norm(self, max_norm: Option<f32>) -> Self {
        Self { max_norm, ..self }
    }

    /// Clamp every gradient element to ±`clip_value` (`None`: no clamp).
    pub fn with_clip_value(self, clip_value: Option<f32>) -> Self {
        Self { clip_value, ..self }
    }

    /// How the rate changes with the step.
    pub fn with_schedule(self, schedule: Schedule) -> Self {
        Self { schedule, ..self }
    }

    /// Steps of linear warm-up.
    pub fn with_warmup(self, warmup: u32) -> Self {
        Self { warmup, ..self }
    }

    /// Checks every number: rates, decay, clipping bounds and the method's
    /// constants must be finite and in range. [`Optimizer::new`] calls it.
    pub fn validate(&self) -> Result<()> {
        let check = |what: &'static str, value: f32, expected: &'static str, ok: bool| {
            if value.is_finite() && ok {
                Ok(())
            } else {
                Err(Error::InvalidArgument {
                    op: "optimizer",
                    what,
                    expected,
                    got: value.to_string(),
                })
            }
        };
        const AT_LEAST_0: &str = "a finite number >= 0";
        const ABOVE_0: &str = "a finite number > 0";
        check("learning rate", self.lr, AT_LEAST_0, self.lr >= 0.0)?;
        check(
            "weight decay",
            self.weight_decay,
            AT_LEAST_0,
            self.weight_decay >= 0.0,
        )?;
        if let Some(v) = self.max_norm {
            check("max_norm", v, ABOVE_0, v > 0.0)?;
        }
        if let Some(v) = self.clip_value {
            check("clip_value", v, ABOVE_0, v > 0.0)?;
        }
        match self.method {
            Method::Sgd { momentum } => check("momentum", momentum, AT_LEAST_0, momentum >= 0.0)?,
            Method::Adam { beta1, beta2, eps } | Method::AdamW { beta1, beta2, eps } => {
                const BETA: &str = "a number in [0, 1)";
                check("beta1", beta1, BETA, (0.0..1.0).contains(&beta1))?;
                check("beta2", beta2, BETA, (0.0..1.0).contains(&beta2))?;
                check("eps", eps, ABOVE_0, eps > 0.0)?;
            }
        }
        match self.schedule {
            Schedule::Constant => Ok(()),
            Schedule::Step { gamma, .. } => check("schedule gamma", gamma, ABOVE_0, gamma > 0.0),
            Schedule::Cosine { min_lr, .. } => {
                check("schedule min_lr", min_lr, AT_LEAST_0, min_lr >= 0.0)
            }
        }
    }

    /// The learning rate of 1-based step `step`.
    pub fn lr_at(&self, step: u32) -> f32 {
        if step <= self.warmup {
            return self.lr * step as f32 / self.warmup as f32;
        }
        let s = step - self.warmup - 1;
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Step { every, gamma } => self.lr * gamma.powi((s / every.max(1)) as i32),
            Schedule::Cosine { total, min_lr } => {
                let frac = (s as f32 / total.max(1) as f32).min(1.0);
                min_lr + 0.5 * (self.lr - min_lr) * (1.0 + (std::f32::consts::PI * frac).cos())
            }
        }
    }
}

/// One parameter and its optimizer state.
#[derive(Clone, Debug)]
struct Slot {
    param: Param,
    /// SGD: [momentum buffer]; Adam: [m, v].
    state: Vec<Tensor>,
}

/// An optimizer over a fixed list of parameters. See the module docs.
#[derive(Debug)]
pub struct Optimizer {
    cfg: OptimConfig,
    slots: Vec<Slot>,
    /// `[PARTS · parameters]` partial sums of squares
    parts: Tensor,
    /// `[3]` ‖g‖, clip scale, finite
    stats: Tensor,
    steps: u32,
}

impl Optimizer {
    /// An optimizer for `params` (state zeroed, step 0); `cfg` is checked first
    /// ([`OptimConfig::validate`]).
    pub fn new(ctx: &Context, cfg: OptimConfig, params: Vec<Param>) -> Result<Self> {
        cfg.validate()?;
        if params.is_empty() {
            return Err(Error::Empty {
                op: "optimizer",
                what: "parameters",
                shape: vec![0],
            });
        }
        let buffers = if matches!(cfg.method, Method::Sgd { .. }) {
            1
        } else {
            2
        };
        let slots = params
            .into_iter()
            .map(|param| {
                let state = (0..buffers)
                    .map(|_| Tensor::zeros(ctx, param.value.shape()))
                    .collect::<Result<_>>()?;
                Ok(Slot { param, state })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg,
            parts: Tensor::zeros(ctx, &[PARTS * slots.len()])?,
            stats: Tensor::empty(ctx, &[3], DType::F32)?,
            slots,
            steps: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &OptimConfig {
        &self.cfg
    }

    /// Sets the base learning rate from the next step on (warm-up and the
    /// schedule still scale it): for schedules the step count cannot express,
    /// by elapsed time or by validation. A rate that is not finite and ≥ 0 is
    /// an error and changes nothing.
    pub fn set_lr(&mut self, lr: f32) -> Result<()> {
        OptimConfig { lr, ..self.cfg }.validate()?;
        self.cfg.lr = lr;
        Ok(())
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// `[3]`: the last step's gradient norm, clip scale and 1 if finite (else 0).
    pub fn stats(&self) -> &Tensor {
        &self.stats
    }

    /// Records one step: the global gradient norm, then every update (skipped on
    /// the GPU when the norm is not finite).
    pub fn step(&mut self, rec: &mut Recorder) -> Result<()> {
        for (i, slot) in self.slots.iter().enumerate() {
            optim::sumsq(rec, &self.parts, i * PARTS, &slot.param.grad)?;
        }
        optim::norm(rec, &self.stats, &self.parts, self.cfg.max_norm)?;
        let step = self.steps + 1;
        let (rule, beta1, beta2, eps, momentum) = match self.cfg.method {
            Method::Sgd { momentum } => (Rule::Sgd, 0.0, 0.0, 0.0, momentum),
            Method::Adam { beta1, beta2, eps } => (Rule::Adam, beta1, beta2, eps, 0.0),
            Method::AdamW { beta1, beta2, eps } => (Rule::AdamW, beta1, beta2, eps, 0.0),
        };
        let p = Params {
            step,
            lr: self.cfg.lr_at(step),
            weight_decay: self.cfg.weight_decay,
            momentum,
            beta1,
            beta2,
            eps,
            clip_value: self.cfg.clip_value.unwrap_or(0.0),
            ..Params::default()
        };
        for slot in &self.slots {
            let state: Vec<&Tensor> = slot.state.iter().collect();
            optim::update(
                rec,
                rule,
                &slot.param.value,
                &slot.param.grad,
                &state,
                &self.stats,
                p,
            )?;
        }
        self.steps = step;
        Ok(())
    }

    /// The state to checkpoint: per parameter (in the order given to `new`) its
    /// buffers, named `{index}.{m|v|momentum}`, and the step count.
    pub fn state(&self) -> (Vec<(String, Tensor)>, u32) {
        let names: &[&str] = if matches!(self.cfg.method, Method::Sgd { .. }) {
            &["momentum"]
        } else {
            &["m", "v"]
        };
        let tensors = self
            .slots
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                names
                    .iter()
                    .zip(&s.state)
                    .map(move |(n, t)| (format!("{i}.{n}"), t.clone()))
            })
            .collect();
        (tensors, self.steps)
    }

    /// Restores the step count (the buffers are restored by writing into the
    /// tensors [`state`](Self::state) returns).
    pub fn set_steps(&mut self, steps: u32) {
        self.steps = steps;
    }
}
