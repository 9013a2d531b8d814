//! The browser test suite: the library built for wasm32 and run in a page on the
//! browser's own WebGPU (navigator.gpu). `tests/browser/run` builds it, serves
//! `tests/browser/` and drives headless Chromium through the page `index.html`,
//! which first compiles every shader with the browser's WebGPU (`shaders()` hands
//! them over), then awaits `run_tests()`. Each case logs one line, `ok NAME: ...`
//! or `FAIL NAME: ...`; nothing here blocks, every readback is awaited.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use rnn_wgpu::data::{Batch, ParallelBatch, WordChars};
use rnn_wgpu::models::{
    BiLstmTagger, CharConfig, LanguageModel, LanguageModelConfig, TaggerConfig,
};
use rnn_wgpu::models::{EncoderKind, Link, Seq2Seq, Seq2SeqConfig};
use rnn_wgpu::nn::recurrent::{Config, Mode, Recurrent, State};
use rnn_wgpu::nn::{Attention, Crf, HiddenState, MinGru, MinLstm, Module, Named, Param, Score};
use rnn_wgpu::ops::sample::Sampling;
use rnn_wgpu::tape::{CustomOp, GradCheck, Gradients, Saved};
use rnn_wgpu::train::checkpoint::Checkpoint;
use rnn_wgpu::train::{self, Method, OptimConfig, Optimizer};
use rnn_wgpu::{Context, ContextOptions, DType, Error, Kernel, Recorder, Tape, Tensor, Var};
use safetensors::{Dtype, SafeTensors};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console)]
    fn log(line: &str);
}

/// Every shader the library runs in a browser (all but `NATIVE_ONLY`) as `[name,
/// source]` pairs, for the page's own compile check (createShaderModule,
/// getCompilationInfo, createComputePipelineAsync).
#[wasm_bindgen]
pub fn shaders() -> js_sys::Array {
    rnn_wgpu::shaders::ALL
        .iter()
        .filter(|s| !rnn_wgpu::shaders::NATIVE_ONLY.contains(&s.name))
        .map(|s| {
            let pair = js_sys::Array::new();
            pair.push(&JsValue::from_str(s.name));
            pair.push(&JsValue::from_str(s.source));
            JsValue::from(pair)
        })
        .collect()
}

type Outcome = std::result::Result<String, String>;
type Case<'a> = Pin<Box<dyn Future<Output = Outcome> + 'a>>;

/// Opens the device and runs every case; returns `[passed, failed]`. An error
/// (no WebGPU adapter) rejects the promise.
#[wasm_bindgen]
pub async fn run_tests() -> std::result::Result<js_sys::Array, JsValue> {
    let ctx = Context::new_async()
        .await
        .map_err(|e| JsValue::from_str(&format!("no device: {e}")))?;
    log(&format!("device: {}", ctx.report().replace('\n', "; ")));
    // A second device whose recurrent steps all run fused (one dispatch each).
    let fused = Context::with_options_async(
        &ContextOptions::default()
            .with_fused_steps(Some(true))
            .with_persistent_steps(Some(false)),
    )
    .await
    .map_err(|e| JsValue::from_str(&format!("no device: {e}")))?;
    // A third whose layers run persistently (a pass's steps in one dispatch).
    let persistent =
        Context::with_options_async(&ContextOptions::default().with_persistent_steps(Some(true)))
            .await
            .map_err(|e| JsValue::from_str(&format!("no device: {e}")))?;
    let cases: Vec<(&str, Case)> = vec![
        (
            "f16 storage refused without shader-f16",
            Box::pin(f16_refused(&ctx)),
        ),
        ("golden lstm_l2_bi_h13", Box::pin(golden(&ctx, LSTM_L2_BI))),
        (
            "golden lstm_l1_bi_h65",
            Box::pin(golden(&ctx, LSTM_L1_BI_65)),
        ),
        ("golden gru_l2_bi_h13", Box::pin(golden(&ctx, GRU_L2_BI))),
        (
            "golden lstm_l2_h6 zoneout, training",
            Box::pin(golden(&ctx, LSTM_ZONEOUT_TRAIN)),
        ),
        (
            "golden lstm_l2_h8 zoneout, evaluation",
            Box::pin(golden(&ctx, LSTM_ZONEOUT_EVAL)),
        ),
        (
            "golden layer_norm_lstm_l2_bi_h6",
            Box::pin(golden(&ctx, LAYER_NORM_LSTM)),
        ),
        (
            "golden layer_norm_lstm_l2_bi_h6 zoneout, training",
            Box::pin(golden(&ctx, LAYER_NORM_ZONEOUT)),
        ),
        (
            "golden lstm_l2_h8 recurrent dropout and zoneout, training",
            Box::pin(golden(&ctx, LSTM_RECURRENT_DROPOUT)),
        ),
        (
            "golden lstm_l2_h8 recurrent dropout and zoneout, fused steps",
            Box::pin(golden(&fused, LSTM_RECURRENT_DROPOUT)),
        ),
        (
            "golden lstm_l2_bi_h13, fused steps",
            Box::pin(golden(&fused, LSTM_L2_BI)),
        ),
        (
            "golden lstm_l1_bi_h65, fused steps",
            Box::pin(golden(&fused, LSTM_L1_BI_65)),
        ),
        (
            "golden gru_l2_bi_h13, fused steps",
            Box::pin(golden(&fused, GRU_L2_BI)),
        ),
        (
            "fused steps: one dispatch each",
            Box::pin(step_dispatches(&fused, false)),
        ),
        (
            "golden lstm_l2_bi_h13, persistent steps",
            Box::pin(golden(&persistent, LSTM_L2_BI)),
        ),
        (
            "golden lstm_l1_bi_h65, persistent steps",
            Box::pin(golden(&persistent, LSTM_L1_BI_65)),
        ),
        (
            "golden gru_l2_bi_h13, persistent steps",
            Box::pin(golden(&persistent, GRU_L2_BI)),
        ),
        (
            "golden lstm_l2_h8 recurrent dropout and zoneout, persistent steps",
            Box::pin(golden(&persistent, LSTM_RECURRENT_DROPOUT)),
        ),
        (
            "persistent steps: one dispatch per pass",
            Box::pin(step_dispatches(&persistent, true)),
        ),
        (
            "golden attention_general_tq4_s70",
            Box::pin(golden(&ctx, ATT_GENERAL)),
        ),
        (
            "golden attention_additive_tq4_s9",
            Box::pin(golden(&ctx, ATT_ADDITIVE)),
        ),
        (
            "golden attention_dot_tq5_s9",
            Box::pin(golden(&ctx, ATT_DOT)),
        ),
        (
            "golden label-smoothed cross-entropy, 7 classes",
            Box::pin(golden_smoothed(&ctx, SMOOTHED_C7)),
        ),
        (
            "golden label-smoothed cross-entropy, 70 classes",
            Box::pin(golden_smoothed(&ctx, SMOOTHED_C70)),
        ),
        ("golden character-aware tagger", Box::pin(char_tagger(&ctx))),
        (
            "tagger training: the loss falls",
            Box::pin(tagger_learns(&ctx)),
        ),
        ("seq2seq: greedy and beam search", Box::pin(decoding(&ctx))),
        ("language model: sampling", Box::pin(sampling(&ctx))),
        ("checkpoint: capture and apply", Box::pin(checkpoint(&ctx))),
        ("bad input: typed errors", Box::pin(bad_input(&ctx))),
        ("profiler: timestamps per kernel", Box::pin(profiler(&ctx))),
        (
            "custom kernel: GELU, its gradcheck and the profile",
            Box::pin(custom_kernel(&ctx)),
        ),
        (
            "broadcasting ops: gradcheck against f64",
            Box::pin(broadcasting(&ctx)),
        ),
        (
            "golden min_gru_l2_bi_h6 (a scan over time)",
            Box::pin(golden_min_rnn(&ctx, MIN_GRU)),
        ),
        (
            "golden min_lstm_l2_bi_h6 (a scan over time)",
            Box::pin(golden_min_rnn(&ctx, MIN_LSTM)),
        ),
        (
            "golden crf_k4_t5 (forbidden transitions; forward-backward and Viterbi)",
            Box::pin(golden_crf(&ctx, CRF_FORBIDDEN)),
        ),
        (
            "golden crf_k70_t4 (more tags than a workgroup's lanes)",
            Box::pin(golden_crf(&ctx, CRF_K70)),
        ),
    ];
    let (mut passed, mut failed) = (0u32, 0u32);
    for (name, case) in cases {
        let start = js_sys::Date::now();
        let outcome = case.await;
        let ms = js_sys::Date::now() - start;
        match outcome {
            Ok(detail) => {
                passed += 1;
                log(&format!("ok {name}: {detail} ({ms:.0} ms)"));
            }
            Err(why) => {
                failed += 1;
                log(&format!("FAIL {name}: {why}"));
            }
        }
    }
    Ok([passed, failed].into_iter().map(JsValue::from).collect())
}

