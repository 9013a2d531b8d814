//! Recurrent layers on the GPU against the f64 reference: outputs, and every
//! gradient against central finite differences of the reference loss, for each
//! cell, stacked and bidirectional, with mixed lengths (1 and T included).

mod common;

use common::recurrent_ref::{self as reference, Inputs, Params, Spec, Upstream};
use common::{assert_close, ctx, state_of, to_f64, Rng};
use rnn_wgpu::nn::recurrent::{Config, Mode, Output, Recurrent, State};
use rnn_wgpu::nn::Module;
use rnn_wgpu::ops::cast;
use rnn_wgpu::{Context, DType, Error, Recorder, Tape, Tensor, Var};

/// Outputs: f32 kernels against the f64 reference over a few dozen steps.
const FWD_RTOL: f64 = 1e-4;
const FWD_ATOL: f64 = 1e-5;
/// Gradients: f32 accumulation over steps and units against f64 central
/// differences (whose own error is about 1e-8).
const GRAD_RTOL: f64 = 1e-3;
const GRAD_ATOL: f64 = 1e-4;
/// f16 storage rounds every stored activation and weight to 11 significant bits
/// (relative error up to 2⁻¹¹ ≈ 5e-4), and the roundings compound through the steps
/// and layers; wrong indexing or a missed conversion is off by far more.
const F16_RTOL: f64 = 1e-2;
const F16_ATOL: f64 = 5e-3;

fn config(spec: &Spec) -> Config {
    Config::new(spec.input, spec.hidden)
        .with_layers(spec.layers)
        .with_bidirectional(spec.dirs == 2)
}

fn mode_of(spec: &Spec) -> Mode {
    Mode::from_name(spec.mode).unwrap()
}

/// A stack of `spec`'s cell and sizes.
fn stack(ctx: &Context, spec: &Spec, seed: u64) -> Recurrent {
    Recurrent::new(ctx, mode_of(spec), config(spec), seed).unwrap()
}

fn reference_params(model: &Recurrent) -> Params {
    model
        .named_params()
        .iter()
        .map(|n| (n.name.clone(), to_f64(&n.read().unwrap())))
        .collect()
}

fn random_case(
    spec: &Spec,
    batch: usize,
    steps: usize,
    lengths: &[usize],
    seed: u64,
) -> (Inputs, Upstream) {
    let mut rng = Rng::new(seed);
    // h is S wide (P with a projection), c H wide.
    let rows = spec.layers * spec.dirs * batch;
    let (states, cells) = (rows * spec.state(), rows * spec.hidden);
    let mut v = |n: usize| to_f64(&rng.vec(n));
    let inputs = Inputs {
        batch,
        steps,
        lengths: lengths.to_vec(),
        x: v(batch * steps * spec.input),
        h0: v(states),
        c0: if spec.lstm() { v(cells) } else { vec![] },
        between: vec![],
        zoneout: None,
        recurrent: vec![],
    };
    let up = Upstream {
        dy: v(batch * steps * spec.dirs * spec.state()),
        dh_n: v(states),
        dc_n: if spec.lstm() { v(cells) } else { vec![] },
    };
    (inputs, up)
}

fn upload(ctx: &Context, shape: &[usize], v: &[f64]) -> Tensor {
    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_slice(ctx, shape, &v).unwrap()
}

/// Asserts that the GPU outputs match the reference's.
fn assert_outputs(what: &str, out: &Output, want: &reference::Outputs) {
    assert_outputs_within(what, out, want, FWD_RTOL, FWD_ATOL);
}

fn assert_outputs_within(
    what: &str,
    out: &Output,
    want: &reference::Outputs,
    rtol: f64,
    atol: f64,
) {
    let close = |name: &str, t: &Tensor, want: &[f64]| {
        let got = t.to_vec().unwrap();
        assert_close(&format!("{what}: {name}"), &got, want, rtol, atol)
    };
    close("y", &out.y, &want.y);
    close("h_n", out.state.h(), &want.h_n);
    if let Some(c_n) = out.state.c() {
        close("c_n", c_n, &want.c_n);
    }
}

/// Runs forward and backward on the GPU and checks outputs and gradients.
fn check(ctx: &Context, spec: Spec, batch: usize, steps: usize, lengths: &[usize], seed: u64) {
    check_stored(ctx, spec, batch, steps, lengths, seed, DType::F32);
}

/// [`check`] with activations stored as `storage`; under f16 the input is f16 too
/// and the tolerances are f16's.
fn check_stored(
    ctx: &Context,
    spec: Spec,
    batch: usize,
    steps: usize,
    lengths: &[usize],
    seed: u64,
    storage: DType,
) {
    let what = format!("{spec:?} B={batch} T={steps} lengths={lengths:?} {storage:?}");
    let model = stack(ctx, &spec, seed).with_storage(storage).unwrap();
    let (inp, up) = random_case(&spec, batch, steps, lengths, seed + 1);
    let x = upload(ctx, &[batch, steps, spec.input], &inp.x);
    let mut rec = Recorder::new(ctx, "input");
    let x = cast::to(&mut rec, &x, storage).unwrap();
    rec.submit();
    let tol = if storage == DType::F16 {
        [F16_RTOL, F16_ATOL, F16_RTOL, F16_ATOL]
    } else {
        [FWD_RTOL, FWD_ATOL, GRAD_RTOL, GRAD_ATOL]
    };
    verify(ctx, &model, &spec, &inp, &up, &x, false, &what, tol);
}

/// Runs `model`'s forward (its training forward when `train`) and backward on
/// the case on the GPU, `x` given (in the model's storage), and checks the
/// outputs against the f64 reference and every gradient (x, h0, c0 and each
/// parameter's) against its finite differences, within `[forward rtol, atol,
/// gradient rtol, atol]`.
#[allow(clippy::too_many_arguments)]
fn verify(
    ctx: &Context,
    model: &Recurrent,
    spec: &Spec,
    inp: &Inputs,
    up: &Upstream,
    x: &Tensor,
    train: bool,
    what: &str,
    [frtol, fatol, grtol, gatol]: [f64; 4],
) {
    let (batch, steps) = (inp.batch, inp.steps);
    let rows = spec.layers * spec.dirs;
    let (states, cells) = ([rows, batch, spec.state()], [rows, batch, spec.hidden]);
    let h0 = upload(ctx, &states, &inp.h0);
    let c0 = spec.lstm().then(|| upload(ctx, &cells, &inp.c0));
    let dy = upload(ctx, &[batch, steps, spec.dirs * spec.state()], &up.dy);
    let dh_n = upload(ctx, &states, &up.dh_n);
    let dc_n = spec.lstm().then(|| upload(ctx, &cells, &up.dc_n));
    let forward = if train {
        Recurrent::forward_train
    } else {
        Recurrent::forward
    };
    let mut rec = Recorder::new(ctx, "test");
    let initial = state_of(h0, c0);
    let (out, saved) = forward(model, &mut rec, x, &inp.lengths, Some(&initial)).unwrap();
    let grads = model
        .backward(&mut rec, &saved, &dy, Some(&state_of(dh_n, dc_n)))
        .unwrap();
    rec.submit();

    let params = reference_params(model);
    let want = reference::forward(spec, &params, inp);
    assert_outputs_within(what, &out, &want, frtol, fatol);

    let fd = reference::gradients(spec, &params, inp, up);
    let grad = |name: &str, got: &[f32], want: &[f64]| {
        assert_close(&format!("{what}: grad {name}"), got, want, grtol, gatol)
    };
    grad("x", &grads.dx.to_vec().unwrap(), &fd.x);
    grad("h0", &grads.state.h().to_vec().unwrap(), &fd.h0);
    if let Some(dc0) = grads.state.c() {
        grad("c0", &dc0.to_vec().unwrap(), &fd.c0);
    }
    for n in model.named_grads() {
        grad(&n.name, &n.read().unwrap(), &fd.params[&n.name]);
    }
}

fn spec(mode: &'static str, input: usize, hidden: usize, layers: usize, dirs: usize) -> Spec {
    Spec {
        mode,
        input,
        hidden,
        layers,
        dirs,
        proj: 0,
    }
}

const MODES: [&str; 4] = ["lstm", "gru", "rnn_tanh", "rnn_relu"];

