//! The benchmark workloads W1–W7 (and W4-f16, W4-crf, W6-fwd, W6-stream, W7-f16, W7-long), shared by `cargo bench --bench recurrent` and
//! `cargo run --release --example bench` (which prints them as one table).
//!
//! - W1 LSTM training step: B = 32, T = 64, I = 128, H = 256; forward, full BPTT
//!   (parameter gradients: x is data and gets none, as in the peers) and an SGD
//!   step, one submit.
//! - W2 the same forward only (inference).
//! - W3 GEMM 1024³.
//! - W4 the BiLSTM tagger's training step: vocab 5000, embeddings 64, 64 units
//!   per direction, 9 tags, B = 32, T = 40, Adam.
//! - W4-f16 the same with f16 storage (adapters with SHADER_F16 only).
//! - W4-crf the same with a CRF over the tag scores: its negative
//!   log-likelihood (forward algorithm) and marginals in place of the
//!   cross-entropy.
//! - W5 streaming inference: the W1 layer at batch 1 as a stream
//!   (`Recurrent::stream`), one token per submit, the output read back in it.
//! - W6 one long sequence: the W1 layer at B = 1, T = 256; a training step as
//!   W1's, W6-fwd its forward, W6-stream the same forward as a stream's chunk
//!   (one fused dispatch per step instead of a product and a cell).
//! - W7 a minGRU training step at W1's shape (B = 32, T = 64, I = 128, H =
//!   256): one input GEMM, a scan over time, the reverse scan, the weight
//!   gradients and an SGD step, one submit; W7-f16 the same with f16 storage
//!   (adapters with SHADER_F16 only); W7-long the same at B = 1, T = 4096.
//!
//! Each `run` is one step, submitted and waited for. `flops` counts the GEMM
//! arithmetic of a step (multiply and add as two); the elementwise work is
//! small beside it.

#[path = "w4.rs"]
mod w4;

use rnn_wgpu::nn::recurrent::{Config, Mode, Recurrent};
use rnn_wgpu::nn::{MinGru, Module};
use rnn_wgpu::ops::gemm;
use rnn_wgpu::train::{Method, OptimConfig, Optimizer, TrainStep};
use rnn_wgpu::{Context, DType, Recorder, Result, Tape, Tensor, Var};

pub const B: usize = 32;
pub const T: usize = 64;
pub const I: usize = 128;
pub const H: usize = 256;
/// W6's sequence length.
pub const T6: usize = 256;

/// Deterministic inputs in [-0.5, 0.5).
pub fn fill(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect()
}

/// One workload: a name, what it is, and one step of it.
pub struct Workload<'a> {
    pub name: &'static str,
    pub what: String,
    /// Tokens (time steps × sequences) per step; 0 for a plain GEMM.
    pub tokens: usize,
    pub flops: f64,
    pub run: Box<dyn FnMut() -> Result<()> + 'a>,
}

/// A one-layer recurrent model of the W1 shape, its input and output gradient.
pub struct Layer {
    pub model: Recurrent,
    pub x: Tensor,
    pub dy: Tensor,
}

/// The W1/W2 layer for `mode` at batch `b` and `t` steps.
pub fn layer(ctx: &Context, mode: Mode, b: usize, t: usize) -> Result<Layer> {
    let cfg = Config::new(I, H).with_layers(1).with_bidirectional(false);
    Ok(Layer {
        model: Recurrent::new(ctx, mode, cfg, 1)?,
        x: Tensor::from_slice(ctx, &[b, t, I], &fill(b * t * I))?,
        dy: Tensor::from_slice(ctx, &[b, t, H], &fill(b * t * H))?,
    })
}

impl Layer {
    /// One step: forward, and with `opt` the backward pass and an update.
    pub fn step(&self, ctx: &Context, opt: Option<&mut Optimizer>) -> Result<()> {
        let (b, t) = (self.x.shape()[0], self.x.shape()[1]);
        let mut rec = Recorder::new(ctx, "layer step");
        if opt.is_some() {
            self.model.zero_grad(&mut rec)?;
        }
        let (_, saved) = self.model.forward(&mut rec, &self.x, &vec![t; b], None)?;
        if let Some(opt) = opt {
            // x is data: no gradient of it, as in the peers' W1.
            self.model
                .backward_params(&mut rec, &saved, &self.dy, None)?;
            opt.step(&mut rec)?;
        }
        rec.submit();
        ctx.wait()
    }
}

