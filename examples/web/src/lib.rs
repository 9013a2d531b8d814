//! rnn-wgpu in a browser tab: a character language model (embedding → an LSTM,
//! GRU, Elman, minGRU or minLSTM stack → linear) trained on WebGPU by truncated
//! BPTT over the text the page hands it, its last tenth held out for a
//! validation loss; saved to and loaded from safetensors bytes (PyTorch's names,
//! the configuration and characters in the metadata); samples drawn on the GPU
//! with temperature, top-k and top-p; the profiler's per-kernel table; and the
//! W4 tagger step, timed in the page for comparison with native.
//!
//! Build and serve: `examples/web/serve`, then open the address it prints.
//! `index.html` and `app.js` are the page; this crate is what they call.

#[path = "../../../benches/common/w4.rs"]
mod w4;

use std::collections::HashMap;

use rnn_wgpu::data::Streams;
use rnn_wgpu::models::language_model::State;
use rnn_wgpu::models::{LanguageModel, LanguageModelConfig};
use rnn_wgpu::nn::{Cell, Mode, Module, StateDict};
use rnn_wgpu::ops::sample::Sampling;
use rnn_wgpu::train::{self, Method, OptimConfig, Optimizer};
use rnn_wgpu::{Context, DType, Error, Tape};
use wasm_bindgen::prelude::*;

/// Characters of the embedding.
const EMB: usize = 32;
/// What a saved file's metadata says it is.
const FORMAT: &str = "rnn-wgpu web char-lm 1";

fn js(e: Error) -> JsValue {
    JsValue::from_str(&e.to_string())
}

fn plain(text: impl Into<String>) -> JsValue {
    JsValue::from_str(&text.into())
}

/// The cells the page offers, by the names its menu uses.
fn cell(name: &str) -> Result<Cell, JsValue> {
    Ok(match name {
        "lstm" => Cell::Recurrent(Mode::Lstm),
        "gru" => Cell::Recurrent(Mode::Gru),
        "rnn" => Cell::Recurrent(Mode::RnnTanh),
        "mingru" => Cell::MinGru,
        "minlstm" => Cell::MinLstm,
        other => return Err(plain(format!("unknown cell {other:?}"))),
    })
}

/// The settings a model is built from (and saved with).
#[derive(Clone, Debug)]
struct Settings {
    cell: String,
    hidden: usize,
    layers: usize,
    lr: f32,
    /// Streams per batch and characters per chunk of truncated BPTT.
    batch: usize,
    bptt: usize,
    /// The initialization's seed.
    seed: u64,
}

/// The shortest text for chunks of `bptt`: a chunk and its next character to
/// train on, and as much again held out.
fn shortest(bptt: usize) -> usize {
    2 * (bptt + 1)
}

/// A character language model being trained on one text.
#[wasm_bindgen]
pub struct Trainer {
    ctx: Context,
    /// Id → character; the training text and the held-out tail as ids.
    chars: Vec<char>,
    ids: Vec<u32>,
    held: Vec<u32>,
    settings: Settings,
    lm: LanguageModel,
    opt: Optimizer,
    /// The state the last chunk ended in, and the next chunk.
    state: Option<State>,
    chunk: usize,
}

/// The text's characters, sorted, or a refusal in plain words.
fn alphabet(text: &str) -> Result<Vec<char>, JsValue> {
    if text.contains('\0') || text.contains('\u{FFFD}') {
        return Err(plain(
            "this looks like a binary file, not text: it holds NUL bytes or bytes that are not UTF-8",
        ));
    }
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    Ok(chars)
}

/// `text` as ids of `chars` (characters not among them are left out), split
/// into the training part and the held-out last tenth (at least a chunk).
fn split(text: &str, chars: &[char], bptt: usize) -> (Vec<u32>, Vec<u32>) {
    let ids: Vec<u32> = text
        .chars()
        .filter_map(|c| chars.binary_search(&c).ok())
        .map(|i| i as u32)
        .collect();
    let held = (ids.len() / 10).max(bptt + 1).min(ids.len());
    let cut = ids.len() - held;
    (ids[..cut].to_vec(), ids[cut..].to_vec())
}