#[test]
fn one_layer_one_direction_matches_reference_and_finite_differences() {
    for (k, mode) in MODES.into_iter().enumerate() {
        let spec = spec(mode, 3, 5, 1, 1);
        check(ctx(), spec, 3, 6, &[6, 1, 4], 10 + k as u64);
    }
}

#[test]
fn bidirectional_matches_reference_and_finite_differences() {
    for (k, mode) in MODES.into_iter().enumerate() {
        check(
            ctx(),
            spec(mode, 4, 3, 1, 2),
            4,
            5,
            &[2, 5, 1, 3],
            20 + k as u64,
        );
        // H a multiple of 4: whole texels where the cell packs the next states.
        check(ctx(), spec(mode, 3, 4, 1, 2), 2, 4, &[4, 2], 25 + k as u64);
    }
}

#[test]
fn stacked_bidirectional_matches_reference_and_finite_differences() {
    for (k, mode) in MODES.into_iter().enumerate() {
        let spec = spec(mode, 2, 3, 2, 2);
        check(ctx(), spec, 2, 4, &[4, 1], 30 + k as u64);
    }
}

#[test]
fn stacked_one_direction_and_single_steps_match() {
    for (k, mode) in MODES.into_iter().enumerate() {
        check(ctx(), spec(mode, 3, 4, 2, 1), 2, 3, &[3, 2], 40 + k as u64);
        // T = 1: one cell forward and backward.
        check(ctx(), spec(mode, 2, 3, 1, 2), 1, 1, &[1], 50 + k as u64);
    }
}

#[test]
fn wide_hidden_spans_several_workgroups_on_every_gemm_path() {
    // H = 65 puts units past the first workgroup of 64 (and a partial texel where
    // the cell packs the next states); the packed-texture and buffer GEMMs both
    // run the recurrence.
    for (k, ctx) in common::gemm_contexts().into_iter().enumerate() {
        for hidden in [65, 64] {
            let spec = spec("lstm", 2, hidden, 1, 2);
            check_forward_only(ctx, spec, 2, 3, &[3, 1], 60 + k as u64);
        }
    }
}

/// Every cell on every GEMM path, stacked and bidirectional with mixed lengths: on
/// the packed path each cell writes the next step's states into the texture the
/// recurrent GEMM reads (H = 6 ends in a partial texel, H = 8 in whole ones),
/// carried states included.
#[test]
fn every_cell_on_every_gemm_path() {
    for (k, ctx) in common::gemm_contexts().into_iter().enumerate() {
        for (i, mode) in MODES.into_iter().enumerate() {
            for hidden in [6, 8] {
                let seed = 200 + 20 * k as u64 + 4 * i as u64 + hidden as u64;
                check(ctx, spec(mode, 3, hidden, 2, 2), 3, 4, &[4, 1, 3], seed);
            }
        }
    }
}

/// Dropout between stacked layers: a training forward drops each layer's output
/// but the last with the mask its seed gives (`shaders/dropout.wgsl`'s hash,
/// ported in `common::dropout_multipliers`), and the backward uses the same
/// masks: outputs and every gradient against the f64 reference with those masks
/// and its finite differences, on the adapter's steps, fused and persistent ones; an
/// evaluation forward and an eval tape ignore the dropout; a bad probability is
/// refused.
#[test]
fn dropout_between_layers_uses_one_mask_forward_and_backward() {
    let (p, seed) = (0.25f32, 5u32);
    for ctx in [
        common::gemm_contexts()[0],
        common::fused(),
        common::persistent(),
    ] {
        for (i, mode) in ["lstm", "gru"].into_iter().enumerate() {
            let spec = spec(mode, 3, 5, 3, 2);
            let (batch, steps, lengths) = (3, 4, [4, 1, 3]);
            let what = format!("{spec:?} dropout {p}");
            let model = stack(ctx, &spec, 300 + i as u64)
                .with_dropout(p, seed)
                .unwrap();
            let (mut inp, up) = random_case(&spec, batch, steps, &lengths, 301 + i as u64);
            let y_len = batch * steps * spec.dirs * spec.hidden;
            // The first forward's calls 0 and 1 drop after layers 0 and 1.
            inp.between = (0..2)
                .map(|k| {
                    let call = seed.wrapping_mul(0x9E37_79B9).wrapping_add(k);
                    common::dropout_multipliers(y_len, p, call)
                })
                .collect();
            let x = upload(ctx, &[batch, steps, spec.input], &inp.x);
            let tol = [FWD_RTOL, FWD_ATOL, GRAD_RTOL, GRAD_ATOL];
            verify(ctx, &model, &spec, &inp, &up, &x, true, &what, tol);
            let params = reference_params(&model);
            let state = [spec.layers * spec.dirs, batch, spec.hidden];
            let h0 = upload(ctx, &state, &inp.h0);
            let c0 = spec.lstm().then(|| upload(ctx, &state, &inp.c0));
            // Evaluation: no dropout, on a recorder and on an eval tape.
            inp.between.clear();
            let want = reference::forward(&spec, &params, &inp);
            let mut rec = Recorder::new(ctx, "eval");
            let initial = state_of(h0.clone(), c0.clone());
            let (out, _) = model
                .forward(&mut rec, &x, &lengths, Some(&initial))
                .unwrap();
            rec.submit();
            assert_outputs(&format!("{what}, eval"), &out, &want);
            let mut tape = Tape::eval(ctx, "eval tape");
            let (xv, h0v) = (Var::constant(x.clone()), Var::constant(h0.clone()));
            let c0v = c0.clone().map(Var::constant);
            let seq = model
                .apply(&mut tape, &xv, &lengths, Some(&state_of(h0v, c0v)))
                .unwrap();
            tape.into_recorder().submit();
            let got = seq.y.to_vec().unwrap();
            assert_close(
                &format!("{what}, eval tape"),
                &got,
                &want.y,
                FWD_RTOL,
                FWD_ATOL,
            );
        }
    }
    let model = stack(common::ctx(), &spec("gru", 2, 3, 2, 1), 1);
    for bad in [1.0, -0.1, f32::NAN] {
        assert!(matches!(
            model.clone().with_dropout(bad, 0),
            Err(Error::InvalidArgument { .. })
        ));
    }
}

/// Zoneout on every cell (h, and the LSTM's c): a training forward zones out
/// the units its seed draws (`shaders/recurrence.wgsl`'s hash, ported in the
/// reference) and its backward draws the same; an evaluation forward takes the
/// expectation, and its backward is that function's. Outputs and every gradient
/// against the f64 reference with those choices and its finite differences,
/// stacked and bidirectional with mixed lengths, on the scalar (H 5) and vec4 (H
/// 8) kernels, on the adapter's steps, fused and persistent ones. The next training forward
/// draws anew; bad probabilities and a projection are refused.
#[test]
fn zoneout_matches_the_reference_in_training_and_evaluation() {
    let seed = 11u32;
    let tol = [FWD_RTOL, FWD_ATOL, GRAD_RTOL, GRAD_ATOL];
    for ctx in [
        common::gemm_contexts()[0],
        common::fused(),
        common::persistent(),
    ] {
        for (i, mode) in MODES.into_iter().enumerate() {
            for hidden in [5, 8] {
                let spec = spec(mode, 3, hidden, 2, 2);
                let c = if spec.lstm() { 0.2 } else { 0.0 };
                let case = 900 + 10 * i as u64 + hidden as u64;
                let model = stack(ctx, &spec, case).with_zoneout(0.3, c, seed).unwrap();
                let (batch, steps, lengths) = (3, 4, [4, 1, 3]);
                let (mut inp, up) = random_case(&spec, batch, steps, &lengths, case + 1);
                let x = upload(ctx, &[batch, steps, spec.input], &inp.x);
                // The first training forward: layer l draws from seed·0x9E3779B9
                // xor l·0x85EBCA6B.
                let seeds = (0..spec.layers as u32)
                    .map(|l| seed.wrapping_mul(0x9E37_79B9) ^ l.wrapping_mul(0x85EB_CA6B))
                    .collect();
                let zoneout = |seeds| reference::Zoneout { h: 0.3, c, seeds };
                inp.zoneout = Some(zoneout(seeds));
                let what = format!("{spec:?} zoneout, training");
                verify(ctx, &model, &spec, &inp, &up, &x, true, &what, tol);
                inp.zoneout = Some(zoneout(vec![]));
                let mut rec = Recorder::new(ctx, "zero");
                model.zero_grad(&mut rec).unwrap();
                rec.submit();
                let what = format!("{spec:?} zoneout, evaluation");
                verify(ctx, &model, &spec, &inp, &up, &x, false, &what, tol);
                // The second training forward differs from the first.
                let ys: Vec<Vec<f32>> = (0..2)
                    .map(|_| {
                        let mut rec = Recorder::new(ctx, "again");
                        let (out, _) = model.forward_train(&mut rec, &x, &lengths, None).unwrap();
                        rec.submit_read(&out.y).unwrap()
                    })
                    .collect();
                assert_ne!(ys[0], ys[1], "{spec:?}: two training forwards");
            }
        }
    }
    let gru = stack(common::ctx(), &spec("gru", 2, 3, 2, 1), 1);
    let lstm = stack(common::ctx(), &spec("lstm", 2, 3, 2, 1), 1);
    for (model, h, c) in [
        (&gru, 1.0, 0.0),
        (&gru, -0.1, 0.0),
        (&gru, f32::NAN, 0.0),
        (&gru, 0.1, 0.1),
        (&lstm, 0.1, 1.0),
        (&lstm, 0.1, f32::INFINITY),
    ] {
        assert!(
            matches!(
                model.clone().with_zoneout(h, c, 0),
                Err(Error::InvalidArgument { .. })
            ),
            "zoneout ({h}, {c}) on {:?}",
            model.mode()
        );
    }
    let projected = Recurrent::new(common::ctx(), Mode::Lstm, *lstm.config(), 1)
        .and_then(|r| r.with_projection(2, 1))
        .unwrap();
    assert!(matches!(
        projected.with_zoneout(0.1, 0.1, 0),
        Err(Error::InvalidArgument { .. })
    ));
}

