//! Attention against an f64 reference: weights (exactly zero at padded source
//! positions) and context, and every gradient against central finite differences.

mod common;

use common::recurrent_ref::numeric_grad;
use common::{assert_close, ctx, to_f64, Rng};
use rnn_wgpu::nn::{Attention, Module, Score};
use rnn_wgpu::{Error, Recorder, Tensor};

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;
const GRAD_RTOL: f64 = 1e-3;
const GRAD_ATOL: f64 = 1e-5;

struct Case {
    b: usize,
    tq: usize,
    s: usize,
    dq: usize,
    dk: usize,
    lengths: Vec<usize>,
    scale: f64,
}

/// weights and context in f64; `params` are the layer's (W; or W_q, W_k, v).
fn reference(c: &Case, q: &[f64], k: &[f64], params: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let w: &[f64] = if params.len() == 1 { &params[0] } else { &[] };
    let (mut weights, mut context) = (vec![0.0; c.b * c.tq * c.s], vec![0.0; c.b * c.tq * c.dk]);
    for b in 0..c.b {
        for i in 0..c.tq {
            let qi = &q[(b * c.tq + i) * c.dq..][..c.dq];
            let qp: Vec<f64> = if w.is_empty() {
                qi.to_vec()
            } else {
                (0..c.dk)
                    .map(|j| (0..c.dq).map(|a| qi[a] * w[a * c.dk + j]).sum())
                    .collect()
            };
            let len = c.lengths[b];
            let key = |s: usize| &k[(b * c.s + s) * c.dk..][..c.dk];
            let e: Vec<f64> = (0..len)
                .map(|s| match params {
                    [w_q, w_k, v] => (0..v.len())
                        .map(|a| {
                            let pq: f64 = (0..c.dq).map(|d| w_q[a * c.dq + d] * qi[d]).sum();
                            let pk: f64 = (0..c.dk).map(|d| w_k[a * c.dk + d] * key(s)[d]).sum();
                            v[a] * (pq + pk).tanh()
                        })
                        .sum(),
                    _ => c.scale * (0..c.dk).map(|j| qp[j] * key(s)[j]).sum::<f64>(),
                })
                .collect();
            let m = e.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = e.iter().map(|v| (v - m).exp()).sum();
            for s in 0..len {
                let wt = (e[s] - m).exp() / z;
                weights[(b * c.tq + i) * c.s + s] = wt;
                for j in 0..c.dk {
                    context[(b * c.tq + i) * c.dk + j] += wt * k[(b * c.s + s) * c.dk + j];
                }
            }
        }
    }
    (weights, context)
}

fn check(score: Score, c: Case, with_dweights: bool, seed: u64) {
    let ctx = ctx();
    let what = format!(
        "{score:?} B={} Tq={} S={} lengths={:?}",
        c.b, c.tq, c.s, c.lengths
    );
    let att = Attention::new(ctx, score, c.dq, c.dk, c.scale as f32, seed).unwrap();
    let mut rng = Rng::new(seed + 1);
    let (q, k) = (rng.vec(c.b * c.tq * c.dq), rng.vec(c.b * c.s * c.dk));
    let (dctx, dwts) = (rng.vec(c.b * c.tq * c.dk), rng.vec(c.b * c.tq * c.s));
    let params: Vec<Vec<f64>> = att
        .params()
        .iter()
        .map(|p| to_f64(&p.value.to_vec().unwrap()))
        .collect();

    let qt = Tensor::from_slice(ctx, &[c.b, c.tq, c.dq], &q).unwrap();
    let kt = Tensor::from_slice(ctx, &[c.b, c.s, c.dk], &k).unwrap();
    let dct = Tensor::from_slice(ctx, &[c.b, c.tq, c.dk], &dctx).unwrap();
    let dwt = Tensor::from_slice(ctx, &[c.b, c.tq, c.s], &dwts).unwrap();
    let mut rec = Recorder::new(ctx, "attention");
    att.zero_grad(&mut rec).unwrap();
    let (out, saved) = att.forward(&mut rec, &qt, &kt, &c.lengths).unwrap();
    let grads = att
        .backward(&mut rec, &saved, &dct, with_dweights.then_some(&dwt))
        .unwrap();
    rec.submit();

    let (q64, k64) = (to_f64(&q), to_f64(&k));
    let (want_w, want_c) = reference(&c, &q64, &k64, &params);
    let got_w = out.weights.to_vec().unwrap();
    assert_close(&format!("{what}: weights"), &got_w, &want_w, RTOL, ATOL);
    for (i, &g) in got_w.iter().enumerate() {
        let (b, s) = (i / (c.tq * c.s), i % c.s);
        if s >= c.lengths[b] {
            assert_eq!(g, 0.0, "{what}: weight {i} at a padded position");
        }
    }
    assert_close(
        &format!("{what}: context"),
        &out.context.to_vec().unwrap(),
        &want_c,
        RTOL,
        ATOL,
    );

    let (dc64, dw64) = (
        to_f64(&dctx),
        if with_dweights {
            to_f64(&dwts)
        } else {
            vec![0.0; dwts.len()]
        },
    );
    let loss = |q: &[f64], k: &[f64], params: &[Vec<f64>]| {
        let (wt, cx) = reference(&c, q, k, params);
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        dot(&cx, &dc64) + dot(&wt, &dw64)
    };
    let (mut qv, mut kv) = (q64.clone(), k64.clone());
    let fd_q = numeric_grad(&mut qv, |v| loss(v, &k64, &params));
    let fd_k = numeric_grad(&mut kv, |v| loss(&q64, v, &params));
    let dq = grads.dq.to_vec().unwrap();
    assert_close(&format!("{what}: dq"), &dq, &fd_q, GRAD_RTOL, GRAD_ATOL);
    let dk = grads.dk.to_vec().unwrap();
    assert_close(&format!("{what}: dk"), &dk, &fd_k, GRAD_RTOL, GRAD_ATOL);
    for (i, (named, p)) in att.named_params().iter().zip(att.params()).enumerate() {
        let mut pv = params[i].clone();
        let fd = numeric_grad(&mut pv, |v| {
            let mut all = params.clone();
            all[i] = v.to_vec();
            loss(&q64, &k64, &all)
        });
        let got = p.grad.to_vec().unwrap();
        assert_close(
            &format!("{what}: d{}", named.name),
            &got,
            &fd,
            GRAD_RTOL,
            GRAD_ATOL,
        );
    }
}

