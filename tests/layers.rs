//! Embedding, linear, cross-entropy, dropout and the optimizers against f64
//! references; every backward against central finite differences.

mod common;

use common::recurrent_ref::numeric_grad;
use common::{assert_close, ctx, to_f64, Rng};
use rnn_wgpu::nn::{Embedding, Linear, Module, Param};
use rnn_wgpu::ops::sample::{self, Sampling};
use rnn_wgpu::ops::{cross_entropy, dropout};
use rnn_wgpu::train::{Method, OptimConfig, Optimizer};
use rnn_wgpu::{Error, Recorder, Tensor};

/// f32 kernels against f64 references on small sums.
const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn embedding_gathers_rows_and_sums_gradients_except_padding() {
    let ctx = ctx();
    let (vocab, dim) = (11, 5);
    let emb = Embedding::new(ctx, vocab, dim, Some(0), 3).unwrap();
    let table = to_f64(&emb.weight().to_vec().unwrap());
    assert!(
        table[..dim].iter().all(|&x| x == 0.0),
        "padding row starts at zero"
    );
    let ids: Vec<u32> = vec![3, 0, 7, 3, 10, 0, 1, 3, 7, 2, 0, 9];
    let dout = Rng::new(4).vec(ids.len() * dim);

    let mut rec = Recorder::new(ctx, "embedding");
    emb.zero_grad(&mut rec).unwrap();
    let (out, index) = emb.forward(&mut rec, &ids, &[3, 4]).unwrap();
    let dout_t = Tensor::from_slice(ctx, &[3, 4, dim], &dout).unwrap();
    emb.backward(&mut rec, &dout_t, &index).unwrap();
    rec.submit();
    assert_eq!(out.shape(), &[3, 4, dim]);

    let forward = |table: &[f64]| -> Vec<f64> {
        ids.iter()
            .flat_map(|&id| table[id as usize * dim..(id as usize + 1) * dim].to_vec())
            .collect()
    };
    assert_close("out", &out.to_vec().unwrap(), &forward(&table), 0.0, 0.0);
    let mut t = table.clone();
    let mut want = numeric_grad(&mut t, |t| dot(&forward(t), &to_f64(&dout)));
    // padding_idx: PyTorch gives its row no gradient.
    want[..dim].fill(0.0);
    assert_close("dtable", &emb.grad().to_vec().unwrap(), &want, RTOL, ATOL);

    let mut rec = Recorder::new(ctx, "bad id");
    let err = emb.forward(&mut rec, &[1, 11], &[2]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::IndexOutOfRange {
                index: 1,
                value: 11,
                bound: 11,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn linear_matches_reference_and_finite_differences() {
    let ctx = ctx();
    let (rows, inputs, outputs) = (7, 5, 3);
    let lin = Linear::new(ctx, inputs, outputs, true, 9).unwrap();
    let mut rng = Rng::new(10);
    let x = rng.vec(rows * inputs);
    let dy = rng.vec(rows * outputs);
    let w = to_f64(&lin.params()[0].value.to_vec().unwrap());
    let b = to_f64(&lin.params()[1].value.to_vec().unwrap());

    let mut rec = Recorder::new(ctx, "linear");
    lin.zero_grad(&mut rec).unwrap();
    let xt = Tensor::from_slice(ctx, &[rows, 1, inputs], &x).unwrap();
    let y = lin.forward(&mut rec, &xt).unwrap();
    let dyt = Tensor::from_slice(ctx, &[rows, 1, outputs], &dy).unwrap();
    let dx = lin.backward(&mut rec, &dyt, &xt).unwrap();
    rec.submit();

    let forward = |x: &[f64], w: &[f64], b: &[f64]| -> Vec<f64> {
        (0..rows * outputs)
            .map(|i| {
                let (r, o) = (i / outputs, i % outputs);
                b[o] + (0..inputs)
                    .map(|k| x[r * inputs + k] * w[o * inputs + k])
                    .sum::<f64>()
            })
            .collect()
    };
    let (x64, dy64) = (to_f64(&x), to_f64(&dy));
    assert_eq!(y.shape(), &[rows, 1, outputs]);
    assert_close(
        "y",
        &y.to_vec().unwrap(),
        &forward(&x64, &w, &b),
        RTOL,
        ATOL,
    );
    let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&forward(x, w, b), &dy64);
    let grads = lin.params();
    let (mut xv, mut wv, mut bv) = (x64.clone(), w.clone(), b.clone());
    assert_close(
        "dx",
        &dx.to_vec().unwrap(),
        &numeric_grad(&mut xv, |v| loss(v, &w, &b)),
        RTOL,
        ATOL,
    );
    assert_close(
        "dW",
        &grads[0].grad.to_vec().unwrap(),
        &numeric_grad(&mut wv, |v| loss(&x64, v, &b)),
        RTOL,
        ATOL,
    );
    assert_close(
        "db",
        &grads[1].grad.to_vec().unwrap(),
        &numeric_grad(&mut bv, |v| loss(&x64, &w, v)),
        RTOL,
        ATOL,
    );
}

/// A tied layer reads the owner's weight and adds to the owner's gradient (on
/// top of what is there), lists its bias only, and refuses a weight and a
/// gradient of different shapes.
#[test]
fn a_tied_linear_shares_its_owners_weight_and_gradient() {
    let ctx = ctx();
    let (rows, inputs, outputs) = (4, 3, 6);
    let table = Embedding::new(ctx, outputs, inputs, None, 3).unwrap();
    let lin = Linear::tied(table.weight(), table.grad(), true, 4).unwrap();
    assert!(lin.is_tied());
    assert_eq!(lin.params().len(), 1);
    let mut rng = Rng::new(11);
    let (x, dy, before) = (
        rng.vec(rows * inputs),
        rng.vec(rows * outputs),
        rng.vec(outputs * inputs),
    );
    table.grad().write(&before).unwrap();
    let w = to_f64(&table.weight().to_vec().unwrap());
    let b = to_f64(&lin.params()[0].value.to_vec().unwrap());
    let mut rec = Recorder::new(ctx, "tied");
    let xt = Tensor::from_slice(ctx, &[rows, inputs], &x).unwrap();
    let y = lin.forward(&mut rec, &xt).unwrap();
    let dyt = Tensor::from_slice(ctx, &[rows, outputs], &dy).unwrap();
    lin.backward(&mut rec, &dyt, &xt).unwrap();
    rec.submit();
    let (x64, dy64) = (to_f64(&x), to_f64(&dy));
    let want_y: Vec<f64> = (0..rows * outputs)
        .map(|i| {
            let (r, o) = (i / outputs, i % outputs);
            b[o] + (0..inputs)
                .map(|k| x64[r * inputs + k] * w[o * inputs + k])
                .sum::<f64>()
        })
        .collect();
    assert_close("y", &y.to_vec().unwrap(), &want_y, RTOL, ATOL);
    let want_dw: Vec<f64> = (0..outputs * inputs)
        .map(|i| {
            let (o, k) = (i / inputs, i % inputs);
            before[i] as f64
                + (0..rows)
                    .map(|r| dy64[r * outputs + o] * x64[r * inputs + k])
                    .sum::<f64>()
        })
        .collect();
    assert_close(
        "table gradient",
        &table.grad().to_vec().unwrap(),
        &want_dw,
        RTOL,
        ATOL,
    );

    let wrong = Tensor::zeros(ctx, &[outputs, inputs + 1]).unwrap();
    let err = Linear::tied(table.weight(), &wrong, true, 4).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
    let flat = Tensor::zeros(ctx, &[outputs]).unwrap();
    let err = Linear::tied(&flat, &flat, false, 4).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
}

/// The mean cross-entropy over rows whose target is not `ignore`, in f64, against
/// targets smoothed by `eps`: Σ_k q_k·(lse − z_k), q = (1 − eps)·onehot + eps / C.
fn reference_ce(logits: &[f64], targets: &[u32], classes: usize, ignore: u32, eps: f64) -> f64 {
    let real = targets.iter().filter(|&&t| t != ignore).count() as f64;
    targets
        .iter()
        .enumerate()
        .filter(|&(_, &t)| t != ignore)
        .map(|(r, &t)| {
            let z = &logits[r * classes..(r + 1) * classes];
            let m = z.iter().cloned().fold(f64::MIN, f64::max);
            let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            (0..classes)
                .map(|k| {
                    let q = eps / classes as f64 + if k == t as usize { 1.0 - eps } else { 0.0 };
                    q * (lse - z[k])
                })
                .sum::<f64>()
        })
        .sum::<f64>()
        / real
}

#[test]
fn cross_entropy_matches_reference_for_logits_of_any_magnitude() {
    // More classes than a workgroup's lanes (a workgroup per row), and few (a
    // row per invocation).
    // Plain and label-smoothed.
    for classes in [70, 20] {
        for eps in [0.0, 0.1, 1.0] {
            check_cross_entropy(classes, eps);
        }
    }
}

fn check_cross_entropy(classes: usize, eps: f32) {
    let ctx = ctx();
    const IGN: u32 = 99;
    let rows = 9;
    let last = classes as u32 - 1;
    let mut rng = Rng::new(11);
    let mut logits = rng.vec(rows * classes);
    // Rows of huge, tiny and mixed magnitude: exp must never overflow.
    logits[..classes].iter_mut().for_each(|v| *v *= 1e4);
    logits[classes..2 * classes]
        .iter_mut()
        .for_each(|v| *v *= 1e-3);
    logits[2 * classes] = 3e4;
    let targets = vec![3, IGN, last, 0, 5, IGN, 12, last / 2, 1];

    let mut rec = Recorder::new(ctx, "ce");
    let lt = Tensor::from_slice(ctx, &[rows, classes], &logits).unwrap();
    let out = cross_entropy::forward_smoothed(&mut rec, &lt, &targets, Some(IGN), eps).unwrap();
    rec.submit();
    assert_eq!(out.count, 7);
    let l64 = to_f64(&logits);
    let e64 = f64::from(eps);
    let want = reference_ce(&l64, &targets, classes, IGN, e64);
    // The huge row's loss is ~1e4 when smoothed: relative tolerance.
    assert_close("loss", &out.loss.to_vec().unwrap(), &[want], 1e-5, 1e-5);
    // Finite differences away from the huge rows, whose loss is piecewise linear
    // at f64's resolution; their gradient is checked as exactly softmax − q.
    let mut v = l64.clone();
    let fd = numeric_grad(&mut v, |z| reference_ce(z, &targets, classes, IGN, e64));
    let got = out.dlogits.to_vec().unwrap();
    assert_close("dlogits", &got[classes..], &fd[classes..], 1e-3, 1e-6);
    let mut first = vec![-e64 / classes as f64 / 7.0; classes];
    first[3] -= (1.0 - e64) / 7.0;
    let top = (0..classes)
        .max_by(|&a, &b| l64[a].total_cmp(&l64[b]))
        .unwrap();
    first[top] += 1.0 / 7.0;
    assert_close("dlogits of a huge row", &got[..classes], &first, 1e-5, 1e-6);
}

#[test]
fn padded_targets_change_neither_the_loss_nor_any_gradient() {
    let ctx = ctx();
    const IGN: u32 = u32::MAX;
    let (rows, classes) = (6, 4);
    let mut rng = Rng::new(12);
    let logits = rng.vec(rows * classes);
    let targets = vec![1, 3, IGN, 0, IGN, 2];
    let mut other = logits.clone();
    // Anything at the padded rows: other values, even NaN and inf.
    other[2 * classes..3 * classes].copy_from_slice(&[f32::NAN, 1e30, -1e30, 5.0]);
    other[4 * classes..5 * classes].copy_from_slice(&[f32::INFINITY, 0.0, 0.0, 0.0]);
    let run = |logits: &[f32]| {
        let mut rec = Recorder::new(ctx, "ce");
        let lt = Tensor::from_slice(ctx, &[rows, classes], logits).unwrap();
        let out = cross_entropy::forward(&mut rec, &lt, &targets, Some(IGN)).unwrap();
        rec.submit();
        (out.loss.to_vec().unwrap(), out.dlogits.to_vec().unwrap())
    };
    let (loss_a, grad_a) = run(&logits);
    let (loss_b, grad_b) = run(&other);
    assert_eq!(loss_a, loss_b);
    assert_eq!(grad_a, grad_b);
    assert!(grad_a[2 * classes..3 * classes].iter().all(|&g| g == 0.0));

    let mut rec = Recorder::new(ctx, "bad");
    let lt = Tensor::from_slice(ctx, &[rows, classes], &logits).unwrap();
    let err = cross_entropy::forward(&mut rec, &lt, &[1, 4, 0, 0, 0, 0], Some(IGN)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::IndexOutOfRange {
                index: 1,
                value: 4,
                bound: 4,
                ..
            }
        ),
        "{err}"
    );
    let err = cross_entropy::forward(&mut rec, &lt, &[IGN; 6], Some(IGN)).unwrap_err();
    assert!(matches!(err, Error::Empty { .. }), "{err}");
    for eps in [-0.1, 1.5, f32::NAN] {
        let err =
            cross_entropy::forward_smoothed(&mut rec, &lt, &targets, Some(IGN), eps).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{eps}: {err}");
    }
}

#[test]
fn dropout_masks_scale_and_repeat_with_the_seed() {
    let ctx = ctx();
    let n = 20_000;
    let x: Vec<f32> = (0..n).map(|i| 1.0 + i as f32 * 1e-4).collect();
    let xt = Tensor::from_slice(ctx, &[n], &x).unwrap();
    let run = |p: f32, seed: u32| {
        let out = Tensor::empty(ctx, &[n], rnn_wgpu::DType::F32).unwrap();
        let mut rec = Recorder::new(ctx, "dropout");
        dropout::apply(&mut rec, &out, &xt, p, seed).unwrap();
        rec.submit();
        out.to_vec().unwrap()
    };
    let y = run(0.3, 7);
    let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
    assert!((dropped - 0.3).abs() < 0.02, "dropped {dropped}");
    for (a, b) in x.iter().zip(&y) {
        assert!(
            *b == 0.0 || (b - a / 0.7).abs() <= 1e-6 * b.abs(),
            "{a} -> {b}"
        );
    }
    assert_eq!(run(0.3, 7), y, "same seed, same mask");
    assert_ne!(run(0.3, 8), y, "another seed, another mask");
    assert_eq!(run(0.0, 7), x);
}

/// f16 storage: the embedding's rows are the table's rounded to f16 (the table
/// and its gradient stay f32), and dropout of f16 x keeps the f32 mask, its output
/// f16 and x / (1 − p) rounded once.
#[test]
fn embedding_rows_and_dropout_in_f16_storage() {
    let ctx = ctx();
    let emb = Embedding::new(ctx, 11, 5, Some(0), 3).unwrap();
    if !ctx.has_f16() {
        let err = emb.with_storage(rnn_wgpu::DType::F16).unwrap_err();
        assert!(
            matches!(err, rnn_wgpu::Error::FeatureMissing { .. }),
            "{err}"
        );
        return;
    }
    let emb = emb.with_storage(rnn_wgpu::DType::F16).unwrap();
    let ids: Vec<u32> = vec![3, 0, 7, 3, 10, 9];
    let mut rec = Recorder::new(ctx, "embedding f16");
    let (out, _) = emb.forward(&mut rec, &ids, &[2, 3]).unwrap();
    rec.submit();
    assert_eq!(out.dtype(), rnn_wgpu::DType::F16);
    let table = emb.weight().to_vec().unwrap();
    let want: Vec<f64> = ids
        .iter()
        .flat_map(|&id| table[id as usize * 5..][..5].to_vec())
        .map(|x| half::f16::from_f32(x).to_f32() as f64)
        .collect();
    assert_close("f16 rows", &out.to_vec().unwrap(), &want, 0.0, 0.0);

    let n = 4001;
    let x: Vec<f32> = (0..n).map(|i| 1.0 + i as f32 * 1e-3).collect();
    let run = |dtype| {
        let xt = Tensor::empty(ctx, &[n], dtype).unwrap();
        xt.write(&x).unwrap();
        let out = Tensor::empty(ctx, &[n], dtype).unwrap();
        let mut rec = Recorder::new(ctx, "dropout");
        dropout::apply(&mut rec, &out, &xt, 0.3, 7).unwrap();
        rec.submit();
        out.to_vec().unwrap()
    };
    let (y32, y16) = (run(rnn_wgpu::DType::F32), run(rnn_wgpu::DType::F16));
    for (i, (a, b)) in y32.iter().zip(&y16).enumerate() {
        assert_eq!(*a == 0.0, *b == 0.0, "element {i}: the same mask");
        assert!((a - b).abs() <= 1e-3 * a.abs(), "element {i}: {a} vs {b}");
    }
}

/// One parameter vector updated by the GPU optimizer and by an f64 transcription
/// of torch.optim's update rules; an odd length (one element at a time, one
/// partial sum of squares) and a long multiple of 4 (4 at a time, several).
fn check_optimizer(cfg: OptimConfig, steps: usize) {
    for n in [37, 4400] {
        check_optimizer_n(cfg, steps, n);
    }
}

fn check_optimizer_n(cfg: OptimConfig, steps: usize, n: usize) {
    let ctx = ctx();
    let mut rng = Rng::new(13);
    let w0 = rng.vec(n);
    let grads: Vec<Vec<f32>> = (0..steps)
        .map(|_| rng.vec(n).iter().map(|g| g * 3.0).collect())
        .collect();
    let param = Param {
        value: Tensor::from_slice(ctx, &[n], &w0).unwrap(),
        grad: Tensor::zeros(ctx, &[n]).unwrap(),
    };
    let mut opt = Optimizer::new(ctx, cfg, vec![param.clone()]).unwrap();
    let mut w = to_f64(&w0);
    let (mut m, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
    for (s, g) in grads.iter().enumerate() {
        param.grad.write(g).unwrap();
        let mut rec = Recorder::new(ctx, "opt");
        opt.step(&mut rec).unwrap();
        rec.submit();

        let step = s as i32 + 1;
        let lr = cfg.lr_at(step as u32) as f64;
        let mut g = to_f64(g);
        let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        if let Some(max) = cfg.max_norm {
            let scale = (max as f64 / (norm + 1e-6)).min(1.0);
            g.iter_mut().for_each(|x| *x *= scale);
        }
        if let Some(c) = cfg.clip_value {
            g.iter_mut().for_each(|x| *x = x.clamp(-c as f64, c as f64));
        }
        let wd = cfg.weight_decay as f64;
        for i in 0..n {
            match cfg.method {
                Method::Sgd { momentum } => {
                    let d = g[i] + wd * w[i];
                    m[i] = if step == 1 {
                        d
                    } else {
                        momentum as f64 * m[i] + d
                    };
                    w[i] -= lr * if momentum == 0.0 { d } else { m[i] };
                }
                Method::Adam { beta1, beta2, eps } | Method::AdamW { beta1, beta2, eps } => {
                    let (b1, b2) = (beta1 as f64, beta2 as f64);
                    let mut d = g[i];
                    if matches!(cfg.method, Method::AdamW { .. }) {
                        w[i] -= lr * wd * w[i];
                    } else {
                        d += wd * w[i];
                    }
                    m[i] = b1 * m[i] + (1.0 - b1) * d;
                    v[i] = b2 * v[i] + (1.0 - b2) * d * d;
                    let mhat = m[i] / (1.0 - b1.powi(step));
                    let vhat = v[i] / (1.0 - b2.powi(step));
                    w[i] -= lr * mhat / (vhat.sqrt() + eps as f64);
                }
                other => panic!("no reference for {other:?}"),
            }
        }
        let stats = opt.stats().to_vec().unwrap();
        assert_close("grad norm", &stats[..1], &[norm], 1e-5, 1e-6);
    }
    assert_close(
        &format!("{cfg:?}: weights"),
        &param.value.to_vec().unwrap(),
        &w,
        1e-5,
        1e-6,
    );
}

#[test]
fn optimizers_follow_torch_update_rules() {
    let base = |method, lr| OptimConfig::new(method, lr);
    check_optimizer(base(Method::Sgd { momentum: 0.0 }, 0.1), 3);
    check_optimizer(
        base(Method::Sgd { momentum: 0.9 }, 0.1)
            .with_weight_decay(0.01)
            .with_max_norm(Some(1.0)),
        4,
    );
    check_optimizer(
        base(Method::ADAM, 0.01)
            .with_weight_decay(0.01)
            .with_clip_value(Some(2.0)),
        4,
    );
    check_optimizer(
        base(Method::ADAMW, 0.01)
            .with_weight_decay(0.1)
            .with_max_norm(Some(0.5))
            .with_warmup(2)
            .with_schedule(rnn_wgpu::train::Schedule::Cosine {
                total: 3,
                min_lr: 0.001,
            }),
        5,
    );
}

/// A rate set between steps is the next step's base rate; a bad one is refused
/// and changes nothing.
#[test]
fn set_lr_changes_the_rate_of_the_next_steps() {
    let ctx = ctx();
    let param = Param {
        value: Tensor::from_slice(ctx, &[2], &[1.0, -2.0]).unwrap(),
        grad: Tensor::from_slice(ctx, &[2], &[0.5, 4.0]).unwrap(),
    };
    let cfg = OptimConfig::new(Method::Sgd { momentum: 0.0 }, 0.1);
    let mut opt = Optimizer::new(ctx, cfg, vec![param.clone()]).unwrap();
    let step = |opt: &mut Optimizer| {
        let mut rec = Recorder::new(ctx, "opt");
        opt.step(&mut rec).unwrap();
        rec.submit();
    };
    step(&mut opt);
    opt.set_lr(0.25).unwrap();
    for bad in [f32::NAN, -1.0, f32::INFINITY] {
        let err = opt.set_lr(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    }
    assert_eq!(opt.config().lr, 0.25);
    step(&mut opt);
    let want = [1.0 - 0.35 * 0.5, -2.0 - 0.35 * 4.0];
    assert_close("weights", &param.value.to_vec().unwrap(), &want, 1e-6, 1e-6);
}

#[test]
fn schedules_give_the_documented_rates() {
    use rnn_wgpu::train::Schedule;
    let cfg = |schedule, warmup| {
        OptimConfig::new(Method::ADAM, 1.0)
            .with_schedule(schedule)
            .with_warmup(warmup)
    };
    let step = cfg(
        Schedule::Step {
            every: 2,
            gamma: 0.5,
        },
        0,
    );
    let rates: Vec<f32> = (1..=5).map(|s| step.lr_at(s)).collect();
    assert_eq!(rates, [1.0, 1.0, 0.5, 0.5, 0.25]);
    let warm = cfg(Schedule::Constant, 4);
    assert_eq!(warm.lr_at(1), 0.25);
    assert_eq!(warm.lr_at(4), 1.0);
    assert_eq!(warm.lr_at(5), 1.0);
    let cos = cfg(
        Schedule::Cosine {
            total: 4,
            min_lr: 0.0,
        },
        0,
    );
    assert_eq!(cos.lr_at(1), 1.0);
    assert!((cos.lr_at(3) - 0.5).abs() < 1e-6);
    assert!(cos.lr_at(5).abs() < 1e-6 && cos.lr_at(9).abs() < 1e-6);
}

#[test]
fn a_non_finite_gradient_leaves_the_weights_and_state_untouched() {
    let ctx = ctx();
    let w0 = vec![0.5f32, -1.0, 2.0];
    let param = Param {
        value: Tensor::from_slice(ctx, &[3], &w0).unwrap(),
        grad: Tensor::from_slice(ctx, &[3], &[0.1, f32::NAN, 0.2]).unwrap(),
    };
    let mut opt = Optimizer::new(
        ctx,
        OptimConfig::new(Method::ADAM, 0.1),
        vec![param.clone()],
    )
    .unwrap();
    let mut rec = Recorder::new(ctx, "nan");
    opt.step(&mut rec).unwrap();
    rec.submit();
    assert_eq!(param.value.to_vec().unwrap(), w0);
    assert_eq!(
        opt.stats().to_vec().unwrap()[2],
        0.0,
        "reported as not finite"
    );
    let (state, _) = opt.state();
    assert!(state
        .iter()
        .all(|(_, t)| t.to_vec().unwrap().iter().all(|&x| x == 0.0)));
}

#[test]
fn mse_matches_reference_and_finite_differences() {
    let ctx = ctx();
    let n = 150; // more elements than lanes
    let mut rng = Rng::new(14);
    let (y, t) = (rng.vec(n), rng.vec(n));
    let mut rec = Recorder::new(ctx, "mse");
    let yt = Tensor::from_slice(ctx, &[10, 15], &y).unwrap();
    let tt = Tensor::from_slice(ctx, &[10, 15], &t).unwrap();
    let out = rnn_wgpu::ops::mse::forward(&mut rec, &yt, &tt).unwrap();
    rec.submit();
    let t64 = to_f64(&t);
    let loss = |y: &[f64]| {
        y.iter()
            .zip(&t64)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            / n as f64
    };
    let mut y64 = to_f64(&y);
    assert_close(
        "loss",
        &out.loss.to_vec().unwrap(),
        &[loss(&y64)],
        RTOL,
        ATOL,
    );
    let fd = numeric_grad(&mut y64, loss);
    assert_close("dy", &out.dlogits.to_vec().unwrap(), &fd, RTOL, 1e-7);
    let mut rec = Recorder::new(ctx, "bad");
    let err = rnn_wgpu::ops::mse::forward(&mut rec, &yt, &Tensor::zeros(ctx, &[15, 10]).unwrap())
        .unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { what: "target", .. }),
        "{err}"
    );
}

#[test]
fn dropout_layer_is_the_identity_in_eval_and_masks_its_backward_alike() {
    let ctx = ctx();
    let layer = rnn_wgpu::nn::Dropout::new(0.5, 3);
    let x = Tensor::from_slice(ctx, &[4, 64], &[1.0; 256]).unwrap();
    let dy = Tensor::from_slice(ctx, &[4, 64], &[3.0; 256]).unwrap();
    let mut rec = Recorder::new(ctx, "dropout");
    let (eval, _) = layer.forward(&mut rec, &x, false).unwrap();
    let (y1, m1) = layer.forward(&mut rec, &x, true).unwrap();
    let (y2, _) = layer.forward(&mut rec, &x, true).unwrap();
    let dx = layer.backward(&mut rec, &dy, m1).unwrap();
    rec.submit();
    assert_eq!(eval.to_vec().unwrap(), x.to_vec().unwrap());
    let (y1, y2, dx) = (
        y1.to_vec().unwrap(),
        y2.to_vec().unwrap(),
        dx.to_vec().unwrap(),
    );
    assert_ne!(y1, y2, "each call draws a new mask");
    for (y, d) in y1.iter().zip(&dx) {
        assert!(
            (*y == 0.0 && *d == 0.0) || (*y == 2.0 && *d == 6.0),
            "{y} {d}"
        );
    }
}

#[test]
fn argmax_picks_the_largest_and_the_lowest_index_on_ties() {
    let ctx = ctx();
    let (rows, classes) = (9, 70);
    let mut x = Rng::new(15).vec(rows * classes);
    x[classes..2 * classes].fill(0.5); // all tied: index 0
    x[2 * classes + 69] = 9.0; // past the first 64 lanes
    x[3 * classes + 5] = 3.0;
    x[3 * classes + 40] = 3.0; // tie: 5
    x[4 * classes..5 * classes].fill(f32::NEG_INFINITY);
    x[5 * classes + 7] = f32::NAN; // NaN never wins
    x[6 * classes..7 * classes].fill(-f32::MAX);
    x[6 * classes + 33] = -3.401e38; // below a finite stand-in for -inf such as -3.4e38
    let mut rec = Recorder::new(ctx, "argmax");
    let xt = Tensor::from_slice(ctx, &[3, 3, classes], &x).unwrap();
    let out = rnn_wgpu::ops::argmax::forward(&mut rec, &xt).unwrap();
    rec.submit();
    assert_eq!(out.shape(), &[3, 3]);
    let want: Vec<f32> = (0..rows)
        .map(|r| {
            let row = &x[r * classes..(r + 1) * classes];
            let mut best = 0;
            for (k, &v) in row.iter().enumerate() {
                if v > row[best] || row[best].is_nan() && !v.is_nan() {
                    best = k;
                }
            }
            best as f32
        })
        .collect();
    assert_eq!(out.to_vec().unwrap(), want);
    assert_eq!(want[1], 0.0);
    assert_eq!(want[2], 69.0);
    assert_eq!(want[3], 5.0);
    assert_eq!(want[4], 0.0);
    assert_eq!(want[6], 33.0);
}

#[test]
fn elementwise_activations_add_concat_and_split_match_references() {
    use rnn_wgpu::ops::elementwise::{self, Activation, Block};
    let ctx = ctx();
    let mut rng = Rng::new(41);
    // tanh over more than one row of 65535 workgroups would be slow here; 300
    // elements cover partial workgroups.
    let x: Vec<f32> = rng.vec(300).iter().map(|v| v * 4.0).collect();
    let dy = rng.vec(300);
    let xt = Tensor::from_slice(ctx, &[3, 100], &x).unwrap();
    let dyt = Tensor::from_slice(ctx, &[3, 100], &dy).unwrap();
    let mut rec = Recorder::new(ctx, "tanh");
    let y = elementwise::activate(&mut rec, Activation::Tanh, &xt).unwrap();
    let dx = elementwise::activate_backward(&mut rec, Activation::Tanh, &dyt, &y).unwrap();
    let r = elementwise::activate(&mut rec, Activation::Relu, &xt).unwrap();
    let dr = elementwise::activate_backward(&mut rec, Activation::Relu, &dyt, &r).unwrap();
    rec.submit();
    let x64 = to_f64(&x);
    let want: Vec<f64> = x64.iter().map(|v| v.tanh()).collect();
    assert_close("tanh", &y.to_vec().unwrap(), &want, RTOL, ATOL);
    // d/dx Σ dy·tanh(x), by central differences.
    let dy64 = to_f64(&dy);
    let mut xs = x64.clone();
    let fd = numeric_grad(&mut xs, |v| {
        v.iter().zip(&dy64).map(|(a, d)| a.tanh() * d).sum()
    });
    assert_close("tanh backward", &dx.to_vec().unwrap(), &fd, RTOL, ATOL);
    let want: Vec<f64> = x64.iter().map(|v| v.max(0.0)).collect();
    assert_close("relu", &r.to_vec().unwrap(), &want, 0.0, 0.0);
    let fd = numeric_grad(&mut xs, |v| {
        v.iter().zip(&dy64).map(|(a, d)| a.max(0.0) * d).sum()
    });
    assert_close("relu backward", &dr.to_vec().unwrap(), &fd, RTOL, ATOL);

    // concat of blocks inside larger tensors, split back, add at offsets.
    let (rows, a, b) = (5, 3, 4);
    let xa = rng.vec(2 + rows * a);
    let yb = rng.vec(7 + rows * b);
    let xat = Tensor::from_slice(ctx, &[xa.len()], &xa).unwrap();
    let ybt = Tensor::from_slice(ctx, &[yb.len()], &yb).unwrap();
    let mut rec = Recorder::new(ctx, "concat");
    let xb = Block {
        tensor: &xat,
        offset: 2,
        width: a,
    };
    let yb_block = Block {
        tensor: &ybt,
        offset: 7,
        width: b,
    };
    let cat = elementwise::concat(&mut rec, rows, xb, yb_block).unwrap();
    let (back_x, back_y) = elementwise::split(&mut rec, rows, Block::whole(&cat), a, b).unwrap();
    let acc = Tensor::from_slice(ctx, &[2 + rows * b], &vec![1.0; 2 + rows * b]).unwrap();
    elementwise::add(&mut rec, &acc, 2, &ybt, 7, rows * b).unwrap();
    rec.submit();
    assert_eq!(cat.shape(), &[rows, a + b]);
    let want: Vec<f32> = (0..rows)
        .flat_map(|r| {
            let xs = &xa[2 + r * a..2 + (r + 1) * a];
            let ys = &yb[7 + r * b..7 + (r + 1) * b];
            xs.iter().chain(ys).copied().collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(cat.to_vec().unwrap(), want);
    assert_eq!(back_x.to_vec().unwrap(), &xa[2..]);
    assert_eq!(back_y.to_vec().unwrap(), &yb[7..]);
    let mut want_acc = vec![1.0f32; 2 + rows * b];
    for i in 0..rows * b {
        want_acc[2 + i] += yb[7 + i];
    }
    assert_eq!(acc.to_vec().unwrap(), want_acc);

    // A block past its tensor, a width that does not add up, and aliasing are refused.
    let mut rec = Recorder::new(ctx, "bad elementwise");
    let past = Block {
        tensor: &xat,
        offset: 3,
        width: a,
    };
    assert!(matches!(
        elementwise::concat(&mut rec, rows, past, yb_block),
        Err(Error::ViewOutOfBounds { .. })
    ));
    assert!(matches!(
        elementwise::split(&mut rec, rows, Block::whole(&cat), a, b + 1),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        elementwise::add(&mut rec, &acc, 0, &acc, 1, 3),
        Err(Error::Aliasing { .. })
    ));
    assert_eq!(rec.dispatches(), 0);
}

/// Layer norm of each row of `x` `[rows, d]` in f64.
fn reference_layer_norm(x: &[f64], gamma: &[f64], beta: &[f64], d: usize) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|row| {
            let mu = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d as f64;
            let rstd = 1.0 / (var + 1e-5).sqrt();
            row.iter()
                .zip(gamma.iter().zip(beta))
                .map(move |(v, (g, b))| (v - mu) * rstd * g + b)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn layer_norm_matches_reference_and_finite_differences() {
    use rnn_wgpu::nn::LayerNorm;
    let ctx = ctx();
    // 70 features: rows wider than one workgroup of 64.
    let (rows, d) = (4, 70);
    let mut rng = Rng::new(23);
    let x: Vec<f32> = rng.vec(rows * d).iter().map(|v| 3.0 * v + 1.0).collect();
    let dy = rng.vec(rows * d);
    let ln = LayerNorm::new(ctx, d).unwrap();
    let (gamma, beta): (Vec<f32>, Vec<f32>) = (rng.vec(d), rng.vec(d));
    ln.params()[0].value.write(&gamma).unwrap();
    ln.params()[1].value.write(&beta).unwrap();
    let xt = Tensor::from_slice(ctx, &[2, 2, d], &x).unwrap();
    let dyt = Tensor::from_slice(ctx, &[2, 2, d], &dy).unwrap();
    let mut rec = Recorder::new(ctx, "layer norm");
    ln.zero_grad(&mut rec).unwrap();
    let (y, saved) = ln.forward(&mut rec, &xt).unwrap();
    let dx = ln.backward(&mut rec, &saved, &dyt).unwrap();
    rec.submit();
    let (x64, g64, b64, dy64) = (to_f64(&x), to_f64(&gamma), to_f64(&beta), to_f64(&dy));
    let want = reference_layer_norm(&x64, &g64, &b64, d);
    assert_close("layer norm", &y.to_vec().unwrap(), &want, RTOL, ATOL);
    let loss = |x: &[f64], g: &[f64], b: &[f64]| dot(&reference_layer_norm(x, g, b, d), &dy64);
    let mut xs = x64.clone();
    let fd_x = numeric_grad(&mut xs, |v| loss(v, &g64, &b64));
    assert_close("layer norm dx", &dx.to_vec().unwrap(), &fd_x, 1e-3, 1e-4);
    let mut gs = g64.clone();
    let fd_g = numeric_grad(&mut gs, |v| loss(&x64, v, &b64));
    let grads: Vec<Vec<f32>> = ln
        .params()
        .iter()
        .map(|p| p.grad.to_vec().unwrap())
        .collect();
    assert_close("layer norm dγ", &grads[0], &fd_g, 1e-3, 1e-4);
    let mut bs = b64.clone();
    let fd_b = numeric_grad(&mut bs, |v| loss(&x64, &g64, v));
    assert_close("layer norm dβ", &grads[1], &fd_b, 1e-3, 1e-4);

    let mut rec = Recorder::new(ctx, "bad layer norm");
    let wrong = Tensor::zeros(ctx, &[2, d + 1]).unwrap();
    assert!(matches!(
        ln.forward(&mut rec, &wrong),
        Err(Error::ShapeMismatch { .. })
    ));
    assert_eq!(rec.dispatches(), 0);
}

#[test]
fn sampling_inverts_the_tempered_softmax() {
    let ctx = ctx();
    // 150 classes: chunks of 3 per lane, the last lanes empty.
    let (rows, classes) = (40, 150);
    let mut rng = Rng::new(77);
    let x: Vec<f32> = rng.vec(rows * classes).iter().map(|v| 4.0 * v).collect();
    let u: Vec<f32> = rng.vec(rows).iter().map(|v| 0.5 * (v + 1.0)).collect();
    for temperature in [1.0f32, 0.5, 2.0] {
        let xt = Tensor::from_slice(ctx, &[rows, classes], &x).unwrap();
        let ut = Tensor::from_slice(ctx, &[rows], &u).unwrap();
        let mut rec = Recorder::new(ctx, "sample");
        let out = sample::forward(&mut rec, &xt, &ut, &Sampling::at(temperature)).unwrap();
        rec.submit();
        let got = out.to_vec().unwrap();
        for r in 0..rows {
            let row = &x[r * classes..(r + 1) * classes];
            let m = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
            let e: Vec<f64> = row
                .iter()
                .map(|&v| ((v as f64 - m) / temperature as f64).exp())
                .collect();
            let total: f64 = e.iter().sum();
            let mut acc = 0.0;
            let want = e
                .iter()
                .position(|v| {
                    acc += v;
                    acc > u[r] as f64 * total
                })
                .unwrap();
            assert_eq!(got[r] as usize, want, "T={temperature} row {r} u={}", u[r]);
        }
    }
    // A cold temperature picks the largest logit; bad temperatures are refused.
    let xt = Tensor::from_slice(ctx, &[1, 3], &[0.0, 2.0, 1.0]).unwrap();
    let ut = Tensor::from_slice(ctx, &[1], &[0.999]).unwrap();
    let mut rec = Recorder::new(ctx, "sample");
    let out = sample::forward(&mut rec, &xt, &ut, &Sampling::at(0.01)).unwrap();
    for t in [0.0, -1.0, f32::NAN] {
        assert!(sample::forward(&mut rec, &xt, &ut, &Sampling::at(t)).is_err());
    }
    rec.submit();
    assert_eq!(out.to_vec().unwrap(), [1.0]);
}

/// Draws from the host's f64 reference of top-k then top-p sampling: the kept
/// classes are those at or above the k-th largest logit, then those at or above
/// the smallest logit of the shortest prefix (largest first) holding `p` of the
/// kept mass; the draw inverts their cumulative distribution at `u`.
fn reference_draw(row: &[f32], how: &Sampling, u: f32) -> usize {
    let t = how.temperature as f64;
    let m = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
    let mass = |v: f32| ((v as f64 - m) / t).exp();
    let mut sorted: Vec<f32> = row.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut floor = match how.top_k {
        Some(k) if k < row.len() => sorted[k - 1],
        _ => f32::MIN,
    };
    if let Some(p) = how.top_p {
        let kept: Vec<f32> = sorted.iter().copied().filter(|&v| v >= floor).collect();
        let total: f64 = kept.iter().map(|&v| mass(v)).sum();
        let mut acc = 0.0;
        for &v in &kept {
            acc += mass(v);
            if acc >= p as f64 * total {
                floor = v;
                break;
            }
        }
    }
    let e: Vec<f64> = row
        .iter()
        .map(|&v| if v >= floor { mass(v) } else { 0.0 })
        .collect();
    let total: f64 = e.iter().sum();
    let mut acc = 0.0;
    e.iter()
        .position(|&v| {
            acc += v;
            acc > u as f64 * total
        })
        .unwrap()
}

#[test]
fn top_k_and_top_p_sampling_keep_the_right_classes() {
    let ctx = ctx();
    let classes = 150;
    let mut rng = Rng::new(78);
    let mut cases = vec![];
    for r in 0..24 {
        let x: Vec<f32> = rng.vec(classes).iter().map(|v| 3.0 * v).collect();
        let u = 0.5 * (rng.uniform() + 1.0);
        let temperature = [1.0f32, 0.7, 1.6][r % 3];
        // p halfway between two prefix masses (largest first), so that f32 and
        // f64 sums agree on the cut.
        let mut sorted = x.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let k = [1usize, 5, 40, 150, 1000][r % 5];
        let kept = &sorted[..k.min(classes)];
        let m = kept[0] as f64;
        let masses: Vec<f64> = kept
            .iter()
            .map(|&v| ((v as f64 - m) / temperature as f64).exp())
            .collect();
        let total: f64 = masses.iter().sum();
        let cut = 1 + (rng.next_u64() % kept.len() as u64) as usize;
        let below: f64 = masses[..cut - 1].iter().sum();
        let p = ((below + masses[cut - 1] / 2.0) / total) as f32;
        let how = Sampling {
            temperature,
            top_k: (r % 2 == 0).then_some(k),
            top_p: (r % 4 < 3).then_some(p),
        };
        cases.push((x, u, how));
    }
    // Ties at the k-th largest logit are all kept: with k = 2 the three 1.0s
    // share the mass, and u = 0.99 lands on the last of them.
    cases.push((
        vec![0.5, 1.0, 3.0, 1.0, -2.0, 1.0],
        0.99,
        Sampling {
            temperature: 1.0,
            top_k: Some(2),
            top_p: None,
        },
    ));
    let mut rec = Recorder::new(ctx, "top-k, top-p");
    let outs: Vec<Tensor> = cases
        .iter()
        .map(|(x, u, how)| {
            let xt = Tensor::from_slice(ctx, &[1, x.len()], x).unwrap();
            let ut = Tensor::from_slice(ctx, &[1], &[*u]).unwrap();
            sample::forward(&mut rec, &xt, &ut, how).unwrap()
        })
        .collect();
    rec.submit();
    for (i, ((x, u, how), out)) in cases.iter().zip(&outs).enumerate() {
        let got = out.to_vec_u32().unwrap()[0] as usize;
        assert_eq!(
            got,
            reference_draw(x, how, *u),
            "case {i}: {how:?}, u = {u}"
        );
    }
    assert_eq!(outs.last().unwrap().to_vec_u32().unwrap(), [5]);

    let xt = Tensor::from_slice(ctx, &[1, 3], &[0.0, 2.0, 1.0]).unwrap();
    let ut = Tensor::from_slice(ctx, &[1], &[0.5]).unwrap();
    let mut rec = Recorder::new(ctx, "bad sampling");
    for how in [
        Sampling {
            top_k: Some(0),
            ..Sampling::at(1.0)
        },
        Sampling {
            top_p: Some(0.0),
            ..Sampling::at(1.0)
        },
        Sampling {
            top_p: Some(1.5),
            ..Sampling::at(1.0)
        },
        Sampling {
            top_p: Some(f32::NAN),
            ..Sampling::at(1.0)
        },
    ] {
        let err = sample::forward(&mut rec, &xt, &ut, &how).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { .. }),
            "{how:?}: {err:?}"
        );
    }
    assert_eq!(rec.dispatches(), 0);
}