/// Recurrent dropout on every cell: a training forward multiplies the states
/// its recurrent products read by one mask per layer, sequence, unit and
/// direction (`shaders/dropout.wgsl`'s hash of (d·B + b)·H + j, ported in
/// `common::dropout_multipliers`), the backward the same: outputs and every
/// gradient against the f64 reference with those masks and its finite
/// differences, stacked and bidirectional with mixed lengths, on the scalar and
/// vec4 kernels, on every GEMM path, fused and persistent; with zoneout as well on the
/// LSTM. An evaluation forward has no masks; bad probabilities and a projection
/// are refused.
#[test]
fn recurrent_dropout_masks_the_recurrent_input_forward_and_backward() {
    let (p, seed) = (0.3f32, 21u32);
    let tol = [FWD_RTOL, FWD_ATOL, GRAD_RTOL, GRAD_ATOL];
    let mut contexts = common::gemm_contexts().to_vec();
    contexts.extend([common::fused(), common::persistent()]);
    for ctx in contexts {
        for (i, mode) in MODES.into_iter().enumerate() {
            for hidden in [5, 8] {
                let spec = spec(mode, 3, hidden, 2, 2);
                let case = 1000 + 10 * i as u64 + hidden as u64;
                let mut model = stack(ctx, &spec, case)
                    .with_recurrent_dropout(p, seed)
                    .unwrap();
                let (batch, steps, lengths) = (3, 4, [4, 1, 3]);
                let (mut inp, up) = random_case(&spec, batch, steps, &lengths, case + 1);
                // The first training forward: layer l draws from seed·0x9E3779B9
                // xor l·0x85EBCA6B, the masks of [D, B, H].
                let layer_seed = |seed: u32, l: u32| {
                    seed.wrapping_mul(0x9E37_79B9) ^ l.wrapping_mul(0x85EB_CA6B)
                };
                inp.recurrent = (0..spec.layers as u32)
                    .map(|l| {
                        common::dropout_multipliers(2 * batch * hidden, p, layer_seed(seed, l))
                    })
                    .collect();
                if spec.lstm() {
                    model = model.with_zoneout(0.2, 0.1, 7).unwrap();
                    let seeds = (0..spec.layers as u32).map(|l| layer_seed(7, l)).collect();
                    inp.zoneout = Some(reference::Zoneout {
                        h: 0.2,
                        c: 0.1,
                        seeds,
                    });
                }
                let x = upload(ctx, &[batch, steps, spec.input], &inp.x);
                let what = format!("{spec:?} recurrent dropout, training");
                verify(ctx, &model, &spec, &inp, &up, &x, true, &what, tol);
                // Evaluation: no masks (and zoneout's expectation).
                inp.recurrent.clear();
                if let Some(z) = &mut inp.zoneout {
                    z.seeds.clear();
                }
                let mut rec = Recorder::new(ctx, "zero");
                model.zero_grad(&mut rec).unwrap();
                rec.submit();
                let what = format!("{spec:?} recurrent dropout, evaluation");
                verify(ctx, &model, &spec, &inp, &up, &x, false, &what, tol);
            }
        }
    }
    let gru = stack(common::ctx(), &spec("gru", 2, 3, 2, 1), 1);
    for bad in [1.0, -0.1, f32::NAN] {
        assert!(matches!(
            gru.clone().with_recurrent_dropout(bad, 0),
            Err(Error::InvalidArgument { .. })
        ));
    }
    let lstm = config(&spec("lstm", 2, 3, 2, 1));
    let projected = Recurrent::new(common::ctx(), Mode::Lstm, lstm, 1)
        .and_then(|r| r.with_projection(2, 1))
        .unwrap();
    assert!(matches!(
        projected.with_recurrent_dropout(0.1, 0),
        Err(Error::InvalidArgument { .. })
    ));
}

/// LayerNorm-LSTM (haste's formulation): outputs, h_n and c_n against the f64
/// reference and every gradient (the normalizations' scales and shift included,
/// set to random values) against its finite differences: one layer and stacked
/// bidirectional with mixed lengths, 4H past one workgroup's lanes (H 17) and H
/// past them too (H 65), on every GEMM path; the vec4 kernels (H a multiple of
/// 4: 8, 12, and 68, whose 4H passes the lanes in vec4s); with zoneout on h and
/// c in training (the recurrent cells' choices) and evaluation (the
/// expectation); bad combinations are refused.
#[test]
fn layer_norm_lstm_matches_the_reference_and_finite_differences() {
    let cases = [
        (3, 5, 1, 1, vec![4, 2]),
        (4, 6, 2, 2, vec![4, 1, 3]),
        (3, 17, 1, 2, vec![3, 2]),
        (2, 65, 1, 1, vec![2]),
        (3, 8, 1, 1, vec![4, 2]),
        (4, 12, 2, 2, vec![4, 1, 3]),
        (2, 68, 1, 1, vec![2]),
    ];
    for (k, ctx) in common::gemm_contexts().into_iter().enumerate() {
        for (n, (input, hidden, layers, dirs, lengths)) in cases.iter().cloned().enumerate() {
            let spec = spec("lstm", input, hidden, layers, dirs);
            let seed = 1100 + 10 * k as u64 + n as u64;
            let model = stack(ctx, &spec, seed).with_layer_norm().unwrap();
            assert!(model.layer_norm());
            let mut rng = Rng::new(seed);
            for p in model.named_params() {
                if p.name.starts_with("layer_norm") {
                    let v: Vec<f32> = rng.vec(p.numel()).iter().map(|v| 1.0 + v).collect();
                    p.write(&v).unwrap();
                }
            }
            let (batch, steps) = (lengths.len(), *lengths.iter().max().unwrap());
            let (inp, up) = random_case(&spec, batch, steps, &lengths, seed + 1);
            let x = upload(ctx, &[batch, steps, input], &inp.x);
            let what = format!("{spec:?} layer norm, context {k}");
            let tol = [FWD_RTOL, FWD_ATOL, GRAD_RTOL, GRAD_ATOL];
            verify(ctx, &model, &spec, &inp, &up, &x, false, &what, tol);
            // The same weights with zoneout: the first training forward's layer
            // l draws from seed·0x9E3779B9 xor l·0x85EBCA6B, as the other cells'.
            let zone_seed = 23u32;
            let zoned = model.clone().with_zoneout(0.3, 0.2, zone_seed).unwrap();
            let seeds = (0..layers as u32)
                .map(|l| zone_seed.wrapping_mul(0x9E37_79B9) ^ l.wrapping_mul(0x85EB_CA6B))
                .collect();
            for (train, seeds) in [(true, seeds), (false, vec![])] {
                let mut rec = Recorder::new(ctx, "zero");
                zoned.zero_grad(&mut rec).unwrap();
                rec.submit();
                let mut inp = inp.clone();
                inp.zoneout = Some(reference::Zoneout {
                    h: 0.3,
                    c: 0.2,
                    seeds,
                });
                let what = format!("{what}, zoneout, training {train}");
                verify(ctx, &zoned, &spec, &inp, &up, &x, train, &what, tol);
            }
        }
    }
    let ctx = ctx();
    let lstm = stack(ctx, &spec("lstm", 3, 4, 1, 1), 1);
    let gru = stack(ctx, &spec("gru", 3, 4, 1, 1), 1);
    let projected = Recurrent::new(ctx, Mode::Lstm, *lstm.config(), 1)
        .and_then(|r| r.with_projection(2, 1))
        .unwrap();
    let dropped = lstm.clone().with_recurrent_dropout(0.1, 1).unwrap();
    for (what, model) in [
        ("gru", gru),
        ("projected", projected),
        ("recurrent dropout", dropped),
    ] {
        assert!(
            matches!(model.with_layer_norm(), Err(Error::InvalidArgument { .. })),
            "{what}"
        );
    }
    let ln = lstm.with_layer_norm().unwrap();
    assert!(ln.clone().with_recurrent_dropout(0.1, 1).is_err());
    assert!(ln.with_storage(DType::F16).is_err());
}

