//! Recurrent layers on the GPU against the f64 reference: outputs, and every
//! gradient against central finite differences of the reference loss, for each
//! cell, stacked and bidirectional, with mixed lengths (1 and T included).

mod common;

use common::recurrent_ref::{self as reference, Inputs, Params, Spec, Upstream};
use common::{assert_close, ctx, to_f64, Rng};
use rnn_wgpu::nn::recurrent::{Config, Mode, Recurrent};
use rnn_wgpu::{Context, Recorder, Tensor};

/// Outputs: f32 kernels against the f64 reference over a few dozen steps.
const FWD_RTOL: f64 = 1e-4;
const FWD_ATOL: f64 = 1e-5;
/// Gradients: f32 accumulation over steps and units against f64 central
/// differences (whose own error is about 1e-8).
const GRAD_RTOL: f64 = 1e-3;
const GRAD_ATOL: f64 = 1e-4;

fn config(spec: &Spec) -> Config {
    Config {
        mode: Mode::from_name(spec.mode).unwrap(),
        input_size: spec.input,
        hidden_size: spec.hidden,
        num_layers: spec.layers,
        bidirectional: spec.dirs == 2,
    }
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
    let states = spec.layers * spec.dirs * batch * spec.hidden;
    let mut v = |n: usize| to_f64(&rng.vec(n));
    let inputs = Inputs {
        batch,
        steps,
        lengths: lengths.to_vec(),
        x: v(batch * steps * spec.input),
        h0: v(states),
        c0: if spec.lstm() { v(states) } else { vec![] },
    };
    let up = Upstream {
        dy: v(batch * steps * spec.dirs * spec.hidden),
        dh_n: v(states),
        dc_n: if spec.lstm() { v(states) } else { vec![] },
    };
    (inputs, up)
}

fn upload(ctx: &Context, shape: &[usize], v: &[f64]) -> Tensor {
    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_slice(ctx, shape, &v).unwrap()
}

/// Runs forward and backward on the GPU and checks outputs and gradients.
fn check(ctx: &Context, spec: Spec, batch: usize, steps: usize, lengths: &[usize], seed: u64) {
    let what = format!("{spec:?} B={batch} T={steps} lengths={lengths:?}");
    let model = Recurrent::new(ctx, config(&spec), seed).unwrap();
    let (inp, up) = random_case(&spec, batch, steps, lengths, seed + 1);
    let state = [spec.layers * spec.dirs, batch, spec.hidden];
    let x = upload(ctx, &[batch, steps, spec.input], &inp.x);
    let h0 = upload(ctx, &state, &inp.h0);
    let c0 = spec.lstm().then(|| upload(ctx, &state, &inp.c0));
    let dy = upload(ctx, &[batch, steps, spec.dirs * spec.hidden], &up.dy);
    let dh_n = upload(ctx, &state, &up.dh_n);
    let dc_n = spec.lstm().then(|| upload(ctx, &state, &up.dc_n));

    let mut rec = Recorder::new(ctx, "test");
    let (out, saved) = model
        .forward(&mut rec, &x, lengths, Some(&h0), c0.as_ref())
        .unwrap();
    let grads = model
        .backward(&mut rec, &saved, &dy, Some(&dh_n), dc_n.as_ref())
        .unwrap();
    rec.submit();

    let params = reference_params(&model);
    let want = reference::forward(&spec, &params, &inp);
    assert_close(
        &format!("{what}: y"),
        &out.y.to_vec().unwrap(),
        &want.y,
        FWD_RTOL,
        FWD_ATOL,
    );
    assert_close(
        &format!("{what}: h_n"),
        &out.h_n.to_vec().unwrap(),
        &want.h_n,
        FWD_RTOL,
        FWD_ATOL,
    );
    if let Some(c_n) = &out.c_n {
        assert_close(
            &format!("{what}: c_n"),
            &c_n.to_vec().unwrap(),
            &want.c_n,
            FWD_RTOL,
            FWD_ATOL,
        );
    }

    let fd = reference::gradients(&spec, &params, &inp, &up);
    let grad = |name: &str, t: &Tensor, want: &[f64]| {
        assert_close(
            &format!("{what}: grad {name}"),
            &t.to_vec().unwrap(),
            want,
            GRAD_RTOL,
            GRAD_ATOL,
        )
    };
    grad("x", &grads.dx, &fd.x);
    grad("h0", &grads.dh0, &fd.h0);
    if let Some(dc0) = &grads.dc0 {
        grad("c0", dc0, &fd.c0);
    }
    for n in model.named_grads() {
        assert_close(
            &format!("{what}: grad {}", n.name),
            &n.read().unwrap(),
            &fd.params[&n.name],
            GRAD_RTOL,
            GRAD_ATOL,
        );
    }
}

