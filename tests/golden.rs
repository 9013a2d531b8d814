//! PyTorch golden files: every case in tests/golden/ and in the directory named by
//! `RNN_WGPU_GOLDEN_DIR` (when set) is run on the GPU and every tensor it holds is
//! compared: recurrent layers (op lstm, gru, rnn_tanh, rnn_relu; LayerNorm-LSTMs
//! with layer_norm "1"), attention
//! (op attention), the transformer encoder layer (op transformer_encoder_layer)
//! the tape's tensor ops (op tape, the op in `fn`), minGRU / minLSTM (op
//! min_gru, min_lstm) and the linear-chain CRF (op crf).
//! tools/golden.py writes them; its docstring gives the format.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{ctx, state_of};
use rnn_wgpu::nn::recurrent::{Config, Mode, Recurrent};
use rnn_wgpu::nn::{
    Attention, Crf, HiddenState, MinGru, MinLstm, Module, Param, Score, TransformerEncoderLayer,
};
use rnn_wgpu::{Context, Recorder, Result, Tape, Tensor, Var};
use safetensors::{Dtype, SafeTensors};

/// f32 kernels against PyTorch's float64 results stored as f32: |got − want| may
/// be at most 1e-4 · max(|want|, 1), relative for values past 1, absolute below.
const TOL: f64 = 1e-4;

/// One golden file, loaded.
struct Case {
    name: String,
    meta: HashMap<String, String>,
    f32s: HashMap<String, (Vec<usize>, Vec<f32>)>,
    i32s: HashMap<String, Vec<i32>>,
}

impl Case {
    fn load(path: &Path) -> Case {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (_, header) =
            SafeTensors::read_metadata(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let meta = header.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (mut f32s, mut i32s) = (HashMap::new(), HashMap::new());
        for (key, view) in st.tensors() {
            let data = view.data();
            match view.dtype() {
                Dtype::F32 => {
                    let v = data
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    f32s.insert(key, (view.shape().to_vec(), v));
                }
                Dtype::I32 => {
                    let v = data
                        .chunks_exact(4)
                        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    i32s.insert(key, v);
                }
                other => panic!("{name}: tensor {key} has dtype {other:?}; cases hold f32 and i32"),
            }
        }
        Case {
            name,
            meta,
            f32s,
            i32s,
        }
    }

    fn meta(&self, key: &str) -> &str {
        self.meta
            .get(key)
            .unwrap_or_else(|| panic!("{}: metadata {key} missing", self.name))
    }

    fn usize(&self, key: &str) -> usize {
        self.meta(key)
            .parse()
            .unwrap_or_else(|e| panic!("{}: metadata {key}: {e}", self.name))
    }

    fn tensor(&self, key: &str) -> &(Vec<usize>, Vec<f32>) {
        self.f32s
            .get(key)
            .unwrap_or_else(|| panic!("{}: tensor {key} missing", self.name))
    }

    fn lengths(&self, key: &str) -> Vec<usize> {
        self.i32s[key].iter().map(|&n| n as usize).collect()
    }

    fn upload(&self, ctx: &Context, key: &str) -> Tensor {
        let (shape, v) = self.tensor(key);
        Tensor::from_slice(ctx, shape, v).unwrap()
    }
}

/// Writes the case's values into every named parameter.
fn load_params(case: &Case, named: &[rnn_wgpu::nn::Named]) {
    for p in named {
        p.write(&case.tensor(&p.name).1)
            .unwrap_or_else(|e| panic!("{}: {}: {e}", case.name, p.name));
    }
}

/// What was compared: the tensor names, and the worst error with where it was.
#[derive(Default)]
struct Checked {
    keys: Vec<String>,
    worst: (f64, String),
}

/// Compares `got` with the case's tensor `key`; returns a failure line, if any.
fn compare(case: &Case, key: &str, got: &[f32], checked: &mut Checked) -> Option<String> {
    checked.keys.push(key.to_string());
    let (_, want) = case.tensor(key);
    if got.len() != want.len() {
        return Some(format!(
            "{}: {key}: {} values, want {}",
            case.name,
            got.len(),
            want.len()
        ));
    }
    let (i, err) = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| ((g as f64 - w as f64).abs() / (w as f64).abs().max(1.0), g))
        .map(|(e, g)| if g.is_nan() { f64::INFINITY } else { e })
        .enumerate()
        .fold((0, 0.0), |acc, (i, e)| if e > acc.1 { (i, e) } else { acc });
    if err > checked.worst.0 {
        checked.worst = (err, format!("{}: {key}[{i}]", case.name));
    }
    (err > TOL).then(|| {
        format!(
            "{}: {key}[{i}] = {} but PyTorch says {} (error {err:.2e} > {TOL:e})",
            case.name, got[i], want[i]
        )
    })
}

