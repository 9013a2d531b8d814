//! minGRU and minLSTM: the scan's outputs and final states against a plain
//! sequential f64 reference of the paper's equations, and every gradient (input,
//! initial state, weights, biases) against central differences of that
//! reference; stacked, bidirectional, with mixed lengths, over T from 1 to 4096.

mod common;

use common::{assert_close, ctx, to_f64, Rng};
use rnn_wgpu::nn::{Config, HiddenState, MinGru, MinLstm, Module, Param, Stream};
use rnn_wgpu::{DType, Error, Recorder, Result, Tape, Tensor, Var};

#[derive(Clone, Copy, Debug)]
struct Case {
    lstm: bool,
    batch: usize,
    steps: usize,
    input: usize,
    hidden: usize,
    layers: usize,
    dirs: usize,
}

impl Case {
    fn gates(&self) -> usize {
        if self.lstm {
            3
        } else {
            2
        }
    }
    fn layer_input(&self, l: usize) -> usize {
        if l == 0 {
            self.input
        } else {
            self.dirs * self.hidden
        }
    }
    fn sizes(&self) -> Config {
        Config::new(self.input, self.hidden)
            .with_layers(self.layers)
            .with_bidirectional(self.dirs == 2)
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The stack in f64, one step after another: `params` as the layer lists them
/// (per layer its weight `[D, G·H, I]` then its bias `[D, G·H]`), `x` `[B, T,
/// I]`, `h0` `[L·D, B, H]`. Returns y `[B, T, D·H]` and h_n `[L·D, B, H]`.
fn reference(
    c: &Case,
    params: &[Vec<f64>],
    x: &[f64],
    h0: &[f64],
    lengths: &[usize],
) -> (Vec<f64>, Vec<f64>) {
    let (b, t, h, d, g) = (c.batch, c.steps, c.hidden, c.dirs, c.gates());
    let mut input = x.to_vec();
    let mut hn = vec![0.0; c.layers * d * b * h];
    for l in 0..c.layers {
        let (w, bias) = (&params[2 * l], &params[2 * l + 1]);
        let i = c.layer_input(l);
        let mut y = vec![0.0; b * t * d * h];
        for dir in 0..d {
            for s in 0..b {
                let len = lengths[s];
                let mut state: Vec<f64> = (0..h)
                    .map(|j| h0[((l * d + dir) * b + s) * h + j])
                    .collect();
                for step in 0..len {
                    let time = if dir == 0 { step } else { len - 1 - step };
                    let xt = &input[(s * t + time) * i..(s * t + time + 1) * i];
                    let pre = |gate: usize, j: usize| {
                        let row = (dir * g + gate) * h + j;
                        bias[row] + (0..i).map(|k| w[row * i + k] * xt[k]).sum::<f64>()
                    };
                    for (j, hj) in state.iter_mut().enumerate() {
                        let (a, bb) = if c.lstm {
                            let (f, ig) = (sigmoid(pre(0, j)), sigmoid(pre(1, j)));
                            (f / (f + ig), ig / (f + ig) * pre(2, j))
                        } else {
                            let z = sigmoid(pre(0, j));
                            (1.0 - z, z * pre(1, j))
                        };
                        *hj = a * *hj + bb;
                        y[((s * t + time) * d + dir) * h + j] = *hj;
                    }
                }
                for j in 0..h {
                    hn[((l * d + dir) * b + s) * h + j] = state[j];
                }
            }
        }
        input = y;
    }
    (input, hn)
}

/// The GPU stack of a case: its parameters, written with `params`.
enum Stack {
    Gru(MinGru),
    Lstm(MinLstm),
}

impl Stack {
    fn new(c: &Case, seed: u64) -> Self {
        if c.lstm {
            Self::Lstm(MinLstm::new(ctx(), c.sizes(), seed).unwrap())
        } else {
            Self::Gru(MinGru::new(ctx(), c.sizes(), seed).unwrap())
        }
    }
    fn params(&self) -> Vec<Param> {
        match self {
            Self::Gru(m) => m.params(),
            Self::Lstm(m) => m.params(),
        }
    }
    fn with_storage(self, dtype: DType) -> Result<Self> {
        Ok(match self {
            Self::Gru(m) => Self::Gru(m.with_storage(dtype)?),
            Self::Lstm(m) => Self::Lstm(m.with_storage(dtype)?),
        })
    }
    fn apply(
        &self,
        tape: &mut Tape,
        x: &Var,
        lengths: &[usize],
        h0: Option<&HiddenState>,
    ) -> Result<(Var, HiddenState)> {
        match self {
            Self::Gru(m) => m.apply(tape, x, lengths, h0),
            Self::Lstm(m) => m.apply(tape, x, lengths, h0),
        }
    }
}

/// [`reference`] of `stack`'s parameters from a zero state.
fn reference_from_zero(
    c: &Case,
    stack: &Stack,
    x: &[f32],
    lengths: &[usize],
) -> (Vec<f64>, Vec<f64>) {
    let params: Vec<Vec<f64>> = stack
        .params()
        .iter()
        .map(|p| to_f64(&p.value.to_vec().unwrap()))
        .collect();
    let zeros = vec![0.0; c.layers * c.batch * c.hidden];
    reference(c, &params, &to_f64(x), &zeros, lengths)
}

impl Stack {
    fn stream(&self, rec: &mut Recorder, batch: usize) -> Result<Stream> {
        match self {
            Self::Gru(m) => m.stream(rec, batch),
            Self::Lstm(m) => m.stream(rec, batch),
        }
    }
}

/// A stream runs the scan's sequential form a token at a time, one dispatch
/// per layer and token: its output after each token is the f64 reference's
/// top-layer output at that step, on the step's scalar kernel (H 5) and its
/// vec4 one (H 8), for both cells, stacked. A bidirectional stack cannot stream.
#[test]
fn streams_give_the_reference_a_dispatch_per_layer_and_token() {
    let ctx = ctx();
    for lstm in [false, true] {
        for hidden in [5, 8] {
            let c = Case {
                lstm,
                batch: 2,
                steps: 5,
                input: 4,
                hidden,
                layers: 2,
                dirs: 1,
            };
            let stack = Stack::new(&c, 40 + hidden as u64);
            let x = Rng::new(41).vec(c.batch * c.steps * c.input);
            let (want_y, _) = reference_from_zero(&c, &stack, &x, &vec![c.steps; c.batch]);
            let mut rec = Recorder::new(ctx, "open");
            let mut stream = stack.stream(&mut rec, c.batch).unwrap();
            rec.submit();
            for t in 0..c.steps {
                let token: Vec<f32> = (0..c.batch)
                    .flat_map(|b| {
                        let at = (b * c.steps + t) * c.input;
                        x[at..at + c.input].to_vec()
                    })
                    .collect();
                let xt = Tensor::from_slice(ctx, &[c.batch, c.input], &token).unwrap();
                let mut rec = Recorder::new(ctx, "token");
                let y = stream.step(&mut rec, &xt).unwrap();
                assert_eq!(rec.dispatches(), c.layers, "lstm {lstm}, H {hidden}");
                let got = rec.submit_read(&y).unwrap();
                let want: Vec<f64> = (0..c.batch)
                    .flat_map(|b| {
                        let at = (b * c.steps + t) * c.hidden;
                        want_y[at..at + c.hidden].to_vec()
                    })
                    .collect();
                let what = format!("lstm {lstm}, H {hidden}, token {t}");
                assert_close(&what, &got, &want, 1e-4, 1e-5);
            }
        }
    }
    let bi = Case {
        lstm: false,
        batch: 1,
        steps: 1,
        input: 3,
        hidden: 4,
        layers: 1,
        dirs: 2,
    };
    let mut rec = Recorder::new(ctx, "bidirectional");
    assert!(matches!(
        Stack::new(&bi, 1).stream(&mut rec, 1),
        Err(Error::InvalidArgument { .. })
    ));
}

struct Run {
    y: Vec<f32>,
    hn: Vec<f32>,
    /// Gradients of Σ y·r + Σ h_n·s: x, h0, then the parameters.
    grads: Vec<Vec<f32>>,
}

/// Forward and backward on the GPU for upstream gradients `r` (of y) and `s`
/// (of h_n).
fn run(
    c: &Case,
    stack: &Stack,
    x: &[f32],
    h0: &[f32],
    lengths: &[usize],
    r: &[f32],
    s: &[f32],
) -> Run {
    let ctx = ctx();
    let (b, t, d, h) = (c.batch, c.steps, c.dirs, c.hidden);
    let px = Param::new(Tensor::from_slice(ctx, &[b, t, c.input], x).unwrap()).unwrap();
    let ph = Param::new(Tensor::from_slice(ctx, &[c.layers * d, b, h], h0).unwrap()).unwrap();
    let params = stack.params();
    let mut tape = Tape::train(ctx, "min_rnn");
    for p in &params {
        tape.rec().zero(&p.grad).unwrap();
    }
    let xv = tape.param(&px);
    let state = HiddenState { h: tape.param(&ph) };
    let (y, hn) = stack.apply(&mut tape, &xv, lengths, Some(&state)).unwrap();
    if y.tensor().dtype() == DType::F16 {
        // An f16 y joins no f32 value on a tape: its gradient alone (s is 0).
        assert!(s.iter().all(|&v| v == 0.0));
        let upstream = Tensor::from_slice(ctx, y.shape(), r).unwrap();
        tape.backward_with(&y, &upstream).unwrap();
    } else {
        let flat_y = tape.reshape(&y, &[y.numel()]).unwrap();
        let flat_h = tape.reshape(&hn.h, &[hn.h.numel()]).unwrap();
        let both = tape.cat(&[&flat_y, &flat_h], 0).unwrap();
        let upstream = Tensor::from_slice(ctx, both.shape(), &[r, s].concat()).unwrap();
        tape.backward_with(&both, &upstream).unwrap();
    }
    tape.into_recorder().submit();
    let mut grads = vec![px.grad.to_vec().unwrap(), ph.grad.to_vec().unwrap()];
    grads.extend(params.iter().map(|p| p.grad.to_vec().unwrap()));
    Run {
        y: y.to_vec().unwrap(),
        hn: hn.h.to_vec().unwrap(),
        grads,
    }
}

/// Random lengths in 1..=T with T itself among them.
fn lengths(rng: &mut Rng, c: &Case) -> Vec<usize> {
    (0..c.batch)
        .map(|i| {
            if i == 0 {
                c.steps
            } else {
                1 + (rng.next_u64() as usize) % c.steps
            }
        })
        .collect()
}

/// Checks forward and, at `samples` coordinates of each gradient (all where
/// None), the backward against central differences of the reference.
fn check(c: Case, seed: u64, samples: Option<usize>) {
    let mut rng = Rng::new(seed);
    let stack = Stack::new(&c, seed);
    let params: Vec<Vec<f64>> = stack
        .params()
        .iter()
        .map(|p| to_f64(&p.value.to_vec().unwrap()))
        .collect();
    let (b, t, d, h) = (c.batch, c.steps, c.dirs, c.hidden);
    let x = rng.vec(b * t * c.input);
    let h0 = rng.vec(c.layers * d * b * h);
    let lens = lengths(&mut rng, &c);
    let r = rng.vec(b * t * d * h);
    let s = rng.vec(c.layers * d * b * h);
    let got = run(&c, &stack, &x, &h0, &lens, &r, &s);
    let what = format!("{c:?} lengths {lens:?}");
    let (x64, h064) = (to_f64(&x), to_f64(&h0));
    let (want_y, want_h) = reference(&c, &params, &x64, &h064, &lens);
    assert_close(&format!("y of {what}"), &got.y, &want_y, 1e-4, 1e-5);
    assert_close(&format!("h_n of {what}"), &got.hn, &want_h, 1e-4, 1e-5);

    let (r64, s64) = (to_f64(&r), to_f64(&s));
    let loss = |x: &[f64], h0: &[f64], params: &[Vec<f64>]| {
        let (y, hn) = reference(&c, params, x, h0, &lens);
        y.iter().zip(&r64).map(|(a, b)| a * b).sum::<f64>()
            + hn.iter().zip(&s64).map(|(a, b)| a * b).sum::<f64>()
    };
    let mut inputs = vec![x64, h064];
    inputs.extend(params);
    let names = ["x", "h0"];
    for which in 0..inputs.len() {
        let n = inputs[which].len();
        let coords: Vec<usize> = match samples {
            None => (0..n).collect(),
            Some(k) => (0..k).map(|_| (rng.next_u64() as usize) % n).collect(),
        };
        let mut want = Vec::with_capacity(coords.len());
        let mut have = Vec::with_capacity(coords.len());
        for &e in &coords {
            let eps = 1e-6;
            let mut shifted = inputs.clone();
            shifted[which][e] += eps;
            let up = loss(&shifted[0], &shifted[1], &shifted[2..]);
            shifted[which][e] -= 2.0 * eps;
            let down = loss(&shifted[0], &shifted[1], &shifted[2..]);
            want.push((up - down) / (2.0 * eps));
            have.push(got.grads[which][e]);
        }
        let name = names
            .get(which)
            .map_or(format!("parameter {}", which - 2), |s| s.to_string());
        assert_close(&format!("d{name} of {what}"), &have, &want, 1e-3, 1e-4);
    }
}

#[test]
fn small_stacks_match_the_reference_and_finite_differences() {
    for (i, lstm) in [false, true].into_iter().enumerate() {
        for (layers, dirs) in [(1, 1), (1, 2), (2, 2)] {
            let c = Case {
                lstm,
                batch: 3,
                steps: 5,
                input: 3,
                hidden: 4,
                layers,
                dirs,
            };
            check(c, 10 + i as u64 * 7 + layers as u64 * 3 + dirs as u64, None);
        }
    }
}

/// T of 1, primes, powers of two and their neighbours up to 4096: the chunks of
/// the scan (16 per channel) empty, ragged and full, with mixed lengths; a unit
/// per invocation (H = 3) and four (H = 4).
#[test]
fn any_length_of_sequence_matches_the_reference() {
    for (i, steps) in [1, 2, 3, 7, 15, 16, 17, 31, 64, 127, 256, 1000, 4096]
        .into_iter()
        .enumerate()
    {
        for (lstm, hidden) in [(false, 3), (true, 3), (false, 4), (true, 4)] {
            let c = Case {
                lstm,
                batch: 3,
                steps,
                input: 2,
                hidden,
                layers: 1,
                dirs: 2,
            };
            check(c, 100 + i as u64, Some(6));
        }
    }
}

/// Enough channels (direction × sequence × unit) that each scans its steps
/// alone, and fewer, in 2 or 4 chunks.
#[test]
fn wide_layers_scan_each_channel_through_time() {
    for (i, (batch, steps)) in [(16, 9), (4, 33), (2, 7)].into_iter().enumerate() {
        for lstm in [false, true] {
            let c = Case {
                lstm,
                batch,
                steps,
                input: 2,
                hidden: 128,
                layers: 1,
                dirs: 2,
            };
            check(c, 300 + i as u64, Some(8));
        }
    }
}

#[test]
fn without_an_initial_state_the_state_starts_at_zero() {
    let c = Case {
        lstm: false,
        batch: 2,
        steps: 6,
        input: 3,
        hidden: 4,
        layers: 2,
        dirs: 1,
    };
    let stack = Stack::new(&c, 5);
    let mut rng = Rng::new(5);
    let x = rng.vec(c.batch * c.steps * c.input);
    let lens = [6, 4];
    let mut tape = Tape::eval(ctx(), "zero state");
    let xv = Var::constant(Tensor::from_slice(ctx(), &[2, 6, 3], &x).unwrap());
    let (y, hn) = stack.apply(&mut tape, &xv, &lens, None).unwrap();
    tape.into_recorder().submit();
    let (want_y, want_h) = reference_from_zero(&c, &stack, &x, &lens);
    assert_close("y", &y.to_vec().unwrap(), &want_y, 1e-4, 1e-5);
    assert_close("h_n", &hn.h.to_vec().unwrap(), &want_h, 1e-4, 1e-5);
}

#[test]
fn parameters_have_pytorch_style_names_and_bad_input_is_refused() {
    let sizes = Config::new(3, 4).with_layers(2).with_bidirectional(true);
    let lstm = MinLstm::new(ctx(), sizes, 1).unwrap();
    let names: Vec<(String, Vec<usize>)> = lstm
        .named_params()
        .into_iter()
        .map(|n| (n.name, n.shape))
        .collect();
    let want: Vec<(String, Vec<usize>)> = [
        ("weight_ih_l0", vec![12, 3]),
        ("weight_ih_l0_reverse", vec![12, 3]),
        ("bias_ih_l0", vec![12]),
        ("bias_ih_l0_reverse", vec![12]),
        ("weight_ih_l1", vec![12, 8]),
        ("weight_ih_l1_reverse", vec![12, 8]),
        ("bias_ih_l1", vec![12]),
        ("bias_ih_l1_reverse", vec![12]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    assert_eq!(names, want);

    let ctx = ctx();
    let gru = MinGru::new(ctx, Config::new(3, 4), 1).unwrap();
    let mut tape = Tape::train(ctx, "bad");
    let x = Var::constant(Tensor::zeros(ctx, &[2, 5, 3]).unwrap());
    for (lengths, what) in [
        (vec![5, 0], "length 0"),
        (vec![5, 6], "past T"),
        (vec![5], "one length"),
    ] {
        let err = gru.apply(&mut tape, &x, &lengths, None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::LengthOutOfRange { .. } | Error::ShapeMismatch { .. }
            ),
            "{what}: {err}"
        );
    }
    let wide = Var::constant(Tensor::zeros(ctx, &[2, 5, 4]).unwrap());
    assert!(matches!(
        gru.apply(&mut tape, &wide, &[5, 5], None),
        Err(Error::ShapeMismatch { .. })
    ));
    let h0 = HiddenState {
        h: Var::constant(Tensor::zeros(ctx, &[2, 2, 4]).unwrap()),
    };
    assert!(matches!(
        gru.apply(&mut tape, &x, &[5, 5], Some(&h0)),
        Err(Error::ShapeMismatch { what: "h0", .. })
    ));
    assert!(matches!(
        MinGru::new(ctx, Config::new(3, 0), 1),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(
        gru.clone().with_dropout(1.0, 1),
        Err(Error::InvalidArgument { .. })
    ));
}

/// f16 storage (pre-activations and outputs f16, the scan in f32): a chunked,
/// stacked, bidirectional case of each cell gives the f64 reference's outputs
/// and the f32 stack's gradients (from y's) within f16 rounding, and its `y`
/// is f16.
#[test]
fn f16_storage_gives_the_reference_within_rounding() {
    if !ctx().has_f16() {
        let err = MinGru::new(ctx(), Config::new(3, 4), 1)
            .unwrap()
            .with_storage(DType::F16)
            .unwrap_err();
        assert!(matches!(err, Error::FeatureMissing { .. }), "{err}");
        return;
    }
    for lstm in [false, true] {
        let c = Case {
            lstm,
            batch: 3,
            steps: 37,
            input: 5,
            hidden: 6,
            layers: 2,
            dirs: 2,
        };
        let mut rng = Rng::new(71);
        let (b, t, d, h) = (c.batch, c.steps, c.dirs, c.hidden);
        let x = rng.vec(b * t * c.input);
        let h0 = rng.vec(c.layers * d * b * h);
        let lens = lengths(&mut rng, &c);
        let r = rng.vec(b * t * d * h);
        let s = vec![0.0; c.layers * d * b * h];
        let plain = Stack::new(&c, 5);
        let half = Stack::new(&c, 5).with_storage(DType::F16).unwrap();
        let params: Vec<Vec<f64>> = plain
            .params()
            .iter()
            .map(|p| to_f64(&p.value.to_vec().unwrap()))
            .collect();
        let (want_y, want_h) = reference(&c, &params, &to_f64(&x), &to_f64(&h0), &lens);
        let want = run(&c, &plain, &x, &h0, &lens, &r, &s);
        let got = run(&c, &half, &x, &h0, &lens, &r, &s);
        let what = format!("f16 {c:?}");
        assert_close(&format!("y of {what}"), &got.y, &want_y, 1e-2, 5e-3);
        assert_close(&format!("h_n of {what}"), &got.hn, &want_h, 1e-2, 5e-3);
        for (k, (g, w)) in got.grads.iter().zip(&want.grads).enumerate() {
            assert_close(
                &format!("gradient {k} of {what}"),
                g,
                &to_f64(w),
                2e-2,
                1e-2,
            );
        }
        let mut tape = Tape::eval(ctx(), "dtype");
        let xv = Var::constant(Tensor::from_slice(ctx(), &[b, t, c.input], &x).unwrap());
        let (y, _) = half.apply(&mut tape, &xv, &lens, None).unwrap();
        assert_eq!(y.tensor().dtype(), DType::F16);
    }
}
