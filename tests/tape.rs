//! The tape's tensor ops: forward against an f64 reference, backward (through
//! the tape's replay) against central differences of that reference; a model
//! composed on the tape against finite differences of its loss.

mod common;

use common::recurrent_ref::numeric_grad;
use common::{assert_close, ctx, fd_along, to_f64, Rng};
use rnn_wgpu::nn::recurrent::{Config, Mode};
use rnn_wgpu::nn::{Attention, Linear, Module, Param, Recurrent, Score};
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
        let seq = self.gru.apply(tape, &x, &LENGTHS, None, None)?;
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
    let cfg = Config {
        mode: Mode::Gru,
        input_size: 4,
        hidden_size: 3,
        num_layers: 1,
        bidirectional: true,
    };
    let model = Composed {
        gru: Recurrent::new(ctx, cfg, 11).unwrap(),
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
    use rnn_wgpu::nn::{Gru, Lstm, Sizes};
    let ctx = ctx();
    let sizes = Sizes {
        input_size: 3,
        hidden_size: 4,
        num_layers: 2,
        bidirectional: false,
    };
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