/// Compares the gradient of each of `module`'s parameters with the case's
/// `grad.<name>`.
fn compare_grads(case: &Case, module: &dyn Module, checked: &mut Checked) -> Vec<String> {
    let mut failures = vec![];
    for e in module.entries() {
        let grad = e.param.grad.to_vec().unwrap();
        for n in &e.names {
            let part = &grad[n.offset..n.offset + n.numel()];
            failures.extend(compare(case, &format!("grad.{}", n.name), part, checked));
        }
    }
    failures
}

fn run_recurrent(ctx: &Context, case: &Case, mode: Mode, checked: &mut Checked) -> Vec<String> {
    let cfg = Config::new(case.usize("input_size"), case.usize("hidden_size"))
        .with_layers(case.usize("num_layers"))
        .with_bidirectional(case.meta("bidirectional") == "1");
    let mut model = match case.meta.get("proj_size") {
        Some(proj) => {
            assert_eq!(mode, Mode::Lstm, "{}: a projection is an LSTM's", case.name);
            Recurrent::new(ctx, Mode::Lstm, cfg, 0)
                .and_then(|r| r.with_projection(proj.parse().unwrap(), 0))
                .unwrap()
        }
        None => Recurrent::new(ctx, mode, cfg, 0).unwrap(),
    };
    if case.meta.get("layer_norm").is_some_and(|v| v == "1") {
        model = model.with_layer_norm().unwrap();
    }
    // Dropout between layers: a training forward with the case's mask seed, or
    // an evaluation forward that must ignore the dropout.
    let train = case.meta.get("train").is_some_and(|t| t == "1");
    if let Some(p) = case.meta.get("dropout") {
        let p: f32 = p.parse().unwrap();
        let seed: u32 = case.meta("dropout_seed").parse().unwrap();
        model = model.with_dropout(p, seed).unwrap();
    }
    // Zoneout: drawn from the case's seed in training, the expectation else;
    // recurrent dropout in training.
    if let Some(h) = case.meta.get("zoneout_h") {
        let c: f32 = case.meta("zoneout_c").parse().unwrap();
        let seed: u32 = case.meta("zoneout_seed").parse().unwrap();
        model = model.with_zoneout(h.parse().unwrap(), c, seed).unwrap();
    }
    if let Some(p) = case.meta.get("recurrent_dropout") {
        let seed: u32 = case.meta("recurrent_dropout_seed").parse().unwrap();
        model = model
            .with_recurrent_dropout(p.parse().unwrap(), seed)
            .unwrap();
    }
    load_params(case, &model.named_params());
    let lengths = case.lengths("lengths");
    let lstm = mode == Mode::Lstm;
    let x = case.upload(ctx, "x");
    let h0 = case.upload(ctx, "h0");
    let c0 = lstm.then(|| case.upload(ctx, "c0"));
    let dy = case.upload(ctx, "dy");
    let dh_n = case.upload(ctx, "dh_n");
    let dc_n = lstm.then(|| case.upload(ctx, "dc_n"));

    let mut rec = Recorder::new(ctx, "golden");
    let forward = if train {
        Recurrent::forward_train
    } else {
        Recurrent::forward
    };
    let (out, saved) = forward(&model, &mut rec, &x, &lengths, Some(&state_of(h0, c0)))
        .unwrap_or_else(|e| panic!("{}: forward: {e}", case.name));
    let grads = model
        .backward(&mut rec, &saved, &dy, Some(&state_of(dh_n, dc_n)))
        .unwrap_or_else(|e| panic!("{}: backward: {e}", case.name));
    rec.submit();

    checked.keys.clear();
    let mut failures = vec![];
    let mut check = |key: &str, t: &Tensor| {
        failures.extend(compare(case, key, &t.to_vec().unwrap(), checked));
    };
    check("y", &out.y);
    check("h_n", out.state.h());
    check("grad.x", &grads.dx);
    check("grad.h0", grads.state.h());
    if let (Some(c_n), Some(dc0)) = (out.state.c(), grads.state.c()) {
        check("c_n", c_n);
        check("grad.c0", dc0);
    }
    for g in model.named_grads() {
        failures.extend(compare(
            case,
            &format!("grad.{}", g.name),
            &g.read().unwrap(),
            checked,
        ));
    }
    // Inputs, parameters and upstream gradients were loaded; every other tensor
    // in the file must have been compared.
    let mut loaded: Vec<String> = model.named_params().into_iter().map(|p| p.name).collect();
    loaded.extend(["x", "h0", "c0", "dy", "dh_n", "dc_n"].map(String::from));
    failures.extend(unchecked(case, checked, &loaded));
    failures
}