impl Trainer {
    async fn build(
        chars: Vec<char>,
        text: &str,
        settings: Settings,
        saved: Option<&StateDict>,
    ) -> Result<Trainer, JsValue> {
        let bptt = settings.bptt;
        let (ids, held) = split(text, &chars, bptt);
        if ids.len() < bptt + 1 && saved.is_none() {
            return Err(plain(format!(
                "the text is too short: {} characters; at least {} are needed for chunks of {bptt} \
                 (the last tenth, at least {}, is held out to measure the loss on text the model \
                 does not train on)",
                text.chars().count(),
                shortest(bptt),
                bptt + 1
            )));
        }
        let ctx = Context::new_async().await.map_err(js)?;
        let cfg = LanguageModelConfig::new(chars.len())
            .with_emb(EMB)
            .with_hidden(settings.hidden)
            .with_layers(settings.layers)
            .with_cell(cell(&settings.cell)?);
        let lm = LanguageModel::new(&ctx, cfg, settings.seed).map_err(js)?;
        let cfg = OptimConfig::new(Method::ADAM, settings.lr).with_max_norm(Some(5.0));
        let mut opt = Optimizer::new(&ctx, cfg, lm.params()).map_err(js)?;
        if let Some(sd) = saved {
            sd.apply(&lm.named_params(), "the file").map_err(js)?;
            sd.apply_optimizer(&mut opt, "the file").map_err(js)?;
        }
        Ok(Trainer {
            ctx,
            chars,
            ids,
            held,
            settings,
            lm,
            opt,
            state: None,
            chunk: 0,
        })
    }
}

#[wasm_bindgen]
impl Trainer {
    /// Opens the device and builds a model of `layers` layers of `hidden` units
    /// of `cell` ("lstm", "gru", "rnn", "mingru", "minlstm") over the characters
    /// of `text`, initialized from `seed`, trained at learning rate `lr` on
    /// batches of `batch` streams of `bptt` characters. Refuses, in plain words,
    /// a text too short, a binary file and sizes of 0.
    #[allow(clippy::too_many_arguments)] // one per control of the page
    pub async fn create(
        text: String,
        cell: String,
        hidden: usize,
        layers: usize,
        lr: f32,
        batch: usize,
        bptt: usize,
        seed: u64,
    ) -> Result<Trainer, JsValue> {
        if hidden == 0 || layers == 0 || batch == 0 || bptt == 0 || !(lr.is_finite() && lr > 0.0) {
            return Err(plain(format!(
                "hidden size, layers, batch, BPTT length and learning rate must be above 0 \
                 (got {hidden}, {layers}, {batch}, {bptt}, {lr})"
            )));
        }
        let chars = alphabet(&text)?;
        let settings = Settings {
            cell,
            hidden,
            layers,
            lr,
            batch,
            bptt,
            seed,
        };
        Self::build(chars, &text, settings, None).await
    }

    /// A model saved by [`save`](Self::save): its weights, optimizer state and
    /// step count, to go on training on `text` (its characters that the model
    /// does not know are left out) or only to generate.
    pub async fn load(bytes: Vec<u8>, text: String) -> Result<Trainer, JsValue> {
        let sd = StateDict::from_bytes(&bytes, "the file").map_err(js)?;
        let meta = |k: &str| {
            sd.metadata
                .get(k)
                .cloned()
                .ok_or_else(|| plain(format!("not a model saved by this page: no {k:?} in it")))
        };
        if meta("format")? != FORMAT {
            return Err(plain("not a model saved by this page (another format)"));
        }
        let number = |k: &str| -> Result<usize, JsValue> {
            meta(k)?
                .parse()
                .map_err(|_| plain(format!("the file's {k:?} is not a number")))
        };
        let settings = Settings {
            cell: meta("cell")?,
            hidden: number("hidden")?,
            layers: number("layers")?,
            lr: meta("lr")?
                .parse()
                .map_err(|_| plain("the file's \"lr\" is not a number"))?,
            batch: number("batch")?,
            bptt: number("bptt")?,
            seed: number("seed")? as u64,
        };
        let chars: Vec<char> = meta("chars")?.chars().collect();
        Self::build(chars, &text, settings, Some(&sd)).await
    }

    /// The model, its optimizer state and step count as safetensors bytes: the
    /// parameters under PyTorch's names (`embedding.weight`, `rnn.weight_ih_l0`,
    /// ..., `fc.bias`), the optimizer's under `optim.`, and in the metadata the
    /// characters (id order), cell, sizes and learning rate.
    pub async fn save(&self) -> Result<Vec<u8>, JsValue> {
        let mut sd = StateDict::capture_async(&self.lm.named_params(), Some(&self.opt))
            .await
            .map_err(js)?;
        let s = &self.settings;
        let meta: HashMap<&str, String> = HashMap::from([
            ("format", FORMAT.to_string()),
            ("chars", self.chars.iter().collect()),
            ("cell", s.cell.clone()),
            ("emb", EMB.to_string()),
            ("hidden", s.hidden.to_string()),
            ("layers", s.layers.to_string()),
            ("lr", s.lr.to_string()),
            ("batch", s.batch.to_string()),
            ("bptt", s.bptt.to_string()),
            ("seed", s.seed.to_string()),
        ]);
        for (k, v) in meta {
            sd.metadata.insert(k.to_string(), v);
        }
        sd.to_bytes().map_err(js)
    }