const MODES: [&str; 4] = ["lstm", "gru", "rnn_tanh", "rnn_relu"];

#[test]
fn one_layer_one_direction_matches_reference_and_finite_differences() {
    for (k, mode) in MODES.into_iter().enumerate() {
        let spec = Spec {
            mode,
            input: 3,
            hidden: 5,
            layers: 1,
            dirs: 1,
        };
        check(ctx(), spec, 3, 6, &[6, 1, 4], 10 + k as u64);
    }
}

#[test]
fn bidirectional_matches_reference_and_finite_differences() {
    for (k, mode) in MODES.into_iter().enumerate() {
        let spec = Spec {
            mode,
            input: 4,
            hidden: 3,
            layers: 1,
            dirs: 2,
        };
        check(ctx(), spec, 4, 5, &[2, 5, 1, 3], 20 + k as u64);
    }
}

#[test]
fn stacked_bidirectional_matches_reference_and_finite_differences() {
    for (k, mode) in MODES.into_iter().enumerate() {
        let spec = Spec {
            mode,
            input: 2,
            hidden: 3,
            layers: 2,
            dirs: 2,
        };
        check(ctx(), spec, 2, 4, &[4, 1], 30 + k as u64);
    }
}

#[test]
fn stacked_one_direction_and_single_steps_match() {
    for (k, mode) in MODES.into_iter().enumerate() {
        let spec = Spec {
            mode,
            input: 3,
            hidden: 4,
            layers: 2,
            dirs: 1,
        };
        check(ctx(), spec, 2, 3, &[3, 2], 40 + k as u64);
        // T = 1: one cell forward and backward.
        let spec = Spec {
            mode,
            input: 2,
            hidden: 3,
            layers: 1,
            dirs: 2,
        };
        check(ctx(), spec, 1, 1, &[1], 50 + k as u64);
    }
}

#[test]
fn wide_hidden_spans_several_workgroups_on_every_gemm_path() {
    // H = 65 puts units past the first workgroup of 64; the packed-texture and
    // buffer GEMMs both run the recurrence.
    for (k, ctx) in common::gemm_contexts().into_iter().enumerate() {
        let spec = Spec {
            mode: "lstm",
            input: 2,
            hidden: 65,
            layers: 1,
            dirs: 2,
        };
        check_forward_only(ctx, spec, 2, 3, &[3, 1], 60 + k as u64);
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
    let model = Recurrent::new(ctx, config(&spec), seed).unwrap();
    let (inp, _) = random_case(&spec, batch, steps, lengths, seed + 1);
    let state = [spec.layers * spec.dirs, batch, spec.hidden];
    let x = upload(ctx, &[batch, steps, spec.input], &inp.x);
    let h0 = upload(ctx, &state, &inp.h0);
    let c0 = spec.lstm().then(|| upload(ctx, &state, &inp.c0));
    let mut rec = Recorder::new(ctx, "test");
    let (out, _) = model
        .forward(&mut rec, &x, lengths, Some(&h0), c0.as_ref())
        .unwrap();
    rec.submit();
    let want = reference::forward(&spec, &reference_params(&model), &inp);
    assert_close(
        &format!("{what}: y"),
        &out.y.to_vec().unwrap(),
        &want.y,
        FWD_RTOL,
        FWD_ATOL,
    );
    assert_close(
        &format!("{what}: h_n"),
        &out.h_n.to_vec().unwrap(),
        &want.h_n,
        FWD_RTOL,
        FWD_ATOL,
    );
}
