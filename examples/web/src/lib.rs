//! rnn-wgpu in a browser tab: a character language model (embedding → LSTM →
//! linear) trained on WebGPU by truncated BPTT over the text the page hands it,
//! with samples drawn on the GPU and the profiler's per-kernel table; and the W4
//! tagger step, timed in the page for comparison with native.
//!
//! Build and serve: `examples/web/serve`, then open the address it prints.
//! `index.html` and `app.js` are the page; this crate is what they call.

#[path = "../../../benches/common/w4.rs"]
mod w4;

use rnn_wgpu::data::Streams;
use rnn_wgpu::models::language_model::State;
use rnn_wgpu::models::{LanguageModel, LanguageModelConfig};
use rnn_wgpu::nn::{Mode, Module};
use rnn_wgpu::ops::sample::Sampling;
use rnn_wgpu::train::{self, Method, OptimConfig, Optimizer};
use rnn_wgpu::{Context, DType, Error};
use wasm_bindgen::prelude::*;

/// Streams per batch and characters per chunk of truncated BPTT.
const BATCH: usize = 32;
const BPTT: usize = 32;

fn js(e: Error) -> JsValue {
    JsValue::from_str(&e.to_string())
}

/// A character language model being trained on one text.
#[wasm_bindgen]
pub struct Trainer {
    ctx: Context,
    /// Id → character, and the text as ids.
    chars: Vec<char>,
    ids: Vec<u32>,
    lm: LanguageModel,
    opt: Optimizer,
    /// The state the last chunk ended in, and the next chunk.
    state: Option<State>,
    chunk: usize,
}

#[wasm_bindgen]
impl Trainer {
    /// Opens the device and builds a model of `layers` LSTM layers of `hidden`
    /// units over the characters of `text`.
    pub async fn create(text: String, hidden: usize, layers: usize) -> Result<Trainer, JsValue> {
        let ctx = Context::new_async().await.map_err(js)?;
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        let ids: Vec<u32> = text
            .chars()
            .map(|c| chars.binary_search(&c).unwrap_or(0) as u32)
            .collect();
        // Refuse a text too short for one chunk before building anything.
        Streams::new(&ids, BATCH, BPTT).map_err(js)?;
        let lm = LanguageModel::new(
            &ctx,
            LanguageModelConfig::new(chars.len())
                .with_emb(32)
                .with_hidden(hidden)
                .with_layers(layers)
                .with_mode(Mode::Lstm),
            1,
        )
        .map_err(js)?;
        let cfg = OptimConfig::new(Method::ADAM, 3e-3).with_max_norm(Some(5.0));
        let opt = Optimizer::new(&ctx, cfg, lm.params()).map_err(js)?;
        Ok(Trainer {
            ctx,
            chars,
            ids,
            lm,
            opt,
            state: None,
            chunk: 0,
        })
    }

    /// The adapter, its features and limits, as the library reports them.
    pub fn adapter(&self) -> String {
        self.ctx.report()
    }

    /// Distinct characters of the text.
    pub fn vocab(&self) -> usize {
        self.chars.len()
    }

    /// Parameters of the model.
    pub fn parameters(&self) -> usize {
        self.lm.params().iter().map(|p| p.value.numel()).sum()
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> u32 {
        self.opt.steps()
    }

    /// Characters per training step.
    pub fn chars_per_step(&self) -> usize {
        Streams::new(&self.ids, BATCH, BPTT).map_or(0, |s| s.streams() * BPTT)
    }

    /// Trains `n` steps (chunks, each one submit); returns their losses in nats
    /// per character.
    pub async fn train(&mut self, n: u32) -> Result<Vec<f32>, JsValue> {
        let streams = Streams::new(&self.ids, BATCH, BPTT).map_err(js)?;
        let mut losses = Vec::with_capacity(n as usize);
        for _ in 0..n {
            if self.chunk >= streams.chunks() {
                // A new pass over the text starts from a zero state.
                self.chunk = 0;
                self.state = None;
            }
            let Some(batch) = streams.chunk(self.chunk) else {
                break;
            };
            let (report, next) = self
                .lm
                .train_step_async(&self.ctx, &batch, self.state.as_ref(), &mut self.opt)
                .await
                .map_err(js)?;
            self.state = Some(next);
            self.chunk += 1;
            losses.push(report.loss);
        }
        Ok(losses)
    }

    /// `len` characters sampled at `temperature` after `prime` (its characters
    /// that are not in the text are left out).
    pub async fn sample(
        &self,
        prime: String,
        len: usize,
        temperature: f32,
        seed: u64,
    ) -> Result<String, JsValue> {
        let mut ids: Vec<u32> = prime
            .chars()
            .filter_map(|c| self.chars.binary_search(&c).ok())
            .map(|i| i as u32)
            .collect();
        if ids.is_empty() {
            ids.push(self.ids[0]);
        }
        let out = self
            .lm
            .sample_async(&self.ctx, &ids, len, &Sampling::at(temperature), seed)
            .await
            .map_err(js)?;
        Ok(out
            .into_iter()
            .filter_map(|i| self.chars.get(i as usize))
            .collect())
    }

    /// Turns per-kernel timing on or off; timings land when the GPU is done.
    pub fn set_profiling(&self, on: bool) {
        self.ctx.set_profiling(on);
    }

    /// The profiler's table (GPU timestamps by kernel and by phase).
    pub fn profile(&self) -> String {
        self.ctx.profile().table()
    }
}

/// Times the W4 workload (the BiLSTM tagger's training step, as in the native
/// bench) in this page: `warmup` untimed steps, then `runs` timed ones, each
/// awaited to its report; returns the milliseconds of each timed step.
#[wasm_bindgen]
pub async fn time_w4(warmup: u32, runs: u32) -> Result<Vec<f64>, JsValue> {
    let ctx = Context::new_async().await.map_err(js)?;
    let (model, mut adam) = w4::tagger(&ctx, DType::F32).map_err(js)?;
    let batch = w4::batch();
    let mut times = Vec::with_capacity(runs as usize);
    for i in 0..warmup + runs {
        let start = js_sys::Date::now();
        train::step_async(&model, &ctx, &batch, &mut adam)
            .await
            .map_err(js)?;
        if i >= warmup {
            times.push(js_sys::Date::now() - start);
        }
    }
    Ok(times)
}

/// What the W4 step is, as the native bench table names it.
#[wasm_bindgen]
pub fn w4_what() -> String {
    w4::what()
}

/// The W4 step's GEMM arithmetic in flops.
#[wasm_bindgen]
pub fn w4_flops() -> f64 {
    w4::flops()
}