fn run_min_rnn(ctx: &Context, case: &Case, checked: &mut Checked) -> Vec<String> {
    let sizes = Config::new(case.usize("input_size"), case.usize("hidden_size"))
        .with_layers(case.usize("num_layers"))
        .with_bidirectional(case.meta("bidirectional") == "1");
    let is_lstm = case.meta("op") == "min_lstm";
    let lstm = is_lstm.then(|| MinLstm::new(ctx, sizes, 0).unwrap());
    let gru = (!is_lstm).then(|| MinGru::new(ctx, sizes, 0).unwrap());
    let model: &dyn Module = match (&lstm, &gru) {
        (Some(m), _) => m,
        (_, Some(m)) => m,
        _ => unreachable!("one of the two is built"),
    };
    load_params(case, &model.named_params());
    let lengths = case.lengths("lengths");
    let px = Param::new(case.upload(ctx, "x")).unwrap();
    let ph = Param::new(case.upload(ctx, "h0")).unwrap();
    let mut tape = Tape::train(ctx, "golden");
    for p in model.params() {
        tape.rec().zero(&p.grad).unwrap();
    }
    let x = tape.param(&px);
    let state = HiddenState { h: tape.param(&ph) };
    let (y, h_n) = match (&lstm, &gru) {
        (Some(m), _) => m.apply(&mut tape, &x, &lengths, Some(&state)),
        (_, Some(m)) => m.apply(&mut tape, &x, &lengths, Some(&state)),
        _ => unreachable!("one of the two is built"),
    }
    .unwrap_or_else(|e| panic!("{}: forward: {e}", case.name));
    let flat_y = tape.reshape(&y, &[y.numel()]).unwrap();
    let flat_h = tape.reshape(&h_n.h, &[h_n.h.numel()]).unwrap();
    let both = tape.cat(&[&flat_y, &flat_h], 0).unwrap();
    let upstream = [case.tensor("dy").1.clone(), case.tensor("dh_n").1.clone()].concat();
    let upstream = Tensor::from_slice(ctx, both.shape(), &upstream).unwrap();
    tape.backward_with(&both, &upstream)
        .unwrap_or_else(|e| panic!("{}: backward: {e}", case.name));
    tape.into_recorder().submit();

    checked.keys.clear();
    let mut failures = vec![];
    let mut check = |key: &str, t: &Tensor| {
        failures.extend(compare(case, key, &t.to_vec().unwrap(), checked));
    };
    check("y", &y);
    check("h_n", &h_n.h);
    check("grad.x", &px.grad);
    check("grad.h0", &ph.grad);
    failures.extend(compare_grads(case, model, checked));
    let mut loaded: Vec<String> = model.named_params().into_iter().map(|p| p.name).collect();
    loaded.extend(["x", "h0", "dy", "dh_n"].map(String::from));
    failures.extend(unchecked(case, checked, &loaded));
    failures
}

