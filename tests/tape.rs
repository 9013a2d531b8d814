//! The tape's tensor ops: forward against an f64 reference, backward (through
//! the tape's replay) against central differences of that reference; a model
//! composed on the tape against finite differences of its loss.

mod common;

use common::recurrent_ref::numeric_grad;
use common::{assert_close, ctx, fd_along, to_f64, Rng};
use rnn_wgpu::nn::recurrent::{Config, Mode};
use rnn_wgpu::nn::{Attention, Linear, Module, Param, Recurrent, Score};
use rnn_wgpu::tape::GradCheck;
use rnn_wgpu::{Error, Result, Tape, Tensor, Var};

/// f32 kernels against f64 references on small sums.
const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

/// One input of an op under test: its shape and values.
struct Input {
    shape: Vec<usize>,
    values: Vec<f32>,
}

fn input(rng: &mut Rng, shape: &[usize]) -> Input {
    Input {
        shape: shape.to_vec(),
        values: rng.vec(shape.iter().product()),
    }
}

/// Runs `op` on a training tape over `inputs` (each a parameter, so that its
/// gradient can be read back) and replays the tape from a random upstream
/// gradient; checks the output against `reference` and every input's gradient
/// against central differences of `reference` (of Σ out·dout).
fn check(
    what: &str,
    inputs: &[Input],
    op: impl Fn(&mut Tape, &[Var]) -> Result<Var>,
    reference: impl Fn(&[Vec<f64>]) -> Vec<f64>,
) {
    let ctx = ctx();
    let params: Vec<Param> = inputs
        .iter()
        .map(|i| Param::new(Tensor::from_slice(ctx, &i.shape, &i.values).unwrap()).unwrap())
        .collect();
    let mut tape = Tape::train(ctx, what);
    let vars: Vec<Var> = params.iter().map(|p| tape.param(p)).collect();
    let out = op(&mut tape, &vars).unwrap();
    let mut rng = Rng::new(what.len() as u64);
    let dout = rng.vec(out.numel());
    let dout_t = Tensor::from_slice(ctx, out.shape(), &dout).unwrap();
    tape.backward_with(&out, &dout_t).unwrap();
    tape.into_recorder().submit();

    let mut x: Vec<Vec<f64>> = inputs.iter().map(|i| to_f64(&i.values)).collect();
    let want = reference(&x);
    assert_close(
        &format!("{what}: forward"),
        &out.to_vec().unwrap(),
        &want,
        RTOL,
        ATOL,
    );
    let dout = to_f64(&dout);
    for (k, p) in params.iter().enumerate() {
        let mut v = x[k].clone();
        let fd = numeric_grad(&mut v, |v| {
            x[k] = v.to_vec();
            reference(&x).iter().zip(&dout).map(|(o, d)| o * d).sum()
        });
        x[k] = v;
        assert_close(
            &format!("{what}: gradient of input {k}"),
            &p.grad.to_vec().unwrap(),
            &fd,
            RTOL,
            ATOL,
        );
    }
}

/// `[B?, M, K]·[B?, K, N]` (or `[B?, N, K]` transposed) in f64.
fn matmul_ref(
    a: &[f64],
    b: &[f64],
    dims: (usize, usize, usize, usize),
    b_t: bool,
    shared: bool,
) -> Vec<f64> {
    let (batch, m, k, n) = dims;
    let mut out = vec![0.0; batch * m * n];
    for z in 0..batch {
        let bz = if shared { 0 } else { z * k * n };
        for i in 0..m {
            for j in 0..n {
                out[(z * m + i) * n + j] = (0..k)
                    .map(|l| {
                        let bv = if b_t {
                            b[bz + j * k + l]
                        } else {
                            b[bz + l * n + j]
                        };
                        a[(z * m + i) * k + l] * bv
                    })
                    .sum();
            }
        }
    }
    out
}

#[test]
fn matmul_in_every_layout() {
    let mut rng = Rng::new(1);
    for (what, a, b, b_t, shared, batch) in [
        ("matmul 2d", vec![3, 5], vec![5, 4], false, true, 1),
        (
            "matmul batched",
            vec![2, 3, 5],
            vec![2, 5, 4],
            false,
            false,
            2,
        ),
        ("matmul shared b", vec![2, 3, 5], vec![5, 4], false, true, 2),
        (
            "matmul_t shared b",
            vec![2, 3, 5],
            vec![4, 5],
            true,
            true,
            2,
        ),
        (
            "matmul_t batched",
            vec![2, 3, 5],
            vec![2, 4, 5],
            true,
            false,
            2,
        ),
    ] {
        let n = if b_t { b[b.len() - 2] } else { b[b.len() - 1] };
        let inputs = [input(&mut rng, &a), input(&mut rng, &b)];
        check(
            what,
            &inputs,
            |t, v| {
                if b_t {
                    t.matmul_t(&v[0], &v[1])
                } else {
                    t.matmul(&v[0], &v[1])
                }
            },
            |x| matmul_ref(&x[0], &x[1], (batch, 3, 5, n), b_t, shared),
        );
    }
}

#[test]
fn elementwise_ops_and_a_value_used_twice() {
    let mut rng = Rng::new(2);
    let two = || {
        let mut rng = Rng::new(3);
        [input(&mut rng, &[3, 7]), input(&mut rng, &[3, 7])]
    };
    let zip = |x: &[Vec<f64>], f: fn(f64, f64) -> f64| -> Vec<f64> {
        x[0].iter().zip(&x[1]).map(|(&a, &b)| f(a, b)).collect()
    };
    check(
        "add",
        &two(),
        |t, v| t.add(&v[0], &v[1]),
        |x| zip(x, |a, b| a + b),
    );
    check(
        "mul",
        &two(),
        |t, v| t.mul(&v[0], &v[1]),
        |x| zip(x, |a, b| a * b),
    );
    let one = [input(&mut rng, &[5, 3])];
    check(
        "scale",
        &one,
        |t, v| t.scale(&v[0], -1.7),
        |x| x[0].iter().map(|a| -1.7 * a).collect(),
    );
    check(
        "tanh",
        &one,
        |t, v| t.tanh(&v[0]),
        |x| x[0].iter().map(|a| a.tanh()).collect(),
    );
    check(
        "relu",
        &one,
        |t, v| t.relu(&v[0]),
        |x| x[0].iter().map(|a| a.max(0.0)).collect(),
    );
    // x·x + x: three uses of one value, whose gradients add up.
    check(
        "x·x + x",
        &one,
        |t, v| {
            let sq = t.mul(&v[0], &v[0])?;
            t.add(&sq, &v[0])
        },
        |x| x[0].iter().map(|a| a * a + a).collect(),
    );
    check(
        "reshape",
        &one,
        |t, v| {
            let r = t.reshape(&v[0], &[3, 5])?;
            t.scale(&r, 2.0)
        },
        |x| x[0].iter().map(|a| 2.0 * a).collect(),
    );
}