/// An LSTM with an output projection (proj_size): outputs, h_n and c_n against
/// the f64 reference, and every gradient (weight_hr's included) against its
/// finite differences, one layer and stacked bidirectional with mixed lengths,
/// on each GEMM path (the fused context runs it unfused); a bad size and f16
/// storage are refused.
#[test]
fn projected_lstm_matches_the_reference_and_finite_differences() {
    let mut contexts = common::gemm_contexts().to_vec();
    contexts.push(common::fused());
    for (k, ctx) in contexts.into_iter().enumerate() {
        for (input, hidden, proj, layers, dirs, lengths) in
            [(3, 5, 2, 1, 1, vec![4, 2]), (4, 6, 3, 2, 2, vec![4, 1, 3])]
        {
            let spec = Spec {
                proj,
                ..spec("lstm", input, hidden, layers, dirs)
            };
            let (batch, steps) = (lengths.len(), 4);
            let what = format!("{spec:?} context {k}");
            let model = Recurrent::new(ctx, Mode::Lstm, config(&spec), 400 + k as u64)
                .and_then(|r| r.with_projection(proj, 400 + k as u64))
                .unwrap();
            assert_eq!(model.proj_size(), Some(proj));
            let (inp, up) = random_case(&spec, batch, steps, &lengths, 401 + k as u64);
            let x = upload(ctx, &[batch, steps, input], &inp.x);
            let params = reference_params(&model);
            assert!(params.contains_key("weight_hr_l0"), "{what}");
            let tol = [FWD_RTOL, FWD_ATOL, GRAD_RTOL, GRAD_ATOL];
            verify(ctx, &model, &spec, &inp, &up, &x, false, &what, tol);
        }
    }
    let ctx = ctx();
    let cfg = config(&spec("lstm", 3, 4, 1, 1));
    for proj in [0, 4, 5] {
        assert!(matches!(
            Recurrent::new(ctx, Mode::Lstm, cfg, 1).and_then(|r| r.with_projection(proj, 1)),
            Err(Error::InvalidArgument { .. })
        ));
    }
    // Only a plain LSTM is projected; its dropout between layers stays.
    let refused = [
        Recurrent::new(ctx, Mode::Gru, cfg, 1).and_then(|r| r.with_projection(2, 1)),
        Recurrent::new(ctx, Mode::Lstm, cfg, 1)
            .and_then(|r| r.with_zoneout(0.1, 0.0, 1))
            .and_then(|r| r.with_projection(2, 1)),
        Recurrent::new(ctx, Mode::Lstm, cfg, 1)
            .and_then(|r| r.with_layer_norm())
            .and_then(|r| r.with_projection(2, 1)),
    ];
    for r in refused {
        assert!(
            matches!(
                r,
                Err(Error::InvalidArgument {
                    what: "proj_size",
                    ..
                })
            ),
            "{r:?}"
        );
    }
    let deep = config(&spec("lstm", 3, 4, 2, 1));
    let kept = Recurrent::new(ctx, Mode::Lstm, deep, 1)
        .and_then(|r| r.with_dropout(0.25, 3))
        .and_then(|r| r.with_projection(2, 1))
        .unwrap();
    assert_eq!(kept.dropout(), Some(0.25));
    let model = Recurrent::new(ctx, Mode::Lstm, cfg, 1)
        .and_then(|r| r.with_projection(2, 1))
        .unwrap();
    assert!(model.clone().with_storage(DType::F16).is_err());
}

/// Steps of [`pass_dispatches`]' sequences.
const PASS_STEPS: usize = 5;

/// Dispatches recorded by a forward and by a backward of a bidirectional layer
/// of 8 units over 2 sequences of [`PASS_STEPS`] steps.
fn pass_dispatches(ctx: &Context, mode: Mode) -> (usize, usize) {
    let cfg = Config::new(4, 8).with_layers(1).with_bidirectional(true);
    let (b, t) = (2, PASS_STEPS);
    let model = Recurrent::new(ctx, mode, cfg, 1).unwrap();
    let x = Tensor::zeros(ctx, &[b, t, 4]).unwrap();
    let dy = Tensor::zeros(ctx, &[b, t, 16]).unwrap();
    let mut rec = Recorder::new(ctx, "count");
    let (_, saved) = model.forward(&mut rec, &x, &[t; 2], None).unwrap();
    let forward = rec.dispatches();
    model.backward_params(&mut rec, &saved, &dy, None).unwrap();
    let backward = rec.dispatches() - forward;
    rec.submit();
    (forward, backward)
}

/// The fused steps (the recurrent product inside the cell's dispatch, forward
/// and backward) on every cell, stacked and bidirectional with mixed lengths,
/// against the reference and finite differences: H = 6 on the scalar kernels,
/// H = 8 on the vec4 ones, H = 65 across workgroups; and one dispatch per step
/// where the adapter can fuse.
#[test]
fn fused_steps_match_the_reference_on_every_cell() {
    let ctx = common::fused();
    for (i, mode) in MODES.into_iter().enumerate() {
        for hidden in [6, 8] {
            let seed = 700 + 4 * i as u64 + hidden as u64;
            check(ctx, spec(mode, 3, hidden, 2, 2), 3, 4, &[4, 1, 3], seed);
        }
    }
    check(ctx, spec("gru", 2, 65, 1, 2), 2, 3, &[3, 1], 790);
    // Dispatches against the same stack unfused, with the same GEMM kernels (B = 2
    // reads the buffers on every adapter).
    let t = PASS_STEPS;
    for mode in [Mode::Lstm, Mode::Gru] {
        let count = |ctx: &Context| pass_dispatches(ctx, mode);
        let (fused, unfused) = (count(ctx), count(common::gemm_contexts()[0]));
        // Forward: the input GEMM, a dispatch per step (a product and a cell
        // unfused), the outputs. Backward: the cell per step with the product of
        // the step before, the last product after them. An adapter that cannot
        // bind the ninth buffer runs them unfused.
        let saved = if ctx.limits().max_storage_buffers_per_shader_stage >= 9 {
            t
        } else {
            0
        };
        assert_eq!(unfused.0, 2 * t + 2, "{mode:?} forward unfused");
        assert_eq!(fused.0, unfused.0 - saved, "{mode:?} forward");
        assert_eq!(
            unfused.1 - fused.1,
            saved.saturating_sub(1),
            "{mode:?} backward"
        );
    }
}