/// A CRF case: the loss, every gradient, and the Viterbi paths exactly.
fn run_crf(ctx: &Context, case: &Case, checked: &mut Checked) -> Vec<String> {
    let forbidden: Vec<(usize, usize)> = case
        .meta("forbidden")
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (i, j) = p.split_once('>').unwrap();
            (i.parse().unwrap(), j.parse().unwrap())
        })
        .collect();
    let crf = Crf::new(ctx, case.usize("tags"), 0)
        .and_then(|c| c.with_forbidden(&forbidden))
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    load_params(case, &crf.named_params());
    let lengths = case.lengths("lengths");
    // -1 past each length; the op ignores those entries.
    let tags: Vec<u32> = case.i32s["tags"].iter().map(|&y| y as u32).collect();
    let pe = Param::new(case.upload(ctx, "emissions")).unwrap();
    let mut tape = Tape::train(ctx, "golden");
    crf.zero_grad(tape.rec()).unwrap();
    let emissions = tape.param(&pe);
    let loss = crf
        .nll(&mut tape, &emissions, &tags, &lengths)
        .unwrap_or_else(|e| panic!("{}: nll: {e}", case.name));
    tape.backward(&loss)
        .unwrap_or_else(|e| panic!("{}: backward: {e}", case.name));
    let paths = crf.decode(tape.rec(), &pe.value, &lengths).unwrap();
    tape.into_recorder().submit();

    checked.keys.clear();
    let mut failures = vec![];
    failures.extend(compare(case, "loss", &loss.to_vec().unwrap(), checked));
    failures.extend(compare(
        case,
        "grad.emissions",
        &pe.grad.to_vec().unwrap(),
        checked,
    ));
    failures.extend(compare_grads(case, &crf, checked));
    let want: Vec<u32> = case.i32s["path"].iter().map(|&y| y as u32).collect();
    if paths.to_vec_u32().unwrap() != want {
        failures.push(format!(
            "{}: the Viterbi paths differ from PyTorch's",
            case.name
        ));
    }
    let mut loaded: Vec<String> = crf.named_params().into_iter().map(|p| p.name).collect();
    loaded.push("emissions".into());
    failures.extend(unchecked(case, checked, &loaded));
    failures
}

fn run_attention(ctx: &Context, case: &Case, checked: &mut Checked) -> Vec<String> {
    let score = match case.meta("score") {
        "dot" => Score::Dot,
        "general" => Score::General,
        "additive" => Score::Additive {
            size: case.tensor("v").0[0],
        },
        other => return vec![format!("{}: score {other} is not implemented", case.name)],
    };
    let (q_shape, _) = case.tensor("q");
    let (k_shape, _) = case.tensor("k");
    let att = Attention::new(ctx, score, q_shape[2], k_shape[2], 1.0, 0).unwrap();
    load_params(case, &att.named_params());
    let lengths = case.lengths("src_lengths");
    let (q, k) = (case.upload(ctx, "q"), case.upload(ctx, "k"));
    let (dcontext, dweights) = (case.upload(ctx, "dcontext"), case.upload(ctx, "dweights"));
    let mut rec = Recorder::new(ctx, "golden");
    att.zero_grad(&mut rec).unwrap();
    let (out, saved) = att
        .forward(&mut rec, &q, &k, &lengths)
        .unwrap_or_else(|e| panic!("{}: forward: {e}", case.name));
    let grads = att
        .backward(&mut rec, &saved, &dcontext, Some(&dweights))
        .unwrap_or_else(|e| panic!("{}: backward: {e}", case.name));
    rec.submit();

    checked.keys.clear();
    let mut failures = vec![];
    let mut check = |key: &str, t: &Tensor| {
        failures.extend(compare(case, key, &t.to_vec().unwrap(), checked));
    };
    check("weights", &out.weights);
    check("context", &out.context);
    check("grad.q", &grads.dq);
    check("grad.k", &grads.dk);
    for (named, p) in att.named_params().iter().zip(att.params()) {
        check(&format!("grad.{}", named.name), &p.grad);
    }
    let loaded = ["q", "k", "W", "W_q", "W_k", "v", "dcontext", "dweights"].map(String::from);
    failures.extend(unchecked(case, checked, &loaded));
    failures
}

fn run_transformer(ctx: &Context, case: &Case, checked: &mut Checked) -> Vec<String> {
    let (x_shape, _) = case.tensor("x");
    let d = x_shape[2];
    let heads = case.usize("heads");
    let ff = case.tensor("linear1.weight").0[0];
    let layer = TransformerEncoderLayer::new(ctx, d, heads, ff, 0).unwrap();
    load_params(case, &layer.named_params());
    let lengths = case.lengths("src_lengths");
    let (x, dy) = (case.upload(ctx, "x"), case.upload(ctx, "dy"));
    let mut rec = Recorder::new(ctx, "golden");
    layer.zero_grad(&mut rec).unwrap();
    let (y, saved) = layer
        .forward(&mut rec, &x, &lengths)
        .unwrap_or_else(|e| panic!("{}: forward: {e}", case.name));
    let dx = layer
        .backward(&mut rec, &saved, &dy)
        .unwrap_or_else(|e| panic!("{}: backward: {e}", case.name));
    rec.submit();

    checked.keys.clear();
    let mut failures = vec![];
    let mut check = |key: &str, t: &Tensor| {
        failures.extend(compare(case, key, &t.to_vec().unwrap(), checked));
    };
    check("y", &y);
    check("grad.x", &dx);
    for (named, p) in layer.named_params().iter().zip(layer.params()) {
        check(&format!("grad.{}", named.name), &p.grad);
    }
    let mut loaded: Vec<String> = layer.named_params().into_iter().map(|p| p.name).collect();
    loaded.extend(["x", "dy"].map(String::from));
    failures.extend(unchecked(case, checked, &loaded));
    failures
}