/// `Err(what)` unless `cond`.
fn ensure(cond: bool, what: impl FnOnce() -> String) -> std::result::Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

fn fail(e: Error) -> String {
    e.to_string()
}

async fn f16_refused(ctx: &Context) -> Outcome {
    let made = Tensor::empty(ctx, &[6], DType::F16);
    if ctx.has_f16() {
        let t = made.map_err(fail)?;
        let data = [0.5, -1.0, 2.0, 0.25, 3.0, -0.125];
        t.write(&data).map_err(fail)?;
        let back = t.to_vec_async().await.map_err(fail)?;
        ensure(back == data, || format!("f16 round trip gave {back:?}"))?;
        return Ok("the adapter has shader-f16: f16 tensors round-trip".into());
    }
    match made {
        Err(Error::FeatureMissing { feature, .. }) => Ok(format!("FeatureMissing {feature}")),
        other => Err(format!("expected FeatureMissing, got {other:?}")),
    }
}

// PyTorch golden files from tests/golden (written by tools/golden.py).
const LSTM_L2_BI: &[u8] = include_bytes!("../../golden/lstm_l2_bi_h13.safetensors");
const MIN_GRU: &[u8] = include_bytes!("../../golden/min_gru_l2_bi_h6.safetensors");
const MIN_LSTM: &[u8] = include_bytes!("../../golden/min_lstm_l2_bi_h6.safetensors");
const CRF_FORBIDDEN: &[u8] = include_bytes!("../../golden/crf_k4_t5.safetensors");
const CRF_K70: &[u8] = include_bytes!("../../golden/crf_k70_t4.safetensors");
const LSTM_L1_BI_65: &[u8] = include_bytes!("../../golden/lstm_l1_bi_h65.safetensors");
const GRU_L2_BI: &[u8] = include_bytes!("../../golden/gru_l2_bi_h13.safetensors");
const LSTM_ZONEOUT_TRAIN: &[u8] =
    include_bytes!("../../golden/lstm_l2_h6_zoneout_train.safetensors");
const LSTM_ZONEOUT_EVAL: &[u8] = include_bytes!("../../golden/lstm_l2_h8_zoneout_eval.safetensors");
const LAYER_NORM_LSTM: &[u8] = include_bytes!("../../golden/layer_norm_lstm_l2_bi_h6.safetensors");
const LAYER_NORM_ZONEOUT: &[u8] =
    include_bytes!("../../golden/layer_norm_lstm_l2_bi_h6_zoneout_train.safetensors");
const LSTM_RECURRENT_DROPOUT: &[u8] =
    include_bytes!("../../golden/lstm_l2_h8_recurrent_dropout30_train.safetensors");
const ATT_GENERAL: &[u8] = include_bytes!("../../golden/attention_general_tq4_s70.safetensors");
const ATT_ADDITIVE: &[u8] = include_bytes!("../../golden/attention_additive_tq4_s9.safetensors");
const ATT_DOT: &[u8] = include_bytes!("../../golden/attention_dot_tq5_s9.safetensors");
const SMOOTHED_C7: &[u8] = include_bytes!("../../golden/tape_cross_entropy_smoothed.safetensors");
const SMOOTHED_C70: &[u8] =
    include_bytes!("../../golden/tape_cross_entropy_smoothed_c70.safetensors");
const CHAR_TAGGER: &[u8] = include_bytes!("../../fixtures/char_tagger.safetensors");
const CHAR_TAGGER_IO: &[u8] = include_bytes!("../../fixtures/char_tagger_io.safetensors");

/// The native golden test's tolerance: f32 kernels against PyTorch's float64
/// results, 1e-4 relative past 1 and absolute below.
const GOLDEN_TOL: f64 = 1e-4;