/// Sum (or mean) over dimension `dim` of `[O, N, I]`-shaped x, row o taking its
/// first `len[o]` positions.
fn reduce_ref(x: &[f64], (o, n, i): (usize, usize, usize), len: &[usize], mean: bool) -> Vec<f64> {
    let mut out = vec![0.0; o * i];
    for a in 0..o {
        let l = len[a];
        for c in 0..i {
            let s: f64 = (0..l).map(|k| x[(a * n + k) * i + c]).sum();
            out[a * i + c] = if mean { s / l as f64 } else { s };
        }
    }
    out
}

#[test]
fn masked_sums_and_means_over_any_dimension() {
    let mut rng = Rng::new(4);
    let x = || [input(&mut Rng::new(5), &[3, 4, 5])];
    let lens = [4usize, 1, 3];
    check(
        "masked mean over time",
        &x(),
        |t, v| t.mean(&v[0], 1, Some(&lens)),
        |x| reduce_ref(&x[0], (3, 4, 5), &lens, true),
    );
    check(
        "masked sum over time",
        &x(),
        |t, v| t.sum(&v[0], 1, Some(&lens)),
        |x| reduce_ref(&x[0], (3, 4, 5), &lens, false),
    );
    check(
        "sum over dim 0",
        &x(),
        |t, v| t.sum(&v[0], 0, None),
        |x| reduce_ref(&x[0], (1, 3, 20), &[3], false),
    );
    check(
        "mean over the last dim",
        &x(),
        |t, v| t.mean(&v[0], 2, None),
        |x| reduce_ref(&x[0], (12, 5, 1), &[5; 12], true),
    );
    let _ = rng.uniform();
}

/// Softmax (or log-softmax) of rows of `s` values, the rows under first index b
/// taking their first `len[b]`; zero past them.
fn softmax_ref(x: &[f64], rows_per_b: usize, s: usize, len: &[usize], log: bool) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for r in 0..x.len() / s {
        let l = len[r / rows_per_b];
        let row = &x[r * s..r * s + l];
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
        for k in 0..l {
            out[r * s + k] = if log {
                row[k] - m - z.ln()
            } else {
                (row[k] - m).exp() / z
            };
        }
    }
    out
}

#[test]
fn masked_softmax_and_log_softmax() {
    let x = || {
        let mut rng = Rng::new(6);
        let mut i = input(&mut rng, &[3, 2, 7]);
        // Spread the logits so that the rows are far from uniform.
        i.values.iter_mut().for_each(|v| *v *= 3.0);
        [i]
    };
    let lens = [7usize, 3, 1];
    check(
        "masked softmax",
        &x(),
        |t, v| t.softmax(&v[0], Some(&lens)),
        |x| softmax_ref(&x[0], 2, 7, &lens, false),
    );
    check(
        "masked log-softmax",
        &x(),
        |t, v| t.log_softmax(&v[0], Some(&lens)),
        |x| softmax_ref(&x[0], 2, 7, &lens, true),
    );
    check(
        "log-softmax",
        &x(),
        |t, v| t.log_softmax(&v[0], None),
        |x| softmax_ref(&x[0], 2, 7, &[7; 3], true),
    );
}

#[test]
fn gather_slice_and_concat() {
    let mut rng = Rng::new(7);
    let ids = [5u32, 0, 5, 2];
    check(
        "gather",
        &[input(&mut rng, &[6, 5])],
        |t, v| t.gather(&v[0], &ids),
        |x| {
            ids.iter()
                .flat_map(|&r| x[0][r as usize * 5..r as usize * 5 + 5].to_vec())
                .collect()
        },
    );
    check(
        "slice dim 1",
        &[input(&mut rng, &[3, 7, 2])],
        |t, v| t.slice(&v[0], 1, 2, 4),
        |x| {
            (0..3)
                .flat_map(|o| x[0][o * 14 + 4..o * 14 + 12].to_vec())
                .collect()
        },
    );
    check(
        "concat dim 1",
        &[input(&mut rng, &[3, 2, 4]), input(&mut rng, &[3, 5, 4])],
        |t, v| t.concat(&v[0], &v[1], 1),
        |x| {
            (0..3)
                .flat_map(|o| [&x[0][o * 8..o * 8 + 8], &x[1][o * 20..o * 20 + 20]].concat())
                .collect()
        },
    );
    check(
        "slice dim 0 (a copy)",
        &[input(&mut rng, &[4, 3, 2])],
        |t, v| t.slice(&v[0], 0, 1, 2),
        |x| x[0][6..18].to_vec(),
    );
    check(
        "cat of three along dim 1",
        &[
            input(&mut rng, &[2, 1, 3]),
            input(&mut rng, &[2, 2, 3]),
            input(&mut rng, &[2, 1, 3]),
        ],
        |t, v| t.cat(&[&v[0], &v[1], &v[2]], 1),
        |x| {
            (0..2)
                .flat_map(|o| {
                    [
                        &x[0][o * 3..o * 3 + 3],
                        &x[1][o * 6..o * 6 + 6],
                        &x[2][o * 3..o * 3 + 3],
                    ]
                    .concat()
                })
                .collect()
        },
    );
    check(
        "cat of three along dim 0 (copies)",
        &[
            input(&mut rng, &[1, 3]),
            input(&mut rng, &[2, 3]),
            input(&mut rng, &[1, 3]),
        ],
        |t, v| t.cat(&[&v[0], &v[1], &v[2]], 0),
        |x| [x[0].clone(), x[1].clone(), x[2].clone()].concat(),
    );
    check(
        "transpose dims 1, 2",
        &[input(&mut rng, &[2, 3, 4, 2])],
        |t, v| t.transpose(&v[0], 1),
        |x| {
            let mut out = vec![];
            for r in 0..2 {
                for j in 0..4 {
                    for i in 0..3 {
                        for k in 0..2 {
                            out.push(x[0][((r * 3 + i) * 4 + j) * 2 + k]);
                        }
                    }
                }
            }
            out
        },
    );
    let order = [2usize, 0, 3, 1];
    check(
        "permute rows",
        &[input(&mut rng, &[4, 3])],
        |t, v| t.permute_rows(&v[0], &order),
        |x| {
            order
                .iter()
                .flat_map(|&r| x[0][r * 3..r * 3 + 3].to_vec())
                .collect()
        },
    );
    check(
        "concat dim 0",
        &[input(&mut rng, &[2, 3]), input(&mut rng, &[1, 3])],
        |t, v| t.concat(&v[0], &v[1], 0),
        |x| [x[0].clone(), x[1].clone()].concat(),
    );
}