/// A failure line for every f32 tensor of the case that was neither loaded nor
/// compared: a case's every output must be checked.
/// One tape op of a case's inputs `x`, as the case's `fn` names it.
fn tape_op(case: &Case, tape: &mut Tape, x: &[Var]) -> Result<Var> {
    let meta = |key: &str| case.usize(key);
    let lengths = || case.lengths("lengths");
    match case.meta("fn") {
        "mean" => tape.mean(&x[0], meta("dim"), Some(&lengths())),
        "sum" => tape.sum(&x[0], meta("dim"), None),
        "softmax" => tape.softmax(&x[0], Some(&lengths())),
        "log_softmax" => tape.log_softmax(&x[0], Some(&lengths())),
        "matmul" => tape.matmul(&x[0], &x[1]),
        "matmul_t" => tape.matmul_t(&x[0], &x[1]),
        "gather" => {
            let ids: Vec<u32> = case.i32s["ids"].iter().map(|&i| i as u32).collect();
            tape.gather(&x[0], &ids)
        }
        "slice" => tape.slice(&x[0], meta("dim"), meta("start"), meta("len")),
        "concat" => tape.concat(&x[0], &x[1], meta("dim")),
        "transpose" => tape.transpose(&x[0], meta("dim")),
        "mul" => tape.mul(&x[0], &x[1]),
        "add" => tape.add(&x[0], &x[1]),
        "scale" => tape.scale(&x[0], case.meta("alpha").parse().unwrap()),
        "tanh" => tape.tanh(&x[0]),
        "relu" => tape.relu(&x[0]),
        "cross_entropy" => {
            // PyTorch's ignore_index −100 is −1 in the file.
            let targets: Vec<u32> = case.i32s["targets"].iter().map(|&t| t as u32).collect();
            tape.cross_entropy(&x[0], &targets, Some(u32::MAX))
        }
        "cross_entropy_smoothed" | "cross_entropy_smoothed_c70" => {
            let targets: Vec<u32> = case.i32s["targets"].iter().map(|&t| t as u32).collect();
            let eps = case.meta("smoothing").parse().unwrap();
            tape.cross_entropy_smoothed(&x[0], &targets, Some(u32::MAX), eps)
        }
        "add_broadcast" => tape.add(&x[0], &x[1]),
        "sub_broadcast" => tape.sub(&x[0], &x[1]),
        "mul_broadcast" => tape.mul(&x[0], &x[1]),
        "div_broadcast" => tape.div(&x[0], &x[1]),
        "sigmoid" => tape.sigmoid(&x[0]),
        "exp" => tape.exp(&x[0]),
        "log" => tape.log(&x[0]),
        "permute" => tape.permute(&x[0], &list(case.meta("dims"))),
        "swap_dims" => tape.swap_dims(&x[0], meta("a"), meta("b")),
        "expand" => tape.expand(&x[0], &list(case.meta("shape"))),
        "masked_fill" => {
            let value = case.meta("value").parse().unwrap();
            tape.masked_fill(&x[0], &mask(case, tape), value)
        }
        "softmax_masked" => tape.softmax_masked(&x[0], &mask(case, tape)),
        "log_softmax_masked" => tape.log_softmax_masked(&x[0], &mask(case, tape)),
        "cross_entropy_masked" | "cross_entropy_masked_c70" => {
            let targets: Vec<u32> = case.i32s["targets"].iter().map(|&t| t as u32).collect();
            let opts = rnn_wgpu::tape::CrossEntropy::new()
                .with_ignore_index(u32::MAX)
                .with_class_mask(&mask(case, tape));
            Ok(tape.cross_entropy_with(&x[0], &targets, &opts)?.0)
        }
        other => panic!("{}: tape op {other} is not implemented", case.name),
    }
}