/// A golden file: metadata, f32 tensors (shape, values) and i32 tensors.
struct Golden {
    meta: HashMap<String, String>,
    f32s: HashMap<String, (Vec<usize>, Vec<f32>)>,
    i32s: HashMap<String, Vec<i32>>,
}

impl Golden {
    fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
        let meta = header.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
        let (mut f32s, mut i32s) = (HashMap::new(), HashMap::new());
        for (key, view) in st.tensors() {
            let words = view
                .data()
                .chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], c[3]]);
            match view.dtype() {
                Dtype::F32 => {
                    let v = words.map(f32::from_le_bytes).collect();
                    f32s.insert(key, (view.shape().to_vec(), v));
                }
                Dtype::I32 => {
                    i32s.insert(key, words.map(i32::from_le_bytes).collect());
                }
                other => return Err(format!("tensor {key} has dtype {other:?}")),
            }
        }
        Ok(Self { meta, f32s, i32s })
    }

    fn meta(&self, key: &str) -> std::result::Result<&str, String> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("metadata {key} missing"))
    }

    fn usize(&self, key: &str) -> std::result::Result<usize, String> {
        self.meta(key)?.parse().map_err(|e| format!("{key}: {e}"))
    }

    fn tensor(&self, key: &str) -> std::result::Result<&(Vec<usize>, Vec<f32>), String> {
        self.f32s
            .get(key)
            .ok_or_else(|| format!("tensor {key} missing"))
    }

    fn upload(&self, ctx: &Context, key: &str) -> std::result::Result<Tensor, String> {
        let (shape, v) = self.tensor(key)?;
        Tensor::from_slice(ctx, shape, v).map_err(fail)
    }

    fn lengths(&self, key: &str) -> std::result::Result<Vec<usize>, String> {
        let v = self.i32s.get(key).ok_or_else(|| format!("{key} missing"))?;
        Ok(v.iter().map(|&n| n as usize).collect())
    }

    fn load_params(&self, named: &[Named]) -> std::result::Result<(), String> {
        for p in named {
            p.write(&self.tensor(&p.name)?.1)
                .map_err(|e| format!("{}: {e}", p.name))?;
        }
        Ok(())
    }
}

/// Compares every output the case holds with what the GPU gave; returns the worst
/// error, or the first tensor past the tolerance.
struct Compare<'g> {
    case: &'g Golden,
    checked: Vec<String>,
    worst: f64,
}

impl<'g> Compare<'g> {
    fn new(case: &'g Golden) -> Self {
        Self {
            case,
            checked: vec![],
            worst: 0.0,
        }
    }

    async fn check(&mut self, key: &str, t: &Tensor) -> std::result::Result<(), String> {
        let got = t.to_vec_async().await.map_err(fail)?;
        self.values(key, &got)
    }

    fn values(&mut self, key: &str, got: &[f32]) -> std::result::Result<(), String> {
        let (_, want) = self.case.tensor(key)?;
        ensure(got.len() == want.len(), || {
            format!("{key}: {} values, want {}", got.len(), want.len())
        })?;
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (g as f64 - w as f64).abs() / (w as f64).abs().max(1.0);
            ensure(err <= GOLDEN_TOL, || {
                format!("{key}[{i}] = {g} but PyTorch says {w} (error {err:.2e})")
            })?;
            self.worst = self.worst.max(err);
        }
        self.checked.push(key.to_string());
        Ok(())
    }

    /// Compares the gradient of each of `module`'s parameters with the case's
    /// `grad.<name>`.
    async fn grads(&mut self, module: &dyn Module) -> std::result::Result<(), String> {
        for e in module.entries() {
            let grad = e.param.grad.to_vec_async().await.map_err(fail)?;
            for n in &e.names {
                self.values(
                    &format!("grad.{}", n.name),
                    &grad[n.offset..n.offset + n.numel()],
                )?;
            }
        }
        Ok(())
    }

    /// Fails unless every f32 tensor was loaded or compared.
    fn all_checked(&self, loaded: &[String]) -> Outcome {
        let mut left: Vec<&String> = self
            .case
            .f32s
            .keys()
            .filter(|k| !self.checked.contains(k) && !loaded.contains(k))
            .collect();
        left.sort();
        ensure(left.is_empty(), || format!("not compared: {left:?}"))?;
        Ok(format!(
            "{} tensors within {GOLDEN_TOL:e}, worst {:.1e}",
            self.checked.len(),
            self.worst
        ))
    }
}

/// A label-smoothed cross-entropy case: the loss and its gradient on a tape.
async fn golden_smoothed(ctx: &Context, bytes: &[u8]) -> Outcome {
    let case = Golden::parse(bytes)?;
    let x = Param::new(case.upload(ctx, "x0")?).map_err(fail)?;
    let targets: Vec<u32> = case
        .i32s
        .get("targets")
        .ok_or("targets missing")?
        .iter()
        .map(|&t| t as u32)
        .collect();
    let eps: f32 = case
        .meta("smoothing")?
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut tape = Tape::train(ctx, "golden");
    let xv = tape.param(&x);
    let y = tape
        .cross_entropy_smoothed(&xv, &targets, Some(u32::MAX), eps)
        .map_err(fail)?;
    tape.backward_with(&y, &case.upload(ctx, "d")?)
        .map_err(fail)?;
    tape.into_recorder().submit();
    let mut cmp = Compare::new(&case);
    cmp.check("y", y.tensor()).await?;
    cmp.check("grad.x0", &x.grad).await?;
    cmp.all_checked(&["x0".into(), "d".into()])
}