#[test]
fn a_loss_inside_an_expression_gets_its_gradient_scaled() {
    let ctx = ctx();
    let mut rng = Rng::new(8);
    let logits = Param::new(Tensor::from_slice(ctx, &[4, 6], &rng.vec(24)).unwrap()).unwrap();
    let targets = [1u32, 5, u32::MAX, 0];
    let grads = |scale: f32| -> Vec<f32> {
        let mut tape = Tape::train(ctx, "ce");
        tape.rec().zero(&logits.grad).unwrap();
        let x = tape.param(&logits);
        let ce = tape.cross_entropy(&x, &targets, Some(u32::MAX)).unwrap();
        let loss = tape.scale(&ce, scale).unwrap();
        tape.backward(&loss).unwrap();
        tape.into_recorder().submit();
        logits.grad.to_vec().unwrap()
    };
    let want: Vec<f64> = grads(1.0).iter().map(|&g| -0.5 * g as f64).collect();
    assert_close("-0.5·cross-entropy", &grads(-0.5), &want, RTOL, 1e-7);
    let row_sums: Vec<f32> = grads(1.0).chunks(6).map(|r| r.iter().sum()).collect();
    assert!(
        row_sums.iter().all(|s| s.abs() < 1e-6),
        "softmax gradient rows sum to 0: {row_sums:?}"
    );
    assert!(
        grads(1.0)[12..18].iter().all(|&g| g == 0.0),
        "the ignored row gets nothing"
    );
}