/// GEMM flops of one layer pass at batch `b`, `t` steps: forward 2·B·T·G·(I + H);
/// training adds dh and dW_hh over H and dW_ih over I (no dx: x is data), in all
/// 2·B·T·G·(2I + 3H).
pub fn layer_flops(mode: Mode, b: usize, t: usize, train: bool) -> f64 {
    let per = 2.0 * (b * t * mode.gates() * H) as f64;
    if train {
        per * (2 * I + 3 * H) as f64
    } else {
        per * (I + H) as f64
    }
}

/// W1 alone: the LSTM training step.
pub fn w1(ctx: &Context) -> Result<Workload<'_>> {
    let w1 = layer(ctx, Mode::Lstm, B, T)?;
    let mut sgd = Optimizer::new(
        ctx,
        OptimConfig::new(Method::Sgd { momentum: 0.0 }, 0.01),
        w1.model.params(),
    )?;
    Ok(Workload {
        name: "W1",
        what: format!(
            "LSTM train step B={B} T={T} I={I} H={H} (fwd + BPTT of the parameters + SGD)"
        ),
        tokens: B * T,
        flops: layer_flops(Mode::Lstm, B, T, true),
        run: Box::new(move || w1.step(ctx, Some(&mut sgd))),
    })
}

/// A one-layer minGRU of the W1 sizes at batch `b` and `t` steps, its input,
/// output gradient and SGD.
pub struct MinLayer {
    pub model: MinGru,
    pub x: Tensor,
    pub dy: Tensor,
    pub opt: Optimizer,
}

impl MinLayer {
    /// The W7 layer at batch `b`, `t` steps, its activations stored as `storage`.
    pub fn new(ctx: &Context, b: usize, t: usize, storage: DType) -> Result<Self> {
        let model = MinGru::new(ctx, Config::new(I, H), 1)?.with_storage(storage)?;
        let opt = Optimizer::new(
            ctx,
            OptimConfig::new(Method::Sgd { momentum: 0.0 }, 0.01),
            model.params(),
        )?;
        Ok(Self {
            model,
            x: Tensor::from_slice(ctx, &[b, t, I], &fill(b * t * I))?,
            dy: Tensor::from_slice(ctx, &[b, t, H], &fill(b * t * H))?,
            opt,
        })
    }

    /// One training step as W1's: forward, the parameters' gradients (x is
    /// data), an SGD update; one submit, waited for.
    pub fn step(&mut self, ctx: &Context) -> Result<()> {
        let (b, t) = (self.x.shape()[0], self.x.shape()[1]);
        let mut tape = Tape::train(ctx, "minGRU step");
        self.model.zero_grad(tape.rec())?;
        let x = Var::constant(self.x.clone());
        let (y, _) = self.model.apply(&mut tape, &x, &vec![t; b], None)?;
        tape.backward_with(&y, &self.dy)?;
        let mut rec = tape.into_recorder();
        self.opt.step(&mut rec)?;
        rec.submit();
        ctx.wait()
    }
}

/// GEMM flops of a minGRU training step: the input GEMM 2·B·T·2H·I and the
/// weight gradient's as many (no dx: x is data).
pub fn min_flops(b: usize, t: usize) -> f64 {
    2.0 * 2.0 * (b * t * 2 * H * I) as f64
}

/// W7 (or W7-long, W7-f16): the minGRU training step at batch `b`, `t` steps,
/// its activations stored as `storage`.
pub fn w7<'a>(
    ctx: &'a Context,
    name: &'static str,
    (b, t): (usize, usize),
    storage: DType,
) -> Result<Workload<'a>> {
    let mut layer = MinLayer::new(ctx, b, t, storage)?;
    let stored = if storage == DType::F16 {
        ", f16 storage"
    } else {
        ""
    };
    Ok(Workload {
        name,
        what: format!("minGRU train step B={b} T={t} I={I} H={H}, as W1{stored}"),
        tokens: b * t,
        flops: min_flops(b, t),
        run: Box::new(move || layer.step(ctx)),
    })
}

/// W4 alone (or W4-f16 with `storage` f16): the tagger's training step.
pub fn w4(ctx: &Context, storage: DType) -> Result<Workload<'_>> {
    let (tagger, mut adam) = w4::tagger(ctx, storage)?;
    let batch = w4::batch();
    let (name, what) = match storage {
        DType::F16 => ("W4-f16", format!("{}, f16 storage", w4::what())),
        _ => ("W4", w4::what()),
    };
    Ok(Workload {
        name,
        what,
        tokens: batch.size * batch.steps,
        flops: w4::flops(),
        run: Box::new(move || tagger.train_step(ctx, &batch, &mut adam).map(|_| ())),
    })
}