/// Persistent steps (every step of a pass in one dispatch, a workgroup per
/// sequence and direction looping over time) on every cell, stacked and
/// bidirectional with mixed lengths, against the reference and finite
/// differences: H = 6 on the scalar kernels, 8 on the vec4 ones, 65 with lanes
/// taking two units; an LSTM of 260 units (vec4 lanes taking two quads) against
/// the fused steps; and one dispatch per pass where the adapter can fuse.
#[test]
fn persistent_steps_match_the_reference_on_every_cell() {
    let ctx = common::persistent();
    for (i, mode) in MODES.into_iter().enumerate() {
        for hidden in [6, 8] {
            let seed = 740 + 4 * i as u64 + hidden as u64;
            check(ctx, spec(mode, 3, hidden, 2, 2), 3, 4, &[4, 1, 3], seed);
        }
    }
    check(ctx, spec("gru", 2, 65, 1, 2), 2, 3, &[3, 1], 791);
    // 260 units: the fused steps (checked against the reference above and in
    // fused_steps_match_the_reference_on_every_cell) as the reference.
    let cfg = Config::new(4, 260).with_layers(1).with_bidirectional(true);
    let (b, t, lengths) = (2, 3, [3, 2]);
    let mut rng = Rng::new(17);
    let x = rng.vec(b * t * 4);
    let dy = rng.vec(b * t * 520);
    let run = |ctx: &Context| -> Vec<Vec<f32>> {
        let model = Recurrent::new(ctx, Mode::Lstm, cfg, 3).unwrap();
        let x = Tensor::from_slice(ctx, &[b, t, 4], &x).unwrap();
        let dy = Tensor::from_slice(ctx, &[b, t, 520], &dy).unwrap();
        let mut rec = Recorder::new(ctx, "260");
        model.zero_grad(&mut rec).unwrap();
        let (out, saved) = model.forward(&mut rec, &x, &lengths, None).unwrap();
        let grads = model.backward(&mut rec, &saved, &dy, None).unwrap();
        rec.submit();
        let mut all = vec![out.y.to_vec().unwrap(), grads.dx.to_vec().unwrap()];
        all.extend(model.named_grads().iter().map(|n| n.read().unwrap()));
        all
    };
    for (k, (got, want)) in run(ctx).iter().zip(run(common::fused())).enumerate() {
        let want: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
        assert_close(&format!("260 units, tensor {k}"), got, &want, 1e-4, 1e-5);
    }
    // Dispatches against the same stack's fused steps.
    let t = PASS_STEPS;
    for mode in [Mode::Lstm, Mode::Gru] {
        let count = |ctx: &Context| pass_dispatches(ctx, mode);
        let (persistent, fused) = (count(ctx), count(common::fused()));
        // t steps become one dispatch each way where the adapter can fuse.
        let saved = if ctx.limits().max_storage_buffers_per_shader_stage >= 9 {
            t - 1
        } else {
            0
        };
        assert_eq!(persistent.0, fused.0 - saved, "{mode:?} forward");
        assert_eq!(persistent.1, fused.1 - saved, "{mode:?} backward");
    }
}

/// f16 storage on every cell and both GEMM paths, stacked and bidirectional with
/// mixed lengths: outputs and every gradient against the f64 reference within f16's
/// rounding. Adapters without SHADER_F16 refuse the storage with a typed error.
#[test]
fn f16_storage_on_every_cell_matches_the_reference_within_f16_rounding() {
    if !ctx().has_f16() {
        let model = stack(ctx(), &spec("lstm", 2, 3, 1, 1), 1);
        let err = model.with_storage(DType::F16).unwrap_err();
        assert!(matches!(err, Error::FeatureMissing { .. }), "{err}");
        return;
    }
    for (k, ctx) in common::gemm_contexts()[1..].iter().enumerate() {
        for (i, mode) in MODES.into_iter().enumerate() {
            // H = 5 puts the states' slots at odd f16 offsets (B·H = 15).
            for hidden in [5, 6, 8] {
                let seed = 900 + 20 * k as u64 + 4 * i as u64 + hidden as u64;
                let spec = spec(mode, 3, hidden, 2, 2);
                check_stored(ctx, spec, 3, 4, &[4, 1, 3], seed, DType::F16);
            }
        }
    }
    let model = stack(ctx(), &spec("gru", 2, 3, 1, 1), 1);
    let err = model.with_storage(DType::U32).unwrap_err();
    assert!(matches!(err, Error::DType { .. }), "{err}");
}

/// backward_params gives backward's parameter and initial-state gradients bit for
/// bit, without the first layer's dx product (one per direction).
#[test]
fn backward_params_matches_backward_without_dx() {
    for ctx in common::gemm_contexts() {
        for mode in [Mode::Lstm, Mode::Gru, Mode::RnnTanh] {
            let cfg = Config::new(3, 8).with_layers(2).with_bidirectional(true);
            let (b, t) = (2, 4);
            let mut rng = Rng::new(5);
            let x: Vec<f32> = (0..b * t * 3).map(|_| rng.uniform()).collect();
            let dy: Vec<f32> = (0..b * t * 16).map(|_| rng.uniform()).collect();
            let run = |params_only: bool| {
                let model = Recurrent::new(ctx, mode, cfg, 7).unwrap();
                let x = Tensor::from_slice(ctx, &[b, t, 3], &x).unwrap();
                let dy = Tensor::from_slice(ctx, &[b, t, 16], &dy).unwrap();
                let mut rec = Recorder::new(ctx, "backward");
                model.zero_grad(&mut rec).unwrap();
                let (_, saved) = model.forward(&mut rec, &x, &[4, 2], None).unwrap();
                let before = rec.dispatches();
                let dh0 = if params_only {
                    model
                        .backward_params(&mut rec, &saved, &dy, None)
                        .unwrap()
                        .h()
                        .clone()
                } else {
                    model
                        .backward(&mut rec, &saved, &dy, None)
                        .unwrap()
                        .state
                        .h()
                        .clone()
                };
                let dispatches = rec.dispatches() - before;
                rec.submit();
                let grads: Vec<Vec<f32>> = model
                    .layer_grads()
                    .iter()
                    .flat_map(|l| [&l.w_ih, &l.w_hh, &l.b_ih, &l.b_hh])
                    .map(|g| g.to_vec().unwrap())
                    .collect();
                (grads, dh0.to_vec().unwrap(), dispatches)
            };
            let (grads, dh0, n) = run(false);
            let (grads_p, dh0_p, n_p) = run(true);
            assert_eq!(grads, grads_p, "{mode:?} parameter gradients");
            assert_eq!(dh0, dh0_p, "{mode:?} dh0");
            // dx [B·T, I] = dgi [B·T, G] · W_ih per direction: one dispatch, or
            // three where both operands are packed first; where dgi is dgh (all
            // but the GRU) the rows are time-major and dx is transposed back.
            let product = if ctx.gemm_packs(b * t, 3, mode.gates() * 8) {
                3
            } else {
                1
            };
            let back = usize::from(mode != Mode::Gru);
            assert_eq!(n - n_p, 2 * product + back, "{mode:?}: no dx product");
        }
    }
}

/// Outputs only, for sizes whose finite differences would be slow.
fn check_forward_only(
    ctx: &Context,
    spec: Spec,
    batch: usize,
    steps: usize,
    lengths: &[usize],
    seed: u64,
) {
    let what = format!("{spec:?} B={batch} T={steps}");
    let model = stack(ctx, &spec, seed);
    let (inp, _) = random_case(&spec, batch, steps, lengths, seed + 1);
    let state = [spec.layers * spec.dirs, batch, spec.hidden];
    let x = upload(ctx, &[batch, steps, spec.input], &inp.x);
    let h0 = upload(ctx, &state, &inp.h0);
    let c0 = spec.lstm().then(|| upload(ctx, &state, &inp.c0));
    let mut rec = Recorder::new(ctx, "test");
    let (out, _) = model
        .forward(&mut rec, &x, lengths, Some(&state_of(h0, c0)))
        .unwrap();
    rec.submit();
    let want = reference::forward(&spec, &reference_params(&model), &inp);
    assert_outputs(&what, &out, &want);
}