#[test]
fn an_inference_tape_keeps_nothing_and_refuses_a_backward() {
    let ctx = ctx();
    let w = Param::new(Tensor::from_slice(ctx, &[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap()).unwrap();
    let mut tape = Tape::eval(ctx, "eval");
    let x = tape.param(&w);
    assert!(!x.requires_grad());
    let y = tape.scale(&x, 2.0).unwrap();
    assert!(!y.requires_grad());
    let loss = tape.sum(&y, 0, None).unwrap();
    let loss = tape.sum(&loss, 0, None).unwrap();
    assert!(matches!(
        tape.backward(&loss),
        Err(Error::InvalidArgument { .. })
    ));
    tape.into_recorder().submit();
    assert_eq!(loss.to_vec().unwrap(), [20.0]);
    // A training tape refuses a loss of more than one value without a gradient.
    let mut tape = Tape::train(ctx, "train");
    let x = tape.param(&w);
    let y = tape.scale(&x, 2.0).unwrap();
    assert!(matches!(
        tape.backward(&y),
        Err(Error::InvalidArgument { .. })
    ));
}

/// A value of another tape, or of this tape before its last backward, cannot
/// take part in a backward: its gradient could not reach where it came from.
#[test]
fn values_of_another_tape_are_refused_by_the_backward() {
    let ctx = ctx();
    let w = Param::new(Tensor::from_slice(ctx, &[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap()).unwrap();
    let scalar = |tape: &mut Tape, x: &Var| {
        let s = tape.sum(x, 0, None).unwrap();
        tape.sum(&s, 0, None).unwrap()
    };
    let grad_of_w = || w.grad.to_vec().unwrap();

    // A loss of another tape: refused, and this tape's own loss still back-propagates.
    let mut other = Tape::train(ctx, "other");
    let x_other = other.param(&w);
    let loss_other = scalar(&mut other, &x_other);
    let mut tape = Tape::train(ctx, "this");
    let x = tape.param(&w);
    let y = tape.scale(&x, 3.0).unwrap();
    let loss = scalar(&mut tape, &y);
    let err = tape.backward(&loss_other).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                op: "backward",
                what: "loss",
                ..
            }
        ),
        "{err}"
    );
    tape.backward(&loss).unwrap();
    tape.into_recorder().submit();
    assert_eq!(grad_of_w(), [3.0; 4], "this tape's loss after the refusal");

    // A value of another tape as an input (more nodes on the other tape than
    // on this one: its node index is past this tape's nodes).
    for _ in 0..4 {
        let _ = other.scale(&x_other, 2.0).unwrap();
    }
    let far = other.scale(&x_other, 5.0).unwrap();
    let mut tape = Tape::train(ctx, "this");
    let x = tape.param(&w);
    let y = tape.mul(&x, &far).unwrap();
    let loss = scalar(&mut tape, &y);
    let err = tape.backward(&loss).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { op: "backward", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("another tape"), "{err}");
    // As a constant (once the other tape ran) it is welcome.
    other.into_recorder().submit();
    let mut tape = Tape::train(ctx, "this");
    let x = tape.param(&w);
    let far = Var::constant(far.tensor().clone());
    let y = tape.mul(&x, &far).unwrap();
    let loss = scalar(&mut tape, &y);
    tape.backward(&loss).unwrap();
    tape.into_recorder().submit();
    // d Σ(w·5w)/dw through the constant 5w is 5w.
    assert_eq!(grad_of_w(), [8.0, 13.0, 18.0, 23.0], "through the constant");

    // A value of this tape from before its last backward: refused as well.
    let mut tape = Tape::train(ctx, "this");
    let x = tape.param(&w);
    let old = tape.scale(&x, 2.0).unwrap();
    let first = scalar(&mut tape, &old);
    tape.backward(&first).unwrap();
    let x = tape.param(&w);
    let y = tape.mul(&x, &old).unwrap();
    let loss = scalar(&mut tape, &y);
    assert!(matches!(
        tape.backward(&loss),
        Err(Error::InvalidArgument { op: "backward", .. })
    ));
    let stale = tape.backward(&first);
    assert!(
        matches!(stale, Err(Error::InvalidArgument { .. })),
        "{stale:?}"
    );
    tape.into_recorder().submit();
    assert_eq!(
        grad_of_w(),
        [10.0, 15.0, 20.0, 25.0],
        "only the first backward ran"
    );
}

/// A model no built-in one is: GRU → masked mean over time → attention of that
/// mean over the GRU's outputs → linear → cross-entropy, written forward-only.
struct Composed {
    gru: Recurrent,
    attention: Attention,
    out: Linear,
}

const LENGTHS: [usize; 3] = [5, 2, 4];

impl Composed {
    fn loss(&self, tape: &mut Tape, x: &Tensor, labels: &[u32]) -> Result<Var> {
        let x = tape.constant(x.clone());
        let seq = self.gru.apply(tape, &x, &LENGTHS, None)?;
        let mean = tape.mean(&seq.y, 1, Some(&LENGTHS))?;
        let query = tape.reshape(&mean, &[3, 1, 6])?;
        let (context, _) = self.attention.apply(tape, &query, &seq.y, &LENGTHS)?;
        let logits = self.out.apply(tape, &context)?;
        tape.cross_entropy(&logits, labels, None)
    }

    fn params(&self) -> Vec<Param> {
        let mut p = self.gru.params();
        p.extend(self.attention.params());
        p.extend(self.out.params());
        p
    }
}

#[test]
fn a_composed_model_has_the_gradients_of_its_loss() {
    let ctx = ctx();
    let cfg = Config::new(4, 3).with_layers(1).with_bidirectional(true);
    let model = Composed {
        gru: Recurrent::new(ctx, Mode::Gru, cfg, 11).unwrap(),
        attention: Attention::new(ctx, Score::General, 6, 6, 1.0, 12).unwrap(),
        out: Linear::new(ctx, 6, 3, true, 13).unwrap(),
    };
    let mut rng = Rng::new(14);
    let x = Tensor::from_slice(ctx, &[3, 5, 4], &rng.vec(60)).unwrap();
    let labels = [2u32, 0, 1];
    let loss_of = || -> f64 {
        let mut tape = Tape::eval(ctx, "loss");
        let loss = model.loss(&mut tape, &x, &labels).unwrap();
        tape.into_recorder().submit();
        loss.to_vec().unwrap()[0] as f64
    };
    let mut tape = Tape::train(ctx, "grads");
    for p in model.params() {
        tape.rec().zero(&p.grad).unwrap();
    }
    let loss = model.loss(&mut tape, &x, &labels).unwrap();
    tape.backward(&loss).unwrap();
    tape.into_recorder().submit();
    for (k, param) in model.params().iter().enumerate() {
        let g = param.grad.to_vec().unwrap();
        let value = param.value.to_vec().unwrap();
        // The derivative along a random direction over every entry.
        let dir = rng.vec(value.len());
        let analytic: f64 = g.iter().zip(&dir).map(|(a, d)| (a * d) as f64).sum();
        let fd = fd_along(param, &dir, 1e-2, loss_of);
        assert!(
            (analytic - fd).abs() <= 5e-5 + 1e-2 * fd.abs(),
            "parameter {k}: gradient·dir {analytic} but finite differences {fd}"
        );
    }
}

/// The typed stacks carry their state from one chunk to the next as one
/// sequence does: `[x1; x2]` from zero equals x1 from zero, then x2 from the
/// state x1 ended in.
#[test]
fn typed_states_carry_across_chunks() {
    use rnn_wgpu::nn::{Gru, Lstm};
    let ctx = ctx();
    let sizes = Config::new(3, 4).with_layers(2).with_bidirectional(false);
    let mut rng = Rng::new(21);
    let (b, t, cut) = (2, 6, 4);
    let x = rng.vec(b * t * 3);
    let columns = |from: usize, to: usize| -> Vec<f32> {
        (0..b)
            .flat_map(|r| x[(r * t + from) * 3..(r * t + to) * 3].to_vec())
            .collect()
    };
    let var = |steps: usize, data: &[f32]| {
        Var::constant(Tensor::from_slice(ctx, &[b, steps, 3], data).unwrap())
    };
    let lstm = Lstm::new(ctx, sizes, 5).unwrap();
    let gru = Gru::new(ctx, sizes, 6).unwrap();
    let mut tape = Tape::eval(ctx, "chunks");
    let (whole_lstm, _) = lstm.apply(&mut tape, &var(t, &x), &[t; 2], None).unwrap();
    let (first, state) = lstm
        .apply(&mut tape, &var(cut, &columns(0, cut)), &[cut; 2], None)
        .unwrap();
    let x2 = var(t - cut, &columns(cut, t));
    let (second, _) = lstm
        .apply(&mut tape, &x2, &[t - cut; 2], Some(&state))
        .unwrap();
    let (whole_gru, _) = gru.apply(&mut tape, &var(t, &x), &[t; 2], None).unwrap();
    let (g1, gstate) = gru
        .apply(&mut tape, &var(cut, &columns(0, cut)), &[cut; 2], None)
        .unwrap();
    let (g2, _) = gru
        .apply(&mut tape, &x2, &[t - cut; 2], Some(&gstate))
        .unwrap();
    tape.into_recorder().submit();
    for (what, whole, a, c) in [
        ("lstm", whole_lstm, first, second),
        ("gru", whole_gru, g1, g2),
    ] {
        let (whole, a, c) = (
            whole.to_vec().unwrap(),
            a.to_vec().unwrap(),
            c.to_vec().unwrap(),
        );
        let h = 4;
        let chunked: Vec<f32> = (0..b)
            .flat_map(|r| {
                [
                    &a[r * cut * h..(r + 1) * cut * h],
                    &c[r * (t - cut) * h..(r + 1) * (t - cut) * h],
                ]
                .concat()
            })
            .collect();
        assert_close(what, &chunked, &to_f64(&whole), 1e-5, 1e-6);
    }
}

/// The accuracy the cross-entropy kernels report with the loss: the share of
/// rows that count whose first highest logit is the target, on both kernel
/// paths (a row per invocation for C ≤ 64, a workgroup per row above), with ties
/// and ignored rows.
#[test]
fn cross_entropy_reports_the_accuracy_of_its_rows() {
    let ctx = ctx();
    let mut rng = Rng::new(30);
    for c in [7usize, 100] {
        let n = 37;
        let mut logits: Vec<f32> = rng.vec(n * c).iter().map(|v| (v * 4.0).round()).collect();
        // A row of one repeated value: its first class is its best.
        logits[..c].fill(1.0);
        let targets: Vec<u32> = (0..n)
            .map(|r| match r {
                0 => 0,
                _ if r % 5 == 4 => u32::MAX,
                _ if r % 3 == 0 => {
                    let row = &logits[r * c..(r + 1) * c];
                    let best = row.iter().cloned().fold(f32::MIN, f32::max);
                    row.iter().position(|&v| v == best).unwrap() as u32
                }
                _ => (rng.next_u64() % c as u64) as u32,
            })
            .collect();
        let (mut hits, mut counted) = (0, 0);
        for (r, &t) in targets.iter().enumerate() {
            if t == u32::MAX {
                continue;
            }
            counted += 1;
            let row = &logits[r * c..(r + 1) * c];
            let best = row.iter().cloned().fold(f32::MIN, f32::max);
            hits += usize::from(row.iter().position(|&v| v == best) == Some(t as usize));
        }
        let mut tape = Tape::eval(ctx, "accuracy");
        let x = tape.from_slice(&[n, c], &logits).unwrap();
        let (_, accuracy) = tape
            .cross_entropy_with_accuracy(&x, &targets, Some(u32::MAX))
            .unwrap();
        tape.into_recorder().submit();
        let got = accuracy.to_vec().unwrap()[0] as f64;
        let want = hits as f64 / counted as f64;
        assert!(
            (got - want).abs() < 1e-6,
            "C = {c}: accuracy {got}, host {want}"
        );
        assert!(
            hits > 3 && hits < counted,
            "C = {c}: {hits} of {counted} is no test"
        );
    }
}

/// Bad arguments to the tape's ops are typed errors, recorded before anything
/// is dispatched.
#[test]
fn bad_arguments_to_tape_ops_are_typed_errors() {
    let ctx = ctx();
    let mut tape = Tape::train(ctx, "bad");
    let a = tape.from_slice(&[2, 3], &[0.0; 6]).unwrap();
    let b = tape.from_slice(&[4, 5], &[0.0; 20]).unwrap();
    let v = tape.from_slice(&[6], &[0.0; 6]).unwrap();
    let errors = [
        (
            "matmul of [2, 3] by [4, 5]",
            tape.matmul(&a, &b).unwrap_err(),
        ),
        ("add of different shapes", tape.add(&a, &b).unwrap_err()),
        ("mul of different shapes", tape.mul(&a, &b).unwrap_err()),
        ("scale by NaN", tape.scale(&a, f32::NAN).unwrap_err()),
        (
            "sum over a missing dimension",
            tape.sum(&a, 2, None).unwrap_err(),
        ),
        (
            "mean with a length past the dimension",
            tape.mean(&a, 1, Some(&[3, 4])).unwrap_err(),
        ),
        (
            "mean with a length of 0",
            tape.mean(&a, 1, Some(&[0, 1])).unwrap_err(),
        ),
        (
            "softmax with one length too few",
            tape.softmax(&a, Some(&[3])).unwrap_err(),
        ),
        (
            "gather of a row past the end",
            tape.gather(&a, &[0, 2]).unwrap_err(),
        ),
        ("gather from a vector", tape.gather(&v, &[0]).unwrap_err()),
        ("slice past the end", tape.slice(&a, 1, 2, 2).unwrap_err()),
        ("empty slice", tape.slice(&a, 1, 0, 0).unwrap_err()),
        (
            "concat of mismatched shapes",
            tape.concat(&a, &b, 1).unwrap_err(),
        ),
        ("cat of nothing", tape.cat(&[], 0).unwrap_err()),
        (
            "transpose past the last dimension",
            tape.transpose(&a, 1).unwrap_err(),
        ),
        (
            "rows that are no permutation",
            tape.permute_rows(&a, &[0, 0]).unwrap_err(),
        ),
        (
            "reshape to another size",
            tape.reshape(&a, &[4]).unwrap_err(),
        ),
        (
            "cross-entropy target past the classes",
            tape.cross_entropy(&a, &[0, 3], None).unwrap_err(),
        ),
    ];
    for (what, err) in &errors {
        println!("{what:<40} {err}");
        assert!(
            matches!(
                err,
                Error::ShapeMismatch { .. }
                    | Error::InvalidArgument { .. }
                    | Error::LengthOutOfRange { .. }
                    | Error::IndexOutOfRange { .. }
                    | Error::ViewOutOfBounds { .. }
                    | Error::Empty { .. }
            ),
            "{what}: {err:?}"
        );
    }
    assert_eq!(tape.rec().dispatches(), 0, "a refused op recorded work");
}

/// Checks `op` of `inputs` with the public gradcheck against `reference` (the
/// forward in f64 and central differences of it).
fn grad_check(
    what: &str,
    inputs: &[Input],
    op: impl Fn(&mut Tape, &[Var]) -> Result<Var>,
    reference: impl Fn(&[Vec<f64>]) -> Vec<f64>,
) {
    let ctx = ctx();
    let tensors: Vec<Tensor> = inputs
        .iter()
        .map(|i| Tensor::from_slice(ctx, &i.shape, &i.values).unwrap())
        .collect();
    let report = GradCheck::against_reference()
        .with_tolerance(RTOL, ATOL)
        .run_with_reference(ctx, &tensors.iter().collect::<Vec<_>>(), op, reference)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(report.passed(), "{what}: {report}");
}

/// Row-major coordinates of element `i` of `shape`.
fn coords(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut c = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        c[d] = i % shape[d];
        i /= shape[d];
    }
    c
}