async fn golden(ctx: &Context, bytes: &[u8]) -> Outcome {
    let case = Golden::parse(bytes)?;
    if case.meta("op")? == "attention" {
        return golden_attention(ctx, &case).await;
    }
    let mode = Mode::from_name(case.meta("op")?).ok_or("unknown op")?;
    let cfg = Config::new(case.usize("input_size")?, case.usize("hidden_size")?)
        .with_layers(case.usize("num_layers")?)
        .with_bidirectional(case.meta("bidirectional")? == "1");
    let mut model = Recurrent::new(ctx, mode, cfg, 0).map_err(fail)?;
    if case.meta("layer_norm").is_ok_and(|v| v == "1") {
        model = model.with_layer_norm().map_err(fail)?;
    }
    // Zoneout: drawn from the case's seed in training, the expectation else;
    // recurrent dropout in training.
    let train = case.meta("train").is_ok_and(|t| t == "1");
    let number = |s: &str| s.parse::<f32>().map_err(|e| e.to_string());
    if let Ok(h) = case.meta("zoneout_h") {
        let seed = case.usize("zoneout_seed")? as u32;
        model = model
            .with_zoneout(number(h)?, number(case.meta("zoneout_c")?)?, seed)
            .map_err(fail)?;
    }
    if let Ok(p) = case.meta("recurrent_dropout") {
        let seed = case.usize("recurrent_dropout_seed")? as u32;
        model = model
            .with_recurrent_dropout(number(p)?, seed)
            .map_err(fail)?;
    }
    case.load_params(&model.named_params())?;
    let lstm = mode == Mode::Lstm;
    let lengths = case.lengths("lengths")?;
    let (x, h0, dy, dh_n) = (
        case.upload(ctx, "x")?,
        case.upload(ctx, "h0")?,
        case.upload(ctx, "dy")?,
        case.upload(ctx, "dh_n")?,
    );
    let (initial, d_state) = if lstm {
        (
            State::Lstm {
                h: h0,
                c: case.upload(ctx, "c0")?,
            },
            State::Lstm {
                h: dh_n,
                c: case.upload(ctx, "dc_n")?,
            },
        )
    } else {
        (State::Hidden { h: h0 }, State::Hidden { h: dh_n })
    };
    let mut rec = Recorder::new(ctx, "golden");
    let forward = if train {
        Recurrent::forward_train
    } else {
        Recurrent::forward
    };
    let (out, saved) = forward(&model, &mut rec, &x, &lengths, Some(&initial)).map_err(fail)?;
    let grads = model
        .backward(&mut rec, &saved, &dy, Some(&d_state))
        .map_err(fail)?;
    rec.submit();
    let mut cmp = Compare::new(&case);
    cmp.check("y", &out.y).await?;
    cmp.check("h_n", out.state.h()).await?;
    cmp.check("grad.x", &grads.dx).await?;
    cmp.check("grad.h0", grads.state.h()).await?;
    if let (Some(c_n), Some(dc0)) = (out.state.c(), grads.state.c()) {
        cmp.check("c_n", c_n).await?;
        cmp.check("grad.c0", dc0).await?;
    }
    for g in model.named_grads() {
        let v = g.read_async().await.map_err(fail)?;
        cmp.values(&format!("grad.{}", g.name), &v)?;
    }
    let mut loaded: Vec<String> = model.named_params().into_iter().map(|p| p.name).collect();
    loaded.extend(["x", "h0", "c0", "dy", "dh_n", "dc_n"].map(String::from));
    cmp.all_checked(&loaded)
}

/// A minGRU or minLSTM case on a tape: outputs, final states and every gradient.
async fn golden_min_rnn(ctx: &Context, bytes: &[u8]) -> Outcome {
    let case = Golden::parse(bytes)?;
    let sizes = Config::new(case.usize("input_size")?, case.usize("hidden_size")?)
        .with_layers(case.usize("num_layers")?)
        .with_bidirectional(case.meta("bidirectional")? == "1");
    let is_lstm = case.meta("op")? == "min_lstm";
    let lstm = is_lstm
        .then(|| MinLstm::new(ctx, sizes, 0))
        .transpose()
        .map_err(fail)?;
    let gru = (!is_lstm)
        .then(|| MinGru::new(ctx, sizes, 0))
        .transpose()
        .map_err(fail)?;
    let model: &dyn Module = match (&lstm, &gru) {
        (Some(m), _) => m,
        (_, Some(m)) => m,
        _ => return Err("no model".into()),
    };
    case.load_params(&model.named_params())?;
    let lengths = case.lengths("lengths")?;
    let px = Param::new(case.upload(ctx, "x")?).map_err(fail)?;
    let ph = Param::new(case.upload(ctx, "h0")?).map_err(fail)?;
    let mut tape = Tape::train(ctx, "golden");
    for p in model.params() {
        tape.rec().zero(&p.grad).map_err(fail)?;
    }
    let x = tape.param(&px);
    let state = HiddenState { h: tape.param(&ph) };
    let (y, h_n) = match (&lstm, &gru) {
        (Some(m), _) => m.apply(&mut tape, &x, &lengths, Some(&state)),
        (_, Some(m)) => m.apply(&mut tape, &x, &lengths, Some(&state)),
        _ => return Err("no model".into()),
    }
    .map_err(fail)?;
    let flat_y = tape.reshape(&y, &[y.numel()]).map_err(fail)?;
    let flat_h = tape.reshape(&h_n.h, &[h_n.h.numel()]).map_err(fail)?;
    let both = tape.cat(&[&flat_y, &flat_h], 0).map_err(fail)?;
    let upstream = [case.tensor("dy")?.1.clone(), case.tensor("dh_n")?.1.clone()].concat();
    let upstream = Tensor::from_slice(ctx, both.shape(), &upstream).map_err(fail)?;
    tape.backward_with(&both, &upstream).map_err(fail)?;
    tape.into_recorder().submit();
    let mut cmp = Compare::new(&case);
    cmp.check("y", y.tensor()).await?;
    cmp.check("h_n", h_n.h.tensor()).await?;
    cmp.check("grad.x", &px.grad).await?;
    cmp.check("grad.h0", &ph.grad).await?;
    cmp.grads(model).await?;
    let mut loaded: Vec<String> = model.named_params().into_iter().map(|p| p.name).collect();
    loaded.extend(["x", "h0", "dy", "dh_n"].map(String::from));
    cmp.all_checked(&loaded)
}