#[test]
fn dot_attention_matches_reference_and_finite_differences() {
    for (tq, with_dweights) in [(1, false), (4, true)] {
        let case = Case {
            b: 3,
            tq,
            s: 7,
            dq: 5,
            dk: 5,
            lengths: vec![7, 1, 4],
            scale: 1.0,
        };
        check(Score::Dot, case, with_dweights, 1 + tq as u64);
    }
    // Scaled dot-product self-attention shape: queries are the keys' positions.
    let case = Case {
        b: 2,
        tq: 6,
        s: 6,
        dq: 8,
        dk: 8,
        lengths: vec![6, 3],
        scale: 1.0 / 8f64.sqrt(),
    };
    check(Score::Dot, case, true, 9);
}

#[test]
fn general_attention_matches_reference_and_finite_differences() {
    for (tq, with_dweights) in [(1, true), (3, false)] {
        let case = Case {
            b: 3,
            tq,
            s: 5,
            dq: 4,
            dk: 6,
            lengths: vec![1, 5, 2],
            scale: 1.0,
        };
        check(Score::General, case, with_dweights, 20 + tq as u64);
    }
    // More source positions than a workgroup has lanes.
    let case = Case {
        b: 2,
        tq: 2,
        s: 70,
        dq: 3,
        dk: 2,
        lengths: vec![70, 65],
        scale: 1.0,
    };
    check(Score::General, case, true, 30);
}

#[test]
fn additive_attention_matches_reference_and_finite_differences() {
    for (tq, with_dweights) in [(1, false), (3, true)] {
        let case = Case {
            b: 3,
            tq,
            s: 6,
            dq: 4,
            dk: 5,
            lengths: vec![6, 1, 3],
            scale: 1.0,
        };
        check(
            Score::Additive { size: 7 },
            case,
            with_dweights,
            40 + tq as u64,
        );
    }
}

#[test]
fn bad_attention_input_is_refused() {
    let ctx = ctx();
    let att = Attention::new(ctx, Score::General, 4, 6, 1.0, 1).unwrap();
    let q = Tensor::zeros(ctx, &[2, 3, 4]).unwrap();
    let k = Tensor::zeros(ctx, &[2, 5, 6]).unwrap();
    let mut rec = Recorder::new(ctx, "bad");
    let err = att.forward(&mut rec, &q, &k, &[5, 0]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LengthOutOfRange {
                index: 1,
                value: 0,
                ..
            }
        ),
        "{err}"
    );
    let err = att.forward(&mut rec, &q, &k, &[6, 1]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LengthOutOfRange {
                index: 0,
                value: 6,
                max: 5,
                ..
            }
        ),
        "{err}"
    );
    let err = att.forward(&mut rec, &k, &q, &[5, 5]).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    assert!(matches!(
        Attention::new(ctx, Score::Dot, 4, 6, 1.0, 1),
        Err(Error::ShapeMismatch { .. })
    ));
    let (_, saved) = att.forward(&mut rec, &q, &k, &[5, 2]).unwrap();
    let err = att
        .backward(
            &mut rec,
            &saved,
            &Tensor::zeros(ctx, &[2, 3, 4]).unwrap(),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                what: "dcontext",
                ..
            }
        ),
        "{err}"
    );
    rec.submit();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// Random scores, batch sizes (1 included), query and source lengths (1
    /// included), widths and per-sequence source lengths (1 and S included when
    /// drawn): weights and context against the reference, every gradient against
    /// finite differences.
    #[test]
    fn random_attention_matches_reference_and_finite_differences(
        kind in 0usize..3, b in 1usize..4, tq in 1usize..5, s in 1usize..9,
        dq in 1usize..6, dk in 1usize..6, with_dweights: bool,
        drawn in proptest::collection::vec(1usize..9, 3),
        seed in 0u64..1_000_000,
    ) {
        let (score, dq, scale) = match kind {
            0 => (Score::Dot, dk, 1.0 / (dk as f64).sqrt()),
            1 => (Score::General, dq, 1.0),
            _ => (Score::Additive { size: 3 }, dq, 1.0),
        };
        let lengths = drawn[..b].iter().map(|&l| l.min(s)).collect();
        let case = Case { b, tq, s, dq, dk, lengths, scale };
        check(score, case, with_dweights, seed);
    }
}