/// The element of `shape` (aligned to the last dimensions of `coords`, size-1
/// dimensions broadcast) at `coords`.
fn broadcast_index(coords: &[usize], shape: &[usize]) -> usize {
    let lead = coords.len() - shape.len();
    shape.iter().enumerate().fold(0, |at, (d, &n)| {
        at * n + if n == 1 { 0 } else { coords[lead + d] }
    })
}

/// `f(x, y)` of `x` and `y` broadcast to `out`.
fn broadcast_ref(
    x: &[f64],
    xs: &[usize],
    y: &[f64],
    ys: &[usize],
    out: &[usize],
    f: impl Fn(f64, f64) -> f64,
) -> Vec<f64> {
    (0..out.iter().product())
        .map(|i| {
            let c = coords(i, out);
            f(x[broadcast_index(&c, xs)], y[broadcast_index(&c, ys)])
        })
        .collect()
}

#[test]
fn broadcasting_add_sub_mul_and_div() {
    type Case = (&'static [usize], &'static [usize], &'static [usize]);
    let cases: [Case; 6] = [
        (&[3, 1, 5], &[4, 1], &[3, 4, 5]),
        (&[2, 3], &[3], &[2, 3]),
        (&[1], &[2, 3], &[2, 3]),
        (&[2, 1, 4], &[2, 3, 1], &[2, 3, 4]),
        (&[3, 7], &[3, 7], &[3, 7]),
        (&[2, 1, 1, 3, 1], &[4, 1, 2], &[2, 1, 4, 3, 2]),
    ];
    let mut rng = Rng::new(30);
    for (xs, ys, out) in cases {
        let x = input(&mut rng, xs);
        let mut y = input(&mut rng, ys);
        // Divisors away from zero: 0.5..1.5 with either sign.
        y.values
            .iter_mut()
            .for_each(|v| *v = v.signum() * (0.5 + v.abs()));
        let inputs = [x, y];
        for (name, f) in [
            ("add", (|a, b| a + b) as fn(f64, f64) -> f64),
            ("sub", |a, b| a - b),
            ("mul", |a, b| a * b),
            ("div", |a, b| a / b),
        ] {
            grad_check(
                &format!("{name} {xs:?} {ys:?}"),
                &inputs,
                |t, v| match name {
                    "add" => t.add(&v[0], &v[1]),
                    "sub" => t.sub(&v[0], &v[1]),
                    "mul" => t.mul(&v[0], &v[1]),
                    _ => t.div(&v[0], &v[1]),
                },
                |v| broadcast_ref(&v[0], xs, &v[1], ys, out, f),
            );
        }
    }
}

#[test]
fn sigmoid_exp_and_log() {
    let mut rng = Rng::new(31);
    let mut x = input(&mut rng, &[5, 9]);
    x.values.iter_mut().for_each(|v| *v *= 4.0);
    let x = [x];
    grad_check(
        "sigmoid",
        &x,
        |t, v| t.sigmoid(&v[0]),
        |v| v[0].iter().map(|a| 1.0 / (1.0 + (-a).exp())).collect(),
    );
    grad_check(
        "exp",
        &x,
        |t, v| t.exp(&v[0]),
        |v| v[0].iter().map(|a| a.exp()).collect(),
    );
    let mut pos = input(&mut rng, &[5, 9]);
    pos.values.iter_mut().for_each(|v| *v = 0.2 + 2.0 * v.abs());
    grad_check(
        "log",
        &[pos],
        |t, v| t.log(&v[0]),
        |v| v[0].iter().map(|a| a.ln()).collect(),
    );
    // Sigmoid's extremes: no overflow, exactly 0 and 1 in f32.
    let ctx = ctx();
    let mut tape = Tape::eval(ctx, "extremes");
    let big = tape
        .from_slice(&[4], &[-200.0, -90.0, 90.0, 200.0])
        .unwrap();
    let s = tape.sigmoid(&big).unwrap();
    tape.into_recorder().submit();
    assert_eq!(s.to_vec().unwrap(), [0.0, 0.0, 1.0, 1.0]);
}

/// `x` of `shape` permuted: output dimension i is input dimension perm[i].
fn permute_ref(x: &[f64], shape: &[usize], perm: &[usize]) -> Vec<f64> {
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    (0..x.len())
        .map(|i| {
            let c = coords(i, &out);
            let mut src = vec![0; shape.len()];
            for (o, &p) in perm.iter().enumerate() {
                src[p] = c[o];
            }
            x[src.iter().zip(shape).fold(0, |at, (&c, &n)| at * n + c)]
        })
        .collect()
}

#[test]
fn permute_swap_unsqueeze_and_expand() {
    let mut rng = Rng::new(32);
    let x = [input(&mut rng, &[2, 3, 4, 5])];
    grad_check(
        "permute [2, 0, 3, 1]",
        &x,
        |t, v| t.permute(&v[0], &[2, 0, 3, 1]),
        |v| permute_ref(&v[0], &[2, 3, 4, 5], &[2, 0, 3, 1]),
    );
    grad_check(
        "swap dims 0 and 3",
        &x,
        |t, v| t.swap_dims(&v[0], 0, 3),
        |v| permute_ref(&v[0], &[2, 3, 4, 5], &[3, 1, 2, 0]),
    );
    grad_check(
        "swap dims 1 and 2 (the old transpose)",
        &x,
        |t, v| t.swap_dims(&v[0], 1, 2),
        |v| permute_ref(&v[0], &[2, 3, 4, 5], &[0, 2, 1, 3]),
    );
    let col = [input(&mut rng, &[3, 1])];
    grad_check(
        "expand [3, 1] to [2, 3, 4]",
        &col,
        |t, v| t.expand(&v[0], &[2, 3, 4]),
        |v| broadcast_ref(&v[0], &[3, 1], &[0.0], &[1], &[2, 3, 4], |a, _| a),
    );
    let row = [input(&mut rng, &[4])];
    grad_check(
        "unsqueeze then expand",
        &row,
        |t, v| {
            let u = t.unsqueeze(&v[0], 0)?;
            assert_eq!(u.shape(), [1, 4]);
            t.expand(&u, &[3, 4])
        },
        |v| broadcast_ref(&v[0], &[4], &[0.0], &[1], &[3, 4], |a, _| a),
    );
}

#[test]
fn masked_fill_with_a_broadcast_mask() {
    let ctx = ctx();
    let mut rng = Rng::new(33);
    // [2, 1, 4] over [2, 3, 4]: a padded key fills every query's row.
    let mask: Vec<u32> = vec![0, 1, 0, 0, 1, 0, 0, 1];
    let mask_t = Tensor::from_u32(ctx, &[2, 1, 4], &mask).unwrap();
    let x = [input(&mut rng, &[2, 3, 4])];
    grad_check(
        "masked_fill",
        &x,
        |t, v| t.masked_fill(&v[0], &mask_t, -7.5),
        |v| {
            (0..24)
                .map(|i| {
                    let c = coords(i, &[2, 3, 4]);
                    if mask[c[0] * 4 + c[2]] != 0 {
                        -7.5
                    } else {
                        v[0][i]
                    }
                })
                .collect()
        },
    );
}

/// Softmax (or log-softmax) of the rows of `s` values over the positions their
/// `keep` allows; zero elsewhere and on a row with none.
fn softmax_keep_ref(x: &[f64], s: usize, keep: impl Fn(usize) -> bool, log: bool) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for r in 0..x.len() / s {
        let ks: Vec<usize> = (r * s..r * s + s).filter(|&i| keep(i)).collect();
        let m = ks.iter().map(|&i| x[i]).fold(f64::MIN, f64::max);
        let z: f64 = ks.iter().map(|&i| (x[i] - m).exp()).sum();
        for &i in &ks {
            out[i] = if log {
                x[i] - m - z.ln()
            } else {
                (x[i] - m).exp() / z
            };
        }
    }
    out
}