/// Truncated BPTT: chunks carry h and c forward but cut the gradient at every
/// chunk start, so the parameter gradient is the sum over chunks of each chunk's
/// gradient with its initial state held fixed.
#[test]
fn truncated_bptt_carries_state_and_cuts_gradients_at_chunk_starts() {
    let ctx = ctx();
    for (k, mode) in ["lstm", "gru"].into_iter().enumerate() {
        let spec = spec(mode, 3, 4, 2, 1);
        let (batch, steps, chunks) = (2, 8, [(0, 3), (3, 3), (6, 2)]);
        let model = stack(ctx, &spec, 70 + k as u64);
        let (mut full, up) = random_case(&spec, batch, steps, &[steps; 2], 80 + k as u64);
        // The first chunk starts from zero states.
        full.h0.fill(0.0);
        full.c0.fill(0.0);
        let params = reference_params(&model);
        let want_y = reference::forward(&spec, &params, &full).y;
        let state_len = spec.layers * batch * spec.hidden;
        let slice = |v: &[f64], width: usize, start: usize, len: usize| -> Vec<f64> {
            (0..batch)
                .flat_map(|b| {
                    v[(b * steps + start) * width..(b * steps + start + len) * width].to_vec()
                })
                .collect()
        };

        let mut rec = Recorder::new(ctx, "tbptt");
        model.zero_grad(&mut rec).unwrap();
        let mut state = None::<State<Tensor>>;
        let mut fd_sum: Option<Params> = None;
        for (start, len) in chunks {
            let x = slice(&full.x, spec.input, start, len);
            let dy = slice(&up.dy, spec.hidden, start, len);
            let (out, saved) = model
                .forward(
                    &mut rec,
                    &upload(ctx, &[batch, len, spec.input], &x),
                    &[len; 2],
                    state.as_ref(),
                )
                .unwrap();
            model
                .backward(
                    &mut rec,
                    &saved,
                    &upload(ctx, &[batch, len, spec.hidden], &dy),
                    None,
                )
                .unwrap();
            std::mem::replace(&mut rec, Recorder::new(ctx, "tbptt")).submit();
            let y = out.y.to_vec().unwrap();
            assert_close(
                &format!("{mode} chunk at {start}: y"),
                &y,
                &slice(&want_y, spec.hidden, start, len),
                FWD_RTOL,
                FWD_ATOL,
            );

            // The reference chunk starts from the reference state after `start` steps.
            let prefix = |v: &[f64]| {
                if start == 0 {
                    vec![0.0; state_len]
                } else {
                    v.to_vec()
                }
            };
            let before = Inputs {
                steps: start.max(1),
                lengths: vec![start.max(1); 2],
                x: slice(&full.x, spec.input, 0, start.max(1)),
                ..full.clone()
            };
            let at_start = reference::forward(&spec, &params, &before);
            let inp = Inputs {
                batch,
                steps: len,
                lengths: vec![len; 2],
                x,
                h0: prefix(&at_start.h_n),
                c0: if spec.lstm() {
                    prefix(&at_start.c_n)
                } else {
                    vec![]
                },
                between: vec![],
                zoneout: None,
                recurrent: vec![],
            };
            let chunk_up = Upstream {
                dy,
                dh_n: vec![0.0; state_len],
                dc_n: if spec.lstm() {
                    vec![0.0; state_len]
                } else {
                    vec![]
                },
            };
            let g = reference::gradients(&spec, &params, &inp, &chunk_up).params;
            fd_sum = Some(match fd_sum {
                None => g,
                Some(mut acc) => {
                    for (name, v) in acc.iter_mut() {
                        v.iter_mut().zip(&g[name]).for_each(|(a, b)| *a += b);
                    }
                    acc
                }
            });
            state = Some(out.state);
        }
        let fd_sum = fd_sum.unwrap();
        for n in model.named_grads() {
            assert_close(
                &format!("{mode} truncated: grad {}", n.name),
                &n.read().unwrap(),
                &fd_sum[&n.name],
                GRAD_RTOL,
                GRAD_ATOL,
            );
        }
    }
}

/// One layer, one direction, with weight_ih, weight_hh, bias_ih and bias_hh given.
fn one_layer(mode: Mode, input: usize, hidden: usize, values: [Vec<f32>; 4]) -> Recurrent {
    let cfg = Config::new(input, hidden)
        .with_layers(1)
        .with_bidirectional(false);
    let model = Recurrent::new(ctx(), mode, cfg, 0).unwrap();
    for (param, v) in model.named_params().iter().zip(values) {
        param.write(&v).unwrap();
    }
    model
}

/// An Elman update worked by hand: h = tanh(W_ih·x + b_ih + W_hh·h' + b_hh).
#[test]
fn worked_example_elman_update() {
    let ctx = ctx();
    let model = one_layer(
        Mode::RnnTanh,
        2,
        2,
        [
            vec![0.5, -0.3, 0.8, 0.2],
            vec![0.1, 0.4, -0.2, 0.3],
            vec![0.1, -0.1],
            vec![0.0, 0.0],
        ],
    );
    let x = Tensor::from_slice(ctx, &[1, 1, 2], &[1.0, 2.0]).unwrap();
    let h0 = Tensor::from_slice(ctx, &[1, 1, 2], &[0.5, -0.5]).unwrap();
    let mut rec = Recorder::new(ctx, "elman");
    let initial = State::Hidden { h: h0 };
    let (out, _) = model.forward(&mut rec, &x, &[1], Some(&initial)).unwrap();
    rec.submit();
    // Row 0: 0.5·1 − 0.3·2 + 0.1 + (0.1·0.5 + 0.4·(−0.5)) = −0.15
    // Row 1: 0.8·1 + 0.2·2 − 0.1 + (−0.2·0.5 + 0.3·(−0.5)) = 0.85
    let want = [(-0.15f64).tanh(), 0.85f64.tanh()];
    assert_close("Elman h", &out.y.to_vec().unwrap(), &want, 1e-6, 1e-7);
}

/// The LSTM cell value worked by hand: with f = 0.9, c' = 2, i = 0.5, g = 0.8,
/// c = f·c' + i·g = 2.2, and with o = 0.5, h = o·tanh(c).
#[test]
fn worked_example_lstm_cell_value() {
    let ctx = ctx();
    // Zero weights, so each gate is its bias: σ(0) = 0.5, σ(ln 9) = 0.9, tanh(ln 3) = 0.8.
    let model = one_layer(
        Mode::Lstm,
        1,
        1,
        [
            vec![0.0; 4],
            vec![0.0; 4],
            vec![0.0, 9f32.ln(), 3f32.ln(), 0.0],
            vec![0.0; 4],
        ],
    );
    let x = Tensor::from_slice(ctx, &[1, 1, 1], &[0.7]).unwrap();
    let h0 = Tensor::from_slice(ctx, &[1, 1, 1], &[0.3]).unwrap();
    let c0 = Tensor::from_slice(ctx, &[1, 1, 1], &[2.0]).unwrap();
    let mut rec = Recorder::new(ctx, "lstm cell");
    let (out, _) = model
        .forward(&mut rec, &x, &[1], Some(&State::Lstm { h: h0, c: c0 }))
        .unwrap();
    rec.submit();
    let State::Lstm { h, c } = out.state else {
        panic!("an LSTM's output state is State::Lstm");
    };
    assert_close("c", &c.to_vec().unwrap(), &[2.2], 1e-6, 1e-6);
    assert_close(
        "h",
        &h.to_vec().unwrap(),
        &[0.5 * 2.2f64.tanh()],
        1e-6,
        1e-6,
    );
}

/// Per step, forward records one recurrent GEMM and one cell dispatch, backward one
/// cell dispatch and one GEMM; the rest is per layer (on the buffer GEMM path,
/// which records one dispatch per GEMM).
#[test]
fn dispatches_per_step_are_one_gemm_and_one_cell() {
    let ctx = common::gemm_contexts()[2];
    for (mode, layers, dirs) in [(Mode::Lstm, 2, 2), (Mode::Gru, 1, 1), (Mode::RnnTanh, 1, 2)] {
        let cfg = Config::new(3, 4)
            .with_layers(layers)
            .with_bidirectional(dirs == 2);
        let model = Recurrent::new(ctx, mode, cfg, 1).unwrap();
        let (b, t) = (2, 5);
        let x = Tensor::zeros(ctx, &[b, t, 3]).unwrap();
        let mut rec = Recorder::new(ctx, "count");
        let (_, saved) = model.forward(&mut rec, &x, &[5, 2], None).unwrap();
        // One input projection, T × (GEMM + cell), then the outputs from the states.
        assert_eq!(rec.dispatches(), layers * (2 + 2 * t), "{mode:?} forward");
        let before = rec.dispatches();
        let dy = Tensor::zeros(ctx, &[b, t, dirs * 4]).unwrap();
        model.backward(&mut rec, &saved, &dy, None).unwrap();
        // T × (cell + GEMM), dW_hh and dW_ih, then per direction the bias sums
        // (the GRU's two; the others' one, added to both biases) and dx; but for
        // the GRU, the input transposed to dgh's time-major rows and dx back.
        let (per_dir, transposes) = if mode == Mode::Gru { (3, 0) } else { (4, 2) };
        assert_eq!(
            rec.dispatches() - before,
            layers * (2 * t + 2 + transposes + per_dir * dirs),
            "{mode:?} backward"
        );
        rec.submit();
    }
}