/// A linear-chain CRF case: the loss, every gradient and the Viterbi paths.
async fn golden_crf(ctx: &Context, bytes: &[u8]) -> Outcome {
    let case = Golden::parse(bytes)?;
    let mut forbidden = vec![];
    for pair in case.meta("forbidden")?.split(',').filter(|p| !p.is_empty()) {
        let (i, j) = pair.split_once('>').ok_or("forbidden: i>j")?;
        let tag = |v: &str| v.parse::<usize>().map_err(|e| format!("forbidden: {e}"));
        forbidden.push((tag(i)?, tag(j)?));
    }
    let crf = Crf::new(ctx, case.usize("tags")?, 0)
        .and_then(|c| c.with_forbidden(&forbidden))
        .map_err(fail)?;
    case.load_params(&crf.named_params())?;
    let lengths = case.lengths("lengths")?;
    let i32s = |key: &str| -> std::result::Result<Vec<u32>, String> {
        let v = case.i32s.get(key).ok_or_else(|| format!("{key} missing"))?;
        Ok(v.iter().map(|&y| y as u32).collect())
    };
    let pe = Param::new(case.upload(ctx, "emissions")?).map_err(fail)?;
    let mut tape = Tape::train(ctx, "golden");
    crf.zero_grad(tape.rec()).map_err(fail)?;
    let emissions = tape.param(&pe);
    let loss = crf
        .nll(&mut tape, &emissions, &i32s("tags")?, &lengths)
        .map_err(fail)?;
    tape.backward(&loss).map_err(fail)?;
    let paths = crf.decode(tape.rec(), &pe.value, &lengths).map_err(fail)?;
    tape.into_recorder().submit();
    let mut cmp = Compare::new(&case);
    cmp.check("loss", loss.tensor()).await?;
    cmp.check("grad.emissions", &pe.grad).await?;
    cmp.grads(&crf).await?;
    let got = paths.to_vec_u32_async().await.map_err(fail)?;
    ensure(got == i32s("path")?, || {
        format!("Viterbi paths {got:?}, PyTorch's {:?}", i32s("path"))
    })?;
    let mut loaded: Vec<String> = crf.named_params().into_iter().map(|p| p.name).collect();
    loaded.push("emissions".into());
    cmp.all_checked(&loaded)
}

async fn golden_attention(ctx: &Context, case: &Golden) -> Outcome {
    let score = match case.meta("score")? {
        "dot" => Score::Dot,
        "general" => Score::General,
        "additive" => Score::Additive {
            size: case.tensor("v")?.0[0],
        },
        other => return Err(format!("score {other}")),
    };
    let (q_dim, k_dim) = (case.tensor("q")?.0[2], case.tensor("k")?.0[2]);
    let att = Attention::new(ctx, score, q_dim, k_dim, 1.0, 0).map_err(fail)?;
    case.load_params(&att.named_params())?;
    let lengths = case.lengths("src_lengths")?;
    let (q, k) = (case.upload(ctx, "q")?, case.upload(ctx, "k")?);
    let (dcontext, dweights) = (case.upload(ctx, "dcontext")?, case.upload(ctx, "dweights")?);
    let mut rec = Recorder::new(ctx, "golden");
    att.zero_grad(&mut rec).map_err(fail)?;
    let (out, saved) = att.forward(&mut rec, &q, &k, &lengths).map_err(fail)?;
    let grads = att
        .backward(&mut rec, &saved, &dcontext, Some(&dweights))
        .map_err(fail)?;
    rec.submit();
    let mut cmp = Compare::new(case);
    cmp.check("weights", &out.weights).await?;
    cmp.check("context", &out.context).await?;
    cmp.check("grad.q", &grads.dq).await?;
    cmp.check("grad.k", &grads.dk).await?;
    for (named, p) in att.named_params().iter().zip(att.params()) {
        cmp.check(&format!("grad.{}", named.name), &p.grad).await?;
    }
    let loaded = ["q", "k", "W", "W_q", "W_k", "v", "dcontext", "dweights"].map(String::from);
    cmp.all_checked(&loaded)
}

/// A small deterministic generator for the synthetic tasks.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % u64::from(n)) as u32
    }
}

/// A tagging task whose tag depends on the word and on its left neighbour, so the
/// recurrence must carry information: sentences of 3..=12 words over 30 word ids
/// (0 is padding), 5 tags.
fn tagging_batch(rng: &mut Lcg, size: usize) -> std::result::Result<Batch, String> {
    let seqs: Vec<(Vec<u32>, Vec<u32>)> = (0..size)
        .map(|_| {
            let n = 3 + rng.below(10) as usize;
            let ids: Vec<u32> = (0..n).map(|_| 1 + rng.below(29)).collect();
            let tags = (0..n)
                .map(|i| (ids[i] + if i > 0 { ids[i - 1] % 2 } else { 0 }) % 5)
                .collect();
            (ids, tags)
        })
        .collect();
    let refs: Vec<(&[u32], &[u32])> = seqs.iter().map(|(a, b)| (&a[..], &b[..])).collect();
    Batch::pad(&refs, 0).map_err(fail)
}

/// The fused context runs a layer's forward as the input GEMM, one dispatch per
/// step and the outputs: the golden cases above ran that path, not another.
/// A forward's dispatches: the input GEMM, a dispatch per step (fused) or one
/// for all of them (`persistent`), the outputs.
async fn step_dispatches(ctx: &Context, persistent: bool) -> Outcome {
    let bindings = ctx.limits().max_storage_buffers_per_shader_stage;
    ensure(bindings >= 9, || {
        format!("the adapter binds {bindings} storage buffers per kernel, fused steps need 9")
    })?;
    let cfg = Config::new(3, 5).with_layers(1).with_bidirectional(true);
    let (b, t) = (2, 4);
    let model = Recurrent::new(ctx, Mode::Lstm, cfg, 1).map_err(fail)?;
    let x = Tensor::zeros(ctx, &[b, t, 3]).map_err(fail)?;
    let mut rec = Recorder::new(ctx, "count");
    model.forward(&mut rec, &x, &[t; 2], None).map_err(fail)?;
    let n = rec.dispatches();
    rec.submit();
    let want = if persistent { 3 } else { t + 2 };
    ensure(n == want, || format!("{n} dispatches for {t} steps"))?;
    Ok(format!(
        "{n} dispatches for {t} steps, {bindings} storage bindings"
    ))
}