#[test]
fn softmax_and_log_softmax_over_a_mask() {
    let ctx = ctx();
    let mut rng = Rng::new(34);
    let mut x = input(&mut rng, &[2, 3, 5]);
    x.values.iter_mut().for_each(|v| *v *= 3.0);
    let x = [x];
    // A full mask of [2, 3, 5] (row 4 has no position at all), and one of
    // [2, 1, 5] shared by each batch row's queries.
    let full: Vec<u32> = (0..30)
        .map(|i| u32::from((i * 7) % 3 != 0 && !(20..25).contains(&i)))
        .collect();
    let shared: Vec<u32> = vec![1, 0, 1, 1, 0, 0, 1, 1, 0, 1];
    let full_t = Tensor::from_u32(ctx, &[2, 3, 5], &full).unwrap();
    let shared_t = Tensor::from_u32(ctx, &[2, 1, 5], &shared).unwrap();
    let shared_keep = |i: usize| shared[(i / 15) * 5 + i % 5] != 0;
    for log in [false, true] {
        let name = if log { "log-softmax" } else { "softmax" };
        let op = |t: &mut Tape, v: &Var, m: &Tensor| {
            if log {
                t.log_softmax_masked(v, m)
            } else {
                t.softmax_masked(v, m)
            }
        };
        grad_check(
            &format!("{name}, mask [2, 3, 5]"),
            &x,
            |t, v| op(t, &v[0], &full_t),
            |v| softmax_keep_ref(&v[0], 5, |i| full[i] != 0, log),
        );
        grad_check(
            &format!("{name}, mask [2, 1, 5]"),
            &x,
            |t, v| op(t, &v[0], &shared_t),
            |v| softmax_keep_ref(&v[0], 5, shared_keep, log),
        );
    }
}