/// Bad input gets a typed error before anything is recorded, and the model's
/// parameters and gradients stay as they were.
#[test]
fn bad_input_is_refused_and_leaves_the_model_intact() {
    let ctx = ctx();
    let cfg = Config::new(3, 4).with_layers(2).with_bidirectional(true);
    let model = Recurrent::new(ctx, Mode::Gru, cfg, 5).unwrap();
    let snapshot = |m: &Recurrent| -> Vec<Vec<f32>> {
        m.named_params()
            .iter()
            .chain(&m.named_grads())
            .map(|n| n.read().unwrap())
            .collect()
    };
    let before = snapshot(&model);
    let x = Tensor::zeros(ctx, &[2, 5, 3]).unwrap();
    let h0 = Tensor::zeros(ctx, &[4, 2, 4]).unwrap();
    let mut rec = Recorder::new(ctx, "bad");
    let mut forward = |x: &Tensor, lengths: &[usize], state: Option<&State<Tensor>>| {
        model.forward(&mut rec, x, lengths, state).unwrap_err()
    };
    let hidden = |h: &Tensor| State::Hidden { h: h.clone() };
    let err = forward(&Tensor::zeros(ctx, &[2, 5, 4]).unwrap(), &[5, 5], None);
    assert!(
        matches!(err, Error::ShapeMismatch { what: "x", .. }),
        "{err}"
    );
    let err = forward(&Tensor::zeros(ctx, &[10, 3]).unwrap(), &[5, 5], None);
    assert!(
        matches!(err, Error::ShapeMismatch { what: "x", .. }),
        "{err}"
    );
    let err = forward(&Tensor::zeros(ctx, &[0, 5, 3]).unwrap(), &[], None);
    assert!(matches!(err, Error::Empty { .. }), "{err}");
    let err = forward(&x, &[5], None);
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                what: "lengths",
                ..
            }
        ),
        "{err}"
    );
    let err = forward(&x, &[5, 0], None);
    assert!(
        matches!(
            err,
            Error::LengthOutOfRange {
                index: 1,
                value: 0,
                max: 5,
                ..
            }
        ),
        "{err}"
    );
    let err = forward(&x, &[6, 1], None);
    assert!(
        matches!(
            err,
            Error::LengthOutOfRange {
                index: 0,
                value: 6,
                ..
            }
        ),
        "{err}"
    );
    let err = forward(
        &x,
        &[5, 5],
        Some(&hidden(&Tensor::zeros(ctx, &[2, 2, 4]).unwrap())),
    );
    assert!(
        matches!(err, Error::ShapeMismatch { what: "h0", .. }),
        "{err}"
    );
    // A GRU has no cell state: an LSTM's state is refused.
    let lstm_state = State::Lstm {
        h: h0.clone(),
        c: h0.clone(),
    };
    let err = forward(&x, &[5, 5], Some(&lstm_state));
    assert!(
        matches!(err, Error::InvalidArgument { what: "state", .. }),
        "{err}"
    );
    let ids = Tensor::empty(ctx, &[2, 5, 3], DType::U32).unwrap();
    assert!(matches!(
        forward(&ids, &[5, 5], None),
        Error::DType { what: "x", .. }
    ));
    if ctx.has_f16() {
        // An f16 state is refused: h0 and c0 are f32 whatever the storage.
        let half = Tensor::empty(ctx, &[4, 2, 4], DType::F16).unwrap();
        assert!(matches!(
            forward(&x, &[5, 5], Some(&hidden(&half))),
            Error::DType { what: "h0", .. }
        ));
    }

    let (_, saved) = model.forward(&mut rec, &x, &[5, 3], None).unwrap();
    let err = model
        .backward(
            &mut rec,
            &saved,
            &Tensor::zeros(ctx, &[2, 5, 4]).unwrap(),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { what: "dy", .. }),
        "{err}"
    );
    let dy = Tensor::zeros(ctx, &[2, 5, 8]).unwrap();
    let err = model
        .backward(&mut rec, &saved, &dy, Some(&lstm_state))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                what: "d_state",
                ..
            }
        ),
        "{err}"
    );
    let other = Recurrent::new(ctx, Mode::Gru, cfg.with_layers(1), 5).unwrap();
    let err = other.backward(&mut rec, &saved, &dy, None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                what: "saved activations",
                ..
            }
        ),
        "{err}"
    );
    rec.submit();
    assert_eq!(snapshot(&model), before, "the model changed");
}