/// A comma list of sizes from the metadata ("2,0,3,1").
fn list(s: &str) -> Vec<usize> {
    s.split(',').map(|v| v.trim().parse().unwrap()).collect()
}

/// The case's i32 `mask` under its metadata `mask_shape`, as a u32 tensor.
fn mask(case: &Case, tape: &Tape) -> Tensor {
    let values: Vec<u32> = case.i32s["mask"].iter().map(|&m| m as u32).collect();
    Tensor::from_u32(tape.context(), &list(case.meta("mask_shape")), &values).unwrap()
}

fn run_tape(ctx: &Context, case: &Case, checked: &mut Checked) -> Vec<String> {
    let inputs: Vec<String> = ["x0", "x1"]
        .into_iter()
        .filter(|k| case.f32s.contains_key(*k))
        .map(String::from)
        .collect();
    let params: Vec<Param> = inputs
        .iter()
        .map(|k| Param::new(case.upload(ctx, k)).unwrap())
        .collect();
    let mut tape = Tape::train(ctx, "golden");
    let x: Vec<Var> = params.iter().map(|p| tape.param(p)).collect();
    let y = tape_op(case, &mut tape, &x).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    tape.backward_with(&y, &case.upload(ctx, "d"))
        .unwrap_or_else(|e| panic!("{}: backward: {e}", case.name));
    tape.into_recorder().submit();

    checked.keys.clear();
    let mut failures = vec![];
    failures.extend(compare(case, "y", &y.to_vec().unwrap(), checked));
    for (k, p) in inputs.iter().zip(&params) {
        failures.extend(compare(
            case,
            &format!("grad.{k}"),
            &p.grad.to_vec().unwrap(),
            checked,
        ));
    }
    let mut loaded = inputs;
    loaded.push("d".into());
    failures.extend(unchecked(case, checked, &loaded));
    failures
}

fn unchecked(case: &Case, checked: &Checked, loaded: &[String]) -> Vec<String> {
    case.f32s
        .keys()
        .filter(|k| !checked.keys.contains(k) && !loaded.contains(k))
        .map(|k| format!("{}: tensor {k} was not checked", case.name))
        .collect()
}

fn case_files() -> Vec<PathBuf> {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")];
    if let Some(extra) = std::env::var_os("RNN_WGPU_GOLDEN_DIR") {
        dirs.push(PathBuf::from(extra));
    }
    let mut files = vec![];
    for dir in dirs {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "safetensors") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_golden_case_matches_pytorch() {
    let files = case_files();
    assert!(!files.is_empty(), "no golden cases found");
    let mut failures = vec![];
    let mut checked = Checked::default();
    for path in &files {
        let case = Case::load(path);
        let op = case.meta("op").to_string();
        if op == "attention" {
            failures.extend(run_attention(ctx(), &case, &mut checked));
            continue;
        }
        if op == "transformer_encoder_layer" {
            failures.extend(run_transformer(ctx(), &case, &mut checked));
            continue;
        }
        if op == "tape" {
            failures.extend(run_tape(ctx(), &case, &mut checked));
            continue;
        }
        if op == "crf" {
            failures.extend(run_crf(ctx(), &case, &mut checked));
            continue;
        }
        if op == "min_gru" || op == "min_lstm" {
            failures.extend(run_min_rnn(ctx(), &case, &mut checked));
            continue;
        }
        // The recurrent layers on per-step, fused and persistent steps.
        match Mode::from_name(&op) {
            Some(mode) => {
                for ctx in [
                    common::gemm_contexts()[0],
                    common::fused(),
                    common::persistent(),
                ] {
                    failures.extend(run_recurrent(ctx, &case, mode, &mut checked));
                }
            }
            None => failures.push(format!("{}: unknown op {op}", case.name)),
        }
    }
    // Each failure names its case first.
    let cases: std::collections::BTreeSet<&str> = failures
        .iter()
        .filter_map(|f| f.split(':').next())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed ({} mismatches):\n{}",
        cases.len(),
        files.len(),
        failures.len(),
        failures.join("\n")
    );
    println!(
        "{} golden cases passed; worst error {:.2e} at {}",
        files.len(),
        checked.worst.0,
        checked.worst.1
    );
}