/// Mean cross-entropy of the rows of `c` logits whose target is not `ignore`,
/// over each row's classes (its target always one), with smoothing `eps`
/// spread over those classes.
fn cross_entropy_keep_ref(
    x: &[f64],
    c: usize,
    targets: &[u32],
    keep: impl Fn(usize, usize) -> bool,
    eps: f64,
) -> Vec<f64> {
    let mut total = 0.0;
    let mut count = 0;
    for (r, &t) in targets.iter().enumerate() {
        if t == u32::MAX {
            continue;
        }
        let t = t as usize;
        let ks: Vec<usize> = (0..c).filter(|&k| k == t || keep(r, k)).collect();
        let z = |k: usize| x[r * c + k];
        let m = ks.iter().map(|&k| z(k)).fold(f64::MIN, f64::max);
        let lse = m + ks.iter().map(|&k| (z(k) - m).exp()).sum::<f64>().ln();
        let mean = ks.iter().map(|&k| z(k)).sum::<f64>() / ks.len() as f64;
        total += lse - (1.0 - eps) * z(t) - eps * mean;
        count += 1;
    }
    vec![total / count as f64]
}

#[test]
fn cross_entropy_over_a_class_mask() {
    use rnn_wgpu::tape::CrossEntropy;
    let ctx = ctx();
    let mut rng = Rng::new(35);
    // A row of few classes per invocation (C = 7) and a workgroup per row (C = 70).
    for c in [7usize, 70] {
        let n = 5;
        let mut x = input(&mut rng, &[n, c]);
        x.values.iter_mut().for_each(|v| *v *= 3.0);
        let x = [x];
        let mask: Vec<u32> = (0..n * c).map(|i| u32::from(i % 3 != 1)).collect();
        let row_mask: Vec<u32> = (0..c).map(|k| u32::from(k % 4 != 2)).collect();
        let mask_t = Tensor::from_u32(ctx, &[n, c], &mask).unwrap();
        let row_t = Tensor::from_u32(ctx, &[c], &row_mask).unwrap();
        // Row 2 is padding; row 3's target (class 1 of row 3: i = 3c + 1) is
        // masked and still counts.
        let targets = [0u32, (c - 1) as u32, u32::MAX, 1, 5];
        for (what, m, keep) in [
            (
                "mask [N, C]",
                &mask_t,
                Box::new(|r: usize, k: usize| mask[r * c + k] != 0)
                    as Box<dyn Fn(usize, usize) -> bool>,
            ),
            (
                "mask [C]",
                &row_t,
                Box::new(|_: usize, k: usize| row_mask[k] != 0),
            ),
        ] {
            for eps in [0.0f32, 0.2] {
                let opts = CrossEntropy::new()
                    .with_ignore_index(u32::MAX)
                    .with_smoothing(eps)
                    .with_class_mask(m);
                grad_check(
                    &format!("cross-entropy C = {c}, {what}, smoothing {eps}"),
                    &x,
                    |t, v| Ok(t.cross_entropy_with(&v[0], &targets, &opts)?.0),
                    |v| cross_entropy_keep_ref(&v[0], c, &targets, &keep, f64::from(eps)),
                );
            }
        }
    }
}