/// The character-aware two-layer tagger with PyTorch's weights (tools/tagger.py):
/// logits, loss and every parameter's gradient against PyTorch's.
async fn char_tagger(ctx: &Context) -> Outcome {
    let weights = Golden::parse(CHAR_TAGGER)?;
    let io = Golden::parse(CHAR_TAGGER_IO)?;
    let cfg = TaggerConfig::new(io.usize("vocab")?, io.usize("tags")?)
        .with_emb(io.usize("emb")?)
        .with_hidden(io.usize("hidden")?)
        .with_layers(2)
        .with_chars(Some(
            CharConfig::new(io.usize("chars")?)
                .with_emb(io.usize("char_emb")?)
                .with_hidden(io.usize("char_hidden")?),
        ));
    let model = BiLstmTagger::new(ctx, cfg, 1).map_err(fail)?;
    weights.load_params(&model.named_params())?;
    // PyTorch's ignored target -1 is the library's IGNORE as u32.
    let ints = |key: &str| -> std::result::Result<Vec<u32>, String> {
        let v = io.i32s.get(key).ok_or_else(|| format!("{key} missing"))?;
        Ok(v.iter().map(|&n| n as u32).collect())
    };
    let lengths = io.lengths("lengths")?;
    let char_lengths = io.lengths("char_lengths")?;
    let ids = ints("ids")?;
    let char_ids = ints("char_ids")?;
    let batch = Batch {
        targets: ints("targets")?,
        size: lengths.len(),
        steps: ids.len() / lengths.len(),
        ids,
        lengths,
        chars: Some(WordChars {
            words: char_lengths.len(),
            steps: char_ids.len() / char_lengths.len(),
            ids: char_ids,
            lengths: char_lengths,
            index: ints("index")?,
        }),
    };
    let mut tape = Tape::train(ctx, "char tagger");
    model.zero_grad(tape.rec()).map_err(fail)?;
    let logits = model.forward(&mut tape, &batch).map_err(fail)?;
    let loss = tape
        .cross_entropy(&logits, &batch.targets, Some(Batch::IGNORE))
        .map_err(fail)?;
    tape.backward(&loss).map_err(fail)?;
    tape.into_recorder().submit();
    let mut cmp = Compare::new(&io);
    cmp.check("logits", logits.tensor()).await?;
    cmp.check("loss", loss.tensor()).await?;
    for entry in model.entries() {
        for named in entry.names {
            let grad = Named {
                tensor: entry.param.grad.clone(),
                ..named.clone()
            };
            let got = grad.read_async().await.map_err(fail)?;
            cmp.values(&format!("grad.{}", named.name), &got)?;
        }
    }
    cmp.all_checked(&[])
}

async fn tagger_learns(ctx: &Context) -> Outcome {
    let model = BiLstmTagger::new(ctx, small_tagger(16, 16), 3).map_err(fail)?;
    let mut opt =
        Optimizer::new(ctx, OptimConfig::new(Method::ADAM, 1e-2), model.params()).map_err(fail)?;
    let mut rng = Lcg(7);
    let batches: Vec<Batch> = (0..4)
        .map(|_| tagging_batch(&mut rng, 16))
        .collect::<std::result::Result<_, _>>()?;
    let mut losses = vec![];
    for step in 0..60 {
        let (report, ()) = train::step_async(&model, ctx, &batches[step % batches.len()], &mut opt)
            .await
            .map_err(fail)?;
        losses.push(report.loss);
    }
    let first: f32 = losses[..4].iter().sum::<f32>() / 4.0;
    let last: f32 = losses[losses.len() - 4..].iter().sum::<f32>() / 4.0;
    ensure(last < 0.5 * first, || {
        format!("mean loss of the first 4 steps {first:.3}, of the last 4 {last:.3}")
    })?;
    Ok(format!("60 steps, loss {first:.3} -> {last:.3}"))
}

async fn decoding(ctx: &Context) -> Outcome {
    let cfg = Seq2SeqConfig::new(11, 9, 1, 2)
        .with_emb(5)
        .with_hidden(4)
        .with_layers(2)
        .with_bidirectional(true)
        .with_encoder(EncoderKind::Lstm)
        .with_link(Link::Luong {
            score: Score::General,
            input_feeding: true,
        });
    let model = Seq2Seq::new(ctx, cfg, 5).map_err(fail)?;
    // A few steps of training so the decoder's choices are not all alike.
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = (0..6u32)
        .map(|i| {
            let src: Vec<u32> = (0..3 + i % 3).map(|j| 3 + (i + j) % 8).collect();
            let tgt: Vec<u32> = src.iter().map(|&t| 3 + t % 6).collect();
            (src, tgt)
        })
        .collect();
    let refs: Vec<(&[u32], &[u32])> = pairs.iter().map(|(a, b)| (&a[..], &b[..])).collect();
    let batch = ParallelBatch::new(&refs, 0, 1, 2).map_err(fail)?;
    let mut opt =
        Optimizer::new(ctx, OptimConfig::new(Method::ADAM, 2e-2), model.params()).map_err(fail)?;
    for _ in 0..10 {
        train::step_async(&model, ctx, &batch, &mut opt)
            .await
            .map_err(fail)?;
    }
    let sources: Vec<&[u32]> = pairs.iter().map(|(s, _)| &s[..]).collect();
    let greedy = model.greedy_async(ctx, &sources, 6).await.map_err(fail)?;
    let one = model
        .beam_search_async(ctx, &sources, 1, 6, 0.0)
        .await
        .map_err(fail)?;
    for (s, (g, hyps)) in greedy.iter().zip(&one).enumerate() {
        ensure(hyps.first().map(|h| &h.tokens) == Some(g), || {
            format!("source {s}: greedy {g:?}, beam of 1 {hyps:?}")
        })?;
    }
    let three = model
        .beam_search_async(ctx, &sources, 3, 6, 0.0)
        .await
        .map_err(fail)?;
    for (s, (hyps, single)) in three.iter().zip(&one).enumerate() {
        ensure(!hyps.is_empty() && hyps.len() <= 3, || {
            format!("source {s}: {} hypotheses", hyps.len())
        })?;
        ensure(
            hyps.windows(2).all(|w| w[0].normalized >= w[1].normalized),
            || format!("source {s}: hypotheses not ranked: {hyps:?}"),
        )?;
        ensure(hyps.iter().flat_map(|h| &h.tokens).all(|&t| t < 9), || {
            format!("source {s}: a token past the vocabulary")
        })?;
        // The best of three is at least as likely as the greedy path.
        ensure(hyps[0].score >= single[0].score - 1e-4, || {
            format!(
                "source {s}: beam of 3 scores {}, greedy {}",
                hyps[0].score, single[0].score
            )
        })?;
    }
    Ok(format!(
        "greedy = beam of 1 on {} sources; beam of 3 ranked, at least as likely",
        sources.len()
    ))
}