/// W4 with a CRF over the tag scores.
pub fn w4_crf(ctx: &Context) -> Result<Workload<'_>> {
    let (tagger, mut adam) = w4::tagger_with(ctx, DType::F32, true)?;
    let batch = w4::batch();
    Ok(Workload {
        name: "W4-crf",
        what: format!("{}, CRF loss", w4::what()),
        tokens: batch.size * batch.steps,
        flops: w4::flops(),
        run: Box::new(move || tagger.train_step(ctx, &batch, &mut adam).map(|_| ())),
    })
}

/// All the workloads on `ctx`.
pub fn all(ctx: &Context) -> Result<Vec<Workload<'_>>> {
    let w2 = layer(ctx, Mode::Lstm, B, T)?;

    let n = 1024;
    let a = Tensor::from_slice(ctx, &[n, n], &fill(n * n))?;
    let bm = Tensor::from_slice(ctx, &[n, n], &fill(n * n))?;
    let c = Tensor::zeros(ctx, &[n, n])?;

    let w5 = layer(ctx, Mode::Lstm, 1, 1)?;
    let mut rec = Recorder::new(ctx, "stream");
    let mut stream5 = w5.model.stream(&mut rec, 1)?;
    rec.submit();
    let x5 = Tensor::from_slice(ctx, &[1, I], &fill(I))?;

    let w6 = layer(ctx, Mode::Lstm, 1, T6)?;
    let mut sgd6 = Optimizer::new(
        ctx,
        OptimConfig::new(Method::Sgd { momentum: 0.0 }, 0.01),
        w6.model.params(),
    )?;
    let w6_fwd = layer(ctx, Mode::Lstm, 1, T6)?;
    let mut rec = Recorder::new(ctx, "stream");
    let stream6 = w6_fwd.model.stream(&mut rec, 1)?;
    rec.submit();
    let x6 = w6_fwd.x.clone();

    let mut all = vec![
        w1(ctx)?,
        Workload {
            name: "W2",
            what: format!("LSTM forward B={B} T={T} I={I} H={H}"),
            tokens: B * T,
            flops: layer_flops(Mode::Lstm, B, T, false),
            run: Box::new(move || w2.step(ctx, None)),
        },
        Workload {
            name: "W3",
            what: format!("GEMM {n}^3"),
            tokens: 0,
            flops: 2.0 * (n * n * n) as f64,
            run: Box::new(move || {
                let mut rec = Recorder::new(ctx, "gemm");
                gemm::forward(&mut rec, &c, &a, &bm, None, gemm::Gemm::default())?;
                rec.submit();
                ctx.wait()
            }),
        },
        w4(ctx, DType::F32)?,
        w4_crf(ctx)?,
        Workload {
            name: "W5",
            what: format!(
                "streaming LSTM B=1 I={I} H={H}, one token per submit, output read back in it"
            ),
            tokens: 1,
            flops: layer_flops(Mode::Lstm, 1, 1, false),
            run: Box::new(move || {
                let mut rec = Recorder::new(ctx, "token");
                let y = stream5.step(&mut rec, &x5)?;
                rec.submit_read(&y).map(|_| ())
            }),
        },
        Workload {
            name: "W6",
            what: format!("LSTM train step B=1 T={T6} I={I} H={H}, as W1"),
            tokens: T6,
            flops: layer_flops(Mode::Lstm, 1, T6, true),
            run: Box::new(move || w6.step(ctx, Some(&mut sgd6))),
        },
        Workload {
            name: "W6-fwd",
            what: format!("LSTM forward B=1 T={T6} I={I} H={H}"),
            tokens: T6,
            flops: layer_flops(Mode::Lstm, 1, T6, false),
            run: Box::new(move || w6_fwd.step(ctx, None)),
        },
        Workload {
            name: "W6-stream",
            what: "the W6 forward as one chunk of a stream, one dispatch per step".to_string(),
            tokens: T6,
            flops: layer_flops(Mode::Lstm, 1, T6, false),
            run: Box::new(move || {
                let mut rec = Recorder::new(ctx, "chunk");
                stream6.clone().feed(&mut rec, &x6)?;
                rec.submit();
                ctx.wait()
            }),
        },
        w7(ctx, "W7", (B, T), DType::F32)?,
        w7(ctx, "W7-long", (1, 4096), DType::F32)?,
    ];
    if ctx.has_f16() {
        all.insert(4, w4(ctx, DType::F16)?);
        let at = all.len() - 1;
        all.insert(at, w7(ctx, "W7-f16", (B, T), DType::F16)?);
    }
    Ok(all)
}