#[test]
fn bad_arguments_to_the_new_tape_ops_are_typed_errors() {
    let ctx = ctx();
    let mut tape = Tape::train(ctx, "bad");
    let a = tape.from_slice(&[2, 3], &[0.0; 6]).unwrap();
    let b = tape.from_slice(&[4, 3], &[0.0; 12]).unwrap();
    let nine = tape.from_slice(&[1; 9], &[0.0]).unwrap();
    let wide = Tensor::from_u32(ctx, &[4], &[1; 4]).unwrap();
    let floats = Tensor::from_slice(ctx, &[3], &[1.0; 3]).unwrap();
    let errors = [
        ("sub of [2, 3] and [4, 3]", tape.sub(&a, &b).unwrap_err()),
        ("div of [2, 3] and [4, 3]", tape.div(&a, &b).unwrap_err()),
        (
            "add past eight dimensions",
            tape.add(&nine, &a).unwrap_err(),
        ),
        (
            "permute with a repeat",
            tape.permute(&a, &[0, 0]).unwrap_err(),
        ),
        ("permute of too few", tape.permute(&a, &[1]).unwrap_err()),
        (
            "swap a missing dimension",
            tape.swap_dims(&a, 0, 2).unwrap_err(),
        ),
        (
            "unsqueeze past the rank",
            tape.unsqueeze(&a, 3).unwrap_err(),
        ),
        (
            "expand to fewer dimensions",
            tape.expand(&a, &[6]).unwrap_err(),
        ),
        (
            "expand a dimension of 2 to 4",
            tape.expand(&a, &[4, 3]).unwrap_err(),
        ),
        (
            "masked_fill with an f32 mask",
            tape.masked_fill(&a, &floats, 0.0).unwrap_err(),
        ),
        (
            "masked_fill with a [4] mask",
            tape.masked_fill(&a, &wide, 0.0).unwrap_err(),
        ),
        (
            "softmax with a [4] mask",
            tape.softmax_masked(&a, &wide).unwrap_err(),
        ),
        (
            "cross-entropy with a [4] class mask",
            tape.cross_entropy_with(
                &a,
                &[0, 1],
                &rnn_wgpu::tape::CrossEntropy::new().with_class_mask(&wide),
            )
            .unwrap_err(),
        ),
    ];
    for (what, err) in &errors {
        println!("{what:<40} {err}");
        assert!(
            matches!(
                err,
                Error::ShapeMismatch { .. } | Error::InvalidArgument { .. } | Error::DType { .. }
            ),
            "{what}: {err:?}"
        );
    }
    assert_eq!(tape.rec().dispatches(), 0, "a refused op recorded work");
}

/// The public gradcheck in its reference-free form (central differences of
/// the device's own f32 forward, at its default tolerances) passes every new
/// op, as a user would run it.
#[test]
fn every_new_op_passes_the_device_gradcheck() {
    use rnn_wgpu::tape::CrossEntropy;
    let ctx = ctx();
    let mut rng = Rng::new(36);
    let mut t = |shape: &[usize], lo: f32| {
        let v: Vec<f32> = rng.vec(shape.iter().product());
        let v: Vec<f32> = v.iter().map(|x| x.signum() * (lo + x.abs())).collect();
        Tensor::from_slice(ctx, shape, &v).unwrap()
    };
    let (x, y, pos) = (t(&[2, 3, 4], 0.0), t(&[3, 1], 0.5), t(&[2, 3, 4], 0.5));
    let pos = {
        let v: Vec<f32> = pos.to_vec().unwrap().iter().map(|a| a.abs()).collect();
        Tensor::from_slice(ctx, &[2, 3, 4], &v).unwrap()
    };
    let mask = Tensor::from_u32(ctx, &[2, 1, 4], &[1, 0, 1, 1, 0, 1, 1, 0]).unwrap();
    let targets = [0u32, 3, 1, 2, 2, 0];
    type Op = Box<dyn Fn(&mut Tape, &[Var]) -> Result<Var>>;
    let cases: Vec<(&str, Vec<Tensor>, Op)> = vec![
        (
            "add",
            vec![x.clone(), y.clone()],
            Box::new(|t, v| t.add(&v[0], &v[1])),
        ),
        (
            "sub",
            vec![x.clone(), y.clone()],
            Box::new(|t, v| t.sub(&v[0], &v[1])),
        ),
        (
            "mul",
            vec![x.clone(), y.clone()],
            Box::new(|t, v| t.mul(&v[0], &v[1])),
        ),
        (
            "div",
            vec![x.clone(), y.clone()],
            Box::new(|t, v| t.div(&v[0], &v[1])),
        ),
        (
            "sigmoid",
            vec![x.clone()],
            Box::new(|t, v| t.sigmoid(&v[0])),
        ),
        ("exp", vec![x.clone()], Box::new(|t, v| t.exp(&v[0]))),
        ("log", vec![pos], Box::new(|t, v| t.log(&v[0]))),
        (
            "permute",
            vec![x.clone()],
            Box::new(|t, v| t.permute(&v[0], &[2, 0, 1])),
        ),
        (
            "swap_dims",
            vec![x.clone()],
            Box::new(|t, v| t.swap_dims(&v[0], 0, 2)),
        ),
        (
            "expand",
            vec![y.clone()],
            Box::new(|t, v| t.expand(&v[0], &[2, 3, 4])),
        ),
        (
            "masked_fill",
            vec![x.clone()],
            Box::new({
                let mask = mask.clone();
                move |t, v| t.masked_fill(&v[0], &mask, 2.0)
            }),
        ),
        (
            "softmax_masked",
            vec![x.clone()],
            Box::new({
                let mask = mask.clone();
                move |t, v| t.softmax_masked(&v[0], &mask)
            }),
        ),
        (
            "log_softmax_masked",
            vec![x.clone()],
            Box::new({
                let mask = mask.clone();
                move |t, v| t.log_softmax_masked(&v[0], &mask)
            }),
        ),
        (
            "cross_entropy_with a class mask",
            vec![x.clone()],
            Box::new({
                let mask = mask.clone();
                move |t, v| {
                    let opts = CrossEntropy::new()
                        .with_class_mask(&mask)
                        .with_smoothing(0.1);
                    Ok(t.cross_entropy_with(&v[0], &targets, &opts)?.0)
                }
            }),
        ),
    ];
    for (what, inputs, op) in cases {
        let inputs: Vec<&Tensor> = inputs.iter().collect();
        let report = GradCheck::new().run(ctx, &inputs, op).unwrap();
        assert!(report.passed(), "{what}: {report}");
    }
}