async fn sampling(ctx: &Context) -> Outcome {
    let lm = LanguageModel::new(
        ctx,
        LanguageModelConfig::new(12)
            .with_emb(8)
            .with_hidden(16)
            .with_layers(2)
            .with_mode(Mode::Gru),
        4,
    )
    .map_err(fail)?;
    let a = lm
        .sample_async(ctx, &[1, 2, 3], 20, &Sampling::at(1.0), 9)
        .await
        .map_err(fail)?;
    let b = lm
        .sample_async(ctx, &[1, 2, 3], 20, &Sampling::at(1.0), 9)
        .await
        .map_err(fail)?;
    ensure(a.len() == 20 && a.iter().all(|&t| t < 12), || {
        format!("sampled {a:?}")
    })?;
    ensure(a == b, || format!("the same seed sampled {a:?} and {b:?}"))?;
    Ok(format!("20 tokens, repeatable: {a:?}"))
}

async fn checkpoint(ctx: &Context) -> Outcome {
    let cfg = LanguageModelConfig::new(10)
        .with_emb(4)
        .with_hidden(6)
        .with_layers(1)
        .with_mode(Mode::Lstm);
    let lm = LanguageModel::new(ctx, cfg, 1).map_err(fail)?;
    let ck = Checkpoint::capture_async(&lm.named_params(), None)
        .await
        .map_err(fail)?;
    let other = LanguageModel::new(ctx, cfg, 2).map_err(fail)?;
    ck.apply(&other.named_params(), "memory").map_err(fail)?;
    let back = Checkpoint::capture_async(&other.named_params(), None)
        .await
        .map_err(fail)?;
    ensure(back.tensors == ck.tensors, || {
        "applied values differ".into()
    })?;
    Ok(format!("{} tensors", ck.tensors.len()))
}

async fn bad_input(ctx: &Context) -> Outcome {
    let wrong_len = Tensor::from_slice(ctx, &[2, 3], &[1.0; 5]);
    ensure(matches!(wrong_len, Err(Error::DataLength { .. })), || {
        format!("5 values for [2, 3]: {wrong_len:?}")
    })?;
    let model = BiLstmTagger::new(ctx, small_tagger(8, 8), 1).map_err(fail)?;
    let mut opt =
        Optimizer::new(ctx, OptimConfig::new(Method::ADAM, 1e-2), model.params()).map_err(fail)?;
    let batch = Batch::pad(&[(&[3, 31, 4][..], &[0, 1, 2][..])], 0).map_err(fail)?;
    let past_vocab = train::step_async(&model, ctx, &batch, &mut opt).await;
    ensure(
        matches!(past_vocab, Err(Error::IndexOutOfRange { .. })),
        || format!("word id 31 of 30: {past_vocab:?}"),
    )?;
    ensure(opt.steps() == 0, || "the refused step was counted".into())?;
    Ok("DataLength, IndexOutOfRange".into())
}

async fn profiler(ctx: &Context) -> Outcome {
    let timestamps = ctx
        .features()
        .contains(rnn_wgpu::wgpu::Features::TIMESTAMP_QUERY);
    let model = BiLstmTagger::new(ctx, small_tagger(8, 8), 1).map_err(fail)?;
    let mut opt =
        Optimizer::new(ctx, OptimConfig::new(Method::ADAM, 1e-2), model.params()).map_err(fail)?;
    let batch = tagging_batch(&mut Lcg(3), 4)?;
    ctx.reset_profile();
    ctx.set_profiling(true);
    let step = train::step_async(&model, ctx, &batch, &mut opt).await;
    ctx.set_profiling(false);
    step.map_err(fail)?;
    // The timings land with the readback of the profiled submit; one more wait
    // lets its callback run.
    ctx.wait_async().await.map_err(fail)?;
    let profile = ctx.profile();
    if !timestamps {
        return Ok("no timestamp-query on this adapter: nothing timed".into());
    }
    ensure(
        profile
            .kernels
            .iter()
            .any(|r| r.name.starts_with("lstm_cell::")),
        || format!("no LSTM cell row in\n{profile}"),
    )?;
    Ok(format!(
        "{} kernels, {:.2} ms in all",
        profile.kernels.len(),
        profile.total_ms()
    ))
}

/// The custom_op example's kernel (examples/custom_op/gelu.wgsl).
const GELU_WGSL: &str = include_str!("../../../examples/custom_op/gelu.wgsl");

/// GELU as a tape op, the example's: the kernel's forward and backward.
#[derive(Clone)]
struct Gelu {
    kernel: Kernel,
    /// A wrong backward (half the gradient), which the gradcheck must catch.
    broken: bool,
}

impl CustomOp for Gelu {
    fn forward(&self, rec: &mut Recorder, x: &[&Tensor]) -> rnn_wgpu::Result<Vec<Tensor>> {
        let y = rec.empty(x[0].shape(), DType::F32)?;
        let run = self.kernel.launch("forward").bind("x", x[0]).bind("y", &y);
        run.cover([y.numel(), 1, 1]).record(rec)?;
        Ok(vec![y])
    }

    fn backward(&self, rec: &mut Recorder, s: &Saved, d: &[Tensor]) -> rnn_wgpu::Result<Gradients> {
        let (x, dx) = (&s.inputs()[0], rec.empty(d[0].shape(), DType::F32)?);
        let run = self
            .kernel
            .launch("backward")
            .bind("x", x)
            .bind("dy", &d[0]);
        run.bind("dx", &dx).cover([dx.numel(), 1, 1]).record(rec)?;
        if self.broken {
            return Ok(vec![Some(rnn_wgpu::ops::elementwise::scale(
                rec, &dx, 0.5,
            )?)]);
        }
        Ok(vec![Some(dx)])
    }
}