    /// The adapter, its features and limits, as the library reports them.
    pub fn adapter(&self) -> String {
        self.ctx.report()
    }

    /// Distinct characters of the model.
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

    /// The cell, hidden size, layers and learning rate, as the page shows them.
    pub fn describe(&self) -> String {
        let s = &self.settings;
        format!(
            "{} · {} × {} · lr {} · {} × {} chars a step · seed {}",
            s.cell, s.layers, s.hidden, s.lr, s.batch, s.bptt, s.seed
        )
    }

    /// Whether there is text to train on (a loaded model may only generate).
    pub fn can_train(&self) -> bool {
        self.ids.len() > self.settings.bptt
    }

    /// Characters of the training part and of the held-out tail.
    pub fn split_sizes(&self) -> Vec<u32> {
        vec![self.ids.len() as u32, self.held.len() as u32]
    }

    /// Characters per training step.
    pub fn chars_per_step(&self) -> usize {
        let (batch, bptt) = (self.settings.batch, self.settings.bptt);
        Streams::new(&self.ids, batch, bptt).map_or(0, |s| s.streams() * bptt)
    }

    /// Trains `n` steps (chunks, each one submit); returns their losses in nats
    /// per character.
    pub async fn train(&mut self, n: u32) -> Result<Vec<f32>, JsValue> {
        let streams = Streams::new(&self.ids, self.settings.batch, self.settings.bptt)
            .map_err(|_| plain("no text to train on: load a model with a text, or restart"))?;
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

    /// The mean loss in nats per character on the held-out tail (one stream,
    /// chunk after chunk from the state the last ended in; no dropout).
    pub async fn validate(&self) -> Result<f32, JsValue> {
        let streams = Streams::new(&self.held, 1, self.settings.bptt).map_err(js)?;
        let (mut sum, mut count) = (0.0f64, 0usize);
        let mut state = None;
        for i in 0..streams.chunks() {
            let Some(batch) = streams.chunk(i) else {
                break;
            };
            let mut tape = Tape::eval(&self.ctx, "validate");
            let (loss, next) = self
                .lm
                .loss(&mut tape, &batch, state.as_ref())
                .map_err(js)?;
            tape.into_recorder().submit();
            let n = batch.lengths.iter().sum::<usize>();
            sum += f64::from(loss.to_vec_async().await.map_err(js)?[0]) * n as f64;
            count += n;
            state = Some(next);
        }
        Ok((sum / count.max(1) as f64) as f32)
    }

    /// `len` characters sampled after `prime` (its characters the model does not
    /// know are left out) at `temperature`, from the `top_k` most likely (0:
    /// all) within probability mass `top_p` (1: all), the draws from `seed`.
    pub async fn sample(
        &self,
        prime: String,
        len: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        seed: u64,
    ) -> Result<String, JsValue> {
        let mut ids: Vec<u32> = prime
            .chars()
            .filter_map(|c| self.chars.binary_search(&c).ok())
            .map(|i| i as u32)
            .collect();
        if ids.is_empty() {
            ids.push(self.ids.first().copied().unwrap_or(0));
        }
        let how = Sampling {
            temperature,
            top_k: (top_k > 0).then_some(top_k),
            top_p: (top_p < 1.0).then_some(top_p),
        };
        let out = self
            .lm
            .sample_async(&self.ctx, &ids, len, &how, seed)
            .await
            .map_err(js)?;
        Ok(out
            .into_iter()
            .filter_map(|i| self.chars.get(i as usize))
            .collect())
    }

    /// The logits `[T, vocab]` of the model reading `prompt` from a zero state
    /// (its characters the model does not know are left out), for comparing
    /// with another implementation.
    pub async fn logits(&self, prompt: String) -> Result<Vec<f32>, JsValue> {
        let ids: Vec<u32> = prompt
            .chars()
            .filter_map(|c| self.chars.binary_search(&c).ok())
            .map(|i| i as u32)
            .collect();
        if ids.is_empty() {
            return Err(plain("the prompt has no character the model knows"));
        }
        let mut tape = Tape::eval(&self.ctx, "logits");
        let (logits, _) = self
            .lm
            .forward(&mut tape, &ids, 1, ids.len(), None)
            .map_err(js)?;
        tape.into_recorder().submit();
        logits.to_vec_async().await.map_err(js)
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

/// The shortest text the page trains on in chunks of `bptt`.
#[wasm_bindgen]
pub fn min_chars(bptt: usize) -> usize {
    shortest(bptt)
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