/// Each step of a layer, both directions together, is two dispatches forward (the
/// recurrent product and the cell) on every GEMM path: where the GEMM reads packed
/// textures, the cell writes the next step's states into one (the first step's are
/// packed once per layer). Backward is two, three when packing, as the step's state
/// gradients are packed first (on lavapipe that is faster than reading them in
/// place; having the cell write them as texels, as forward does, measured W1 2%
/// faster and W4 2-3% slower, so it is not done).
#[test]
fn each_step_is_two_dispatches_per_layer_forward_and_two_or_three_backward() {
    for ctx in common::gemm_contexts() {
        for mode in MODES {
            let spec = spec(mode, 3, 8, 2, 2);
            let model = stack(ctx, &spec, 90);
            let count = |steps: usize| {
                let x = Tensor::zeros(ctx, &[2, steps, spec.input]).unwrap();
                let dy = Tensor::zeros(ctx, &[2, steps, 2 * spec.hidden]).unwrap();
                let mut rec = Recorder::new(ctx, "count");
                let (_, saved) = model.forward(&mut rec, &x, &[steps; 2], None).unwrap();
                let forward = rec.dispatches();
                model.backward(&mut rec, &saved, &dy, None).unwrap();
                (forward, rec.dispatches() - forward)
            };
            let ((f3, b3), (f7, b7)) = (count(3), count(7));
            let per_step = |a: usize, b: usize| (b - a) as f64 / (4 * spec.layers) as f64;
            // The backward step's product is [B, gates·H] × [gates·H, H].
            let gates = mode_of(&spec).gates();
            let packs = ctx.gemm_packs(2, spec.hidden, gates * spec.hidden);
            assert_eq!(per_step(f3, f7), 2.0, "{mode} forward");
            let want = if packs { 3.0 } else { 2.0 };
            assert_eq!(per_step(b3, b7), want, "{mode} backward");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// Random cells, sizes, depths, directions, batch sizes (1 included) and
    /// lengths (1 and T included when drawn), on the adapter's steps or fused
    /// ones: outputs against the reference and every gradient against finite
    /// differences.
    #[test]
    fn random_layers_match_reference_and_finite_differences(
        mode in proptest::sample::select(MODES.to_vec()),
        input in 1usize..5, hidden in 1usize..6, layers in 1usize..3, dirs in 1usize..3,
        batch in 1usize..4, steps in 1usize..6,
        drawn in proptest::collection::vec(1usize..6, 3),
        seed in 0u64..1_000_000,
        path in 0usize..3,
    ) {
        let lengths: Vec<usize> = drawn[..batch].iter().map(|&l| l.min(steps)).collect();
        let spec = spec(mode, input, hidden, layers, dirs);
        // A ReLU pre-activation within reach of the differences' step makes them
        // straddle the kink (random search finds such cases: −1.4e−7 once).
        let model = stack(ctx(), &spec, seed);
        let (inp, _) = random_case(&spec, batch, steps, &lengths, seed + 1);
        proptest::prop_assume!(reference::relu_margin(&spec, &reference_params(&model), &inp) > 1e-4);
        let ctx = [common::gemm_contexts()[0], common::fused(), common::persistent()][path];
        check(ctx, spec, batch, steps, &lengths, seed);
    }
}

/// Streams (`Recurrent::stream`, one dispatch per layer and step) against the f64
/// reference run over the whole sequence from zero states: a chunk, then single
/// steps, a fork that continues alike, and a reset, for every cell, with H within
/// one workgroup and across two, on the scalar kernel (I or H not a multiple of
/// 4) and the vec4 one; every other stack with zoneout, whose expectation a
/// stream takes; projected LSTMs and LayerNorm-LSTMs.
#[test]
fn streams_match_the_reference_step_by_step() {
    let ctx = ctx();
    let (batch, steps) = (3, 6);
    let sizes = [(5, 7), (5, 70), (8, 12), (8, 68)];
    let unprojected = MODES
        .into_iter()
        .flat_map(|mode| sizes.iter().map(move |&(i, h)| (mode, i, h, 0, false)));
    // Projected LSTMs on the scalar kernel (P = 3) and the vec4 one, and
    // LayerNorm-LSTMs within a workgroup's lanes and past them.
    let others = [
        ("lstm", 5, 7, 3, false),
        ("lstm", 8, 12, 8, false),
        ("lstm", 5, 7, 0, true),
        ("lstm", 8, 68, 0, true),
    ];
    for (k, (mode, input, hidden, proj, ln)) in unprojected.chain(others).enumerate() {
        {
            let spec = Spec {
                proj,
                ..spec(mode, input, hidden, 2, 1)
            };
            // Every other stack zones out (none projected): a stream takes the
            // expectation.
            let zoneout = (k % 2 == 1 && proj == 0).then(|| reference::Zoneout {
                h: 0.25,
                c: if spec.lstm() { 0.15 } else { 0.0 },
                seeds: vec![],
            });
            let what = format!("{spec:?} {zoneout:?}");
            let mut model = match proj {
                0 => stack(ctx, &spec, 31),
                p => Recurrent::new(ctx, Mode::Lstm, config(&spec), 31)
                    .and_then(|r| r.with_projection(p, 31))
                    .unwrap(),
            };
            if let Some(z) = &zoneout {
                model = model.with_zoneout(z.h, z.c, 4).unwrap();
            }
            if ln {
                model = model.with_layer_norm().unwrap();
                let mut rng = Rng::new(k as u64);
                for p in model.named_params() {
                    if p.name.starts_with("layer_norm") {
                        let v: Vec<f32> = rng.vec(p.numel()).iter().map(|v| 1.0 + v).collect();
                        p.write(&v).unwrap();
                    }
                }
            }
            // The states and outputs are S wide (P with a projection), c H wide.
            let (hidden, cells) = (spec.state(), spec.hidden);
            let (mut inp, _) = random_case(&spec, batch, steps, &[steps; 3], 32);
            inp.zoneout = zoneout;
            inp.h0.iter_mut().for_each(|v| *v = 0.0);
            inp.c0.iter_mut().for_each(|v| *v = 0.0);
            let want = reference::forward(&spec, &reference_params(&model), &inp);
            // y of step t, [B, H] (one direction: the top layer's h).
            let y_at = |t: usize| -> Vec<f64> {
                (0..batch)
                    .flat_map(|b| {
                        let at = (b * steps + t) * hidden;
                        want.y[at..at + hidden].to_vec()
                    })
                    .collect()
            };
            // Steps 0..4 as one chunk.
            let chunk: Vec<f64> = (0..batch)
                .flat_map(|b| {
                    let at = b * steps * spec.input;
                    inp.x[at..at + 4 * spec.input].to_vec()
                })
                .collect();
            let x_at = |t: usize| -> Tensor {
                let v: Vec<f64> = (0..batch)
                    .flat_map(|b| {
                        let at = (b * steps + t) * spec.input;
                        inp.x[at..at + spec.input].to_vec()
                    })
                    .collect();
                upload(ctx, &[batch, spec.input], &v)
            };
            let mut rec = Recorder::new(ctx, "stream");
            let mut stream = model.stream(&mut rec, batch).unwrap();
            let chunk = upload(ctx, &[batch, 4, spec.input], &chunk);
            let y = stream.feed(&mut rec, &chunk).unwrap();
            let got = rec.submit_read(&y).unwrap();
            assert_close(
                &format!("{what}: chunk"),
                &got,
                &y_at(3),
                FWD_RTOL,
                FWD_ATOL,
            );
            let mut fork = stream.clone();
            for t in 4..steps {
                let mut rec = Recorder::new(ctx, "token");
                let y = stream.step(&mut rec, &x_at(t)).unwrap();
                let got = rec.submit_read(&y).unwrap();
                assert_close(
                    &format!("{what}: step {t}"),
                    &got,
                    &y_at(t),
                    FWD_RTOL,
                    FWD_ATOL,
                );
            }
            // The final states, layer by layer, as h_n and c_n hold them.
            let (per_layer, per_cell) = (batch * hidden, batch * cells);
            for l in 0..spec.layers {
                let want_h = &want.h_n[l * per_layer..(l + 1) * per_layer];
                let got = stream.h()[l].to_vec().unwrap();
                assert_close(
                    &format!("{what}: h of layer {l}"),
                    &got,
                    want_h,
                    FWD_RTOL,
                    FWD_ATOL,
                );
                if let Some(c) = stream.state().c() {
                    let want_c = &want.c_n[l * per_cell..(l + 1) * per_cell];
                    let got = c[l].to_vec().unwrap();
                    assert_close(
                        &format!("{what}: c of layer {l}"),
                        &got,
                        want_c,
                        FWD_RTOL,
                        FWD_ATOL,
                    );
                }
            }
            // The fork continues from step 4 as the stream did.
            let mut rec = Recorder::new(ctx, "fork");
            let y = fork.step(&mut rec, &x_at(4)).unwrap();
            let got = rec.submit_read(&y).unwrap();
            assert_close(&format!("{what}: fork"), &got, &y_at(4), FWD_RTOL, FWD_ATOL);
            // A reset starts over.
            let mut rec = Recorder::new(ctx, "reset");
            stream.reset(&mut rec, batch).unwrap();
            let y = stream.step(&mut rec, &x_at(0)).unwrap();
            let got = rec.submit_read(&y).unwrap();
            assert_close(
                &format!("{what}: reset"),
                &got,
                &y_at(0),
                FWD_RTOL,
                FWD_ATOL,
            );
        }
    }
}

/// A stream refuses what it cannot run, recording nothing and keeping its state.
#[test]
fn streams_refuse_bad_input_and_keep_their_state() {
    let ctx = ctx();
    let bi = stack(ctx, &spec("gru", 4, 6, 1, 2), 1);
    let mut rec = Recorder::new(ctx, "bad");
    assert!(matches!(
        bi.stream(&mut rec, 2),
        Err(Error::InvalidArgument { .. })
    ));
    let model = stack(ctx, &spec("lstm", 4, 6, 2, 1), 1);
    assert!(matches!(
        model.stream(&mut rec, 0),
        Err(Error::Empty { .. })
    ));
    let mut stream = model.stream(&mut rec, 2).unwrap();
    let before = rec.dispatches();
    let state = stream.h().to_vec();
    for shape in [vec![3, 4], vec![2, 5], vec![2, 0, 4], vec![8]] {
        let x = Tensor::zeros(ctx, &shape).unwrap();
        assert!(
            matches!(stream.feed(&mut rec, &x), Err(Error::ShapeMismatch { .. })),
            "{shape:?}"
        );
    }
    assert_eq!(rec.dispatches(), before);
    assert!(stream
        .h()
        .iter()
        .zip(&state)
        .all(|(a, b)| a.buffer() == b.buffer()));
    let h = vec![Tensor::zeros(ctx, &[2, 6]).unwrap(); 2];
    assert!(matches!(
        stream.set_state(State::Hidden { h: h.clone() }),
        Err(Error::InvalidArgument { what: "state", .. })
    ));
    assert!(matches!(
        stream.set_state(State::Lstm {
            h: h[..1].to_vec(),
            c: h.clone()
        }),
        Err(Error::ShapeMismatch { .. })
    ));
    stream
        .set_state(State::Lstm { h: h.clone(), c: h })
        .unwrap();
    rec.submit();
}