/// The example's GELU through the browser's WebGPU: its values against f64,
/// its gradients through the public gradcheck (which must fail a wrong
/// backward), its dispatches in the profile, and a WGSL error with its place.
async fn custom_kernel(ctx: &Context) -> Outcome {
    let kernel = Kernel::new("gelu", GELU_WGSL).map_err(fail)?;
    let values: Vec<f32> = (0..40).map(|i| (i as f32 - 20.0) * 0.4).collect();
    let x = Tensor::from_slice(ctx, &[5, 8], &values).map_err(fail)?;
    let op = Gelu {
        kernel: kernel.clone(),
        broken: false,
    };
    ctx.reset_profile();
    ctx.set_profiling(true);
    let mut tape = Tape::eval(ctx, "gelu");
    let y = tape.custom(&op, &[&Var::constant(x.clone())]);
    tape.into_recorder().submit();
    ctx.set_profiling(false);
    let y = y.map_err(fail)?.remove(0);
    let got = y.to_vec_async().await.map_err(fail)?;
    for (&v, &g) in values.iter().zip(&got) {
        let v = f64::from(v);
        let want = 0.5 * v * (1.0 + (0.797_884_560_802_865_4 * (v + 0.044_715 * v * v * v)).tanh());
        ensure(
            (f64::from(g) - want).abs() <= 1e-5 * want.abs().max(1.0),
            || format!("GELU({v}) = {g}, want {want}"),
        )?;
    }
    let f = |op: Gelu| {
        move |t: &mut Tape, v: &[Var]| -> rnn_wgpu::Result<Var> {
            Ok(t.custom(&op, &[&v[0]])?.remove(0))
        }
    };
    let report = GradCheck::new()
        .run_async(ctx, &[&x], f(op.clone()))
        .await
        .map_err(fail)?;
    ensure(report.passed(), || format!("{report}"))?;
    let wrong = Gelu {
        kernel,
        broken: true,
    };
    let caught = GradCheck::new()
        .run_async(ctx, &[&x], f(wrong))
        .await
        .map_err(fail)?;
    ensure(!caught.passed(), || {
        format!("a wrong backward passed: {caught}")
    })?;
    let timed = ctx
        .features()
        .contains(rnn_wgpu::wgpu::Features::TIMESTAMP_QUERY);
    ctx.wait_async().await.map_err(fail)?;
    let profile = ctx.profile();
    if timed {
        ensure(
            profile.kernels.iter().any(|r| r.name == "gelu::forward"),
            || format!("no gelu::forward row in\n{profile}"),
        )?;
    }
    // Parameters of one word: a uniform binding smaller than a 16-byte row.
    const COUNT: &str = "
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn fill(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < p.n) { y[id.x] = f32(id.x); }
}
";
    let count = Kernel::new("count", COUNT).map_err(fail)?;
    let y = Tensor::from_slice(ctx, &[5], &[9.0; 5]).map_err(fail)?;
    let mut rec = Recorder::new(ctx, "count");
    count
        .launch("fill")
        .params(&3u32)
        .bind("y", &y)
        .cover([5, 1, 1])
        .record(&mut rec)
        .map_err(fail)?;
    let got = rec.submit_read_async(&y).await.map_err(fail)?;
    ensure(got == [0.0, 1.0, 2.0, 9.0, 9.0], || {
        format!("a 4-byte uniform gave {got:?}")
    })?;
    match Kernel::new(
        "bad",
        "@compute @workgroup_size(1)\nfn main() { let v = 1 }\n",
    ) {
        Err(Error::Shader {
            line: 2, column, ..
        }) if column > 0 => {}
        other => return Err(format!("bad WGSL gave {other:?}")),
    }
    let worst = report.inputs[0];
    Ok(format!(
        "gradcheck passed (worst element {} at {:.1e} off), a wrong backward failed it{}",
        worst.index,
        (worst.got - worst.want).abs(),
        if timed { "; gelu::forward timed" } else { "" }
    ))
}

/// Broadcasting add, mul and div, and a masked softmax, against f64 references
/// and central differences of them.
async fn broadcasting(ctx: &Context) -> Outcome {
    let x: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 * 0.3 - 1.4).collect();
    let y: Vec<f32> = (0..4).map(|i| 0.6 + 0.25 * i as f32).collect();
    let xt = Tensor::from_slice(ctx, &[2, 3, 4], &x).map_err(fail)?;
    let yt = Tensor::from_slice(ctx, &[4], &y).map_err(fail)?;
    let inputs = [&xt, &yt];
    let mut worst: f64 = 0.0;
    for (name, f) in [
        ("add", (|a, b| a + b) as fn(f64, f64) -> f64),
        ("mul", |a, b| a * b),
        ("div", |a, b| a / b),
    ] {
        let report = GradCheck::against_reference()
            .run_with_reference_async(
                ctx,
                &inputs,
                |t: &mut Tape, v: &[Var]| match name {
                    "add" => t.add(&v[0], &v[1]),
                    "mul" => t.mul(&v[0], &v[1]),
                    _ => t.div(&v[0], &v[1]),
                },
                |v: &[Vec<f64>]| (0..24).map(|i| f(v[0][i], v[1][i % 4])).collect(),
            )
            .await
            .map_err(fail)?;
        ensure(report.passed(), || format!("{name}: {report}"))?;
        for w in report.inputs.iter().chain(&report.forward) {
            worst = worst.max((w.got - w.want).abs());
        }
    }
    let mask = Tensor::from_u32(ctx, &[2, 1, 4], &[1, 0, 1, 1, 0, 1, 1, 0]).map_err(fail)?;
    let keep = |i: usize| [1, 0, 1, 1, 0, 1, 1, 0][(i / 12) * 4 + i % 4] == 1;
    let report = GradCheck::against_reference()
        .run_with_reference_async(
            ctx,
            &inputs[..1],
            |t: &mut Tape, v: &[Var]| t.softmax_masked(&v[0], &mask),
            |v: &[Vec<f64>]| {
                let mut out = vec![0.0; 24];
                for r in 0..6 {
                    let ks: Vec<usize> = (4 * r..4 * r + 4).filter(|&i| keep(i)).collect();
                    let z: f64 = ks.iter().map(|&i| v[0][i].exp()).sum();
                    for &i in &ks {
                        out[i] = v[0][i].exp() / z;
                    }
                }
                out
            },
        )
        .await
        .map_err(fail)?;
    ensure(report.passed(), || format!("masked softmax: {report}"))?;
    Ok(format!(
        "[2, 3, 4] with [4]: add, mul, div and a [2, 1, 4] softmax mask, worst {worst:.1e}"
    ))
}

/// A tagger of 30 words and 5 tags with `emb` embeddings and `hidden` units.
fn small_tagger(emb: usize, hidden: usize) -> TaggerConfig {
    TaggerConfig::new(30, 5)
        .with_emb(emb)
        .with_hidden(hidden)
        .with_layers(1)
}
