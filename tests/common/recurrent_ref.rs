//! Plain f64 recurrent layers (PyTorch's semantics) and central finite
//! differences of their loss, the reference for the GPU layers.

use std::collections::BTreeMap;

/// Parameters by PyTorch name, in f64.
pub type Params = BTreeMap<String, Vec<f64>>;

#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// `lstm`, `gru`, `rnn_tanh` or `rnn_relu`.
    pub mode: &'static str,
    pub input: usize,
    pub hidden: usize,
    pub layers: usize,
    pub dirs: usize,
    /// P of the LSTM's output projection (weight_hr); 0 for none.
    pub proj: usize,
}

impl Spec {
    pub fn gates(&self) -> usize {
        match self.mode {
            "lstm" => 4,
            "gru" => 3,
            _ => 1,
        }
    }

    pub fn lstm(&self) -> bool {
        self.mode == "lstm"
    }

    /// S, the width of the states and outputs: P with a projection, else H.
    pub fn state(&self) -> usize {
        if self.proj > 0 {
            self.proj
        } else {
            self.hidden
        }
    }
}

/// Inputs of one forward: x `[B, T, I]`, h0 `[L·D, B, S]` and c0 `[L·D, B, H]`,
/// what multiplies each layer's output `[B, T, D·S]` but the last's before
/// the next layer reads it (dropout's mask and scale; none when empty),
/// zoneout, and recurrent dropout: per layer, what multiplies each state
/// `[D, B, H]` where the recurrent product reads it (none when empty).
#[derive(Clone, Debug)]
pub struct Inputs {
    pub batch: usize,
    pub steps: usize,
    pub lengths: Vec<usize>,
    pub x: Vec<f64>,
    pub h0: Vec<f64>,
    pub c0: Vec<f64>,
    pub between: Vec<Vec<f64>>,
    pub zoneout: Option<Zoneout>,
    pub recurrent: Vec<Vec<f64>>,
}

/// Zoneout as `shaders/recurrence.wgsl` applies it: a unit keeps its previous h
/// (c) with probability `h` (`c`), drawn from layer l's seed `seeds[l]` in
/// training, or takes the expectation when `seeds` is empty.
#[derive(Clone, Debug)]
pub struct Zoneout {
    pub h: f32,
    pub c: f32,
    pub seeds: Vec<u32>,
}

impl Zoneout {
    /// z of unit j of sequence b at step t in direction d of layer l, for h or
    /// (when `c`) for c, in a batch of `batch` sequences of `steps` steps.
    #[allow(clippy::too_many_arguments)]
    fn z(&self, c: bool, l: usize, d: usize, t: usize, b: usize, j: usize, geo: [usize; 3]) -> f64 {
        let [batch, steps, hidden] = geo;
        let p = if c { self.c } else { self.h };
        let Some(&seed) = self.seeds.get(l) else {
            return f64::from(p);
        };
        let index = (((d * steps + t) * batch + b) * hidden + j) as u32;
        let seed = if c { seed ^ 0x9e37_79b9 } else { seed };
        if super::pcg(super::pcg(index) ^ seed) < super::hash_threshold(p) {
            1.0
        } else {
            0.0
        }
    }
}

/// y `[B, T, D·S]`, h_n `[L·D, B, S]` and c_n `[L·D, B, H]` (c_n empty unless
/// LSTM).
#[derive(Clone, Debug)]
pub struct Outputs {
    pub y: Vec<f64>,
    pub h_n: Vec<f64>,
    pub c_n: Vec<f64>,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `W[rows, cols] · v` plus `b`.
fn affine(w: &[f64], b: &[f64], v: &[f64]) -> Vec<f64> {
    let cols = v.len();
    b.iter()
        .enumerate()
        .map(|(r, &bias)| bias + (0..cols).map(|k| w[r * cols + k] * v[k]).sum::<f64>())
        .collect()
}

thread_local! {
    /// The smallest |pre-activation| of a ReLU cell since the last [`relu_margin`].
    static RELU_MARGIN: std::cell::Cell<f64> = const { std::cell::Cell::new(f64::INFINITY) };
}

/// How close the ReLU pre-activations of a [`forward`] come to the kink at 0
/// (infinity for other cells): central differences across the kink are not
/// the gradient, so a gradient check needs a margin well above their step.
pub fn relu_margin(spec: &Spec, p: &Params, inp: &Inputs) -> f64 {
    RELU_MARGIN.with(|m| m.set(f64::INFINITY));
    forward(spec, p, inp);
    RELU_MARGIN.with(|m| m.get())
}

/// One cell step: new (h, c) from input x and state (h, c), the recurrent
/// product reading `h_read` (h, or h under recurrent dropout's mask).
fn cell(
    spec: &Spec,
    p: &Params,
    name: &str,
    x: &[f64],
    (h, c): (&[f64], &[f64]),
    h_read: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let hn = spec.hidden;
    let gi = affine(
        &p[&format!("weight_ih{name}")],
        &p[&format!("bias_ih{name}")],
        x,
    );
    let gh = affine(
        &p[&format!("weight_hh{name}")],
        &p[&format!("bias_hh{name}")],
        h_read,
    );
    if let Some(ln_ih) = p.get(&format!("layer_norm_ih_weight{name}")) {
        return layer_norm_lstm(spec, p, name, ln_ih, x, (h_read, c));
    }
    match spec.mode {
        "lstm" => {
            let pre = |k: usize, j: usize| gi[k * hn + j] + gh[k * hn + j];
            let mut h2 = vec![0.0; hn];
            let mut c2 = vec![0.0; hn];
            for j in 0..hn {
                let (i, f, g, o) = (
                    sigmoid(pre(0, j)),
                    sigmoid(pre(1, j)),
                    pre(2, j).tanh(),
                    sigmoid(pre(3, j)),
                );
                c2[j] = f * c[j] + i * g;
                h2[j] = o * c2[j].tanh();
            }
            match p.get(&format!("weight_hr{name}")) {
                // h = W_hr · (o ⊙ tanh(c)), P of them.
                Some(w_hr) => (affine(w_hr, &vec![0.0; spec.proj], &h2), c2),
                None => (h2, c2),
            }
        }
        "gru" => {
            let h2 = (0..hn)
                .map(|j| {
                    let r = sigmoid(gi[j] + gh[j]);
                    let z = sigmoid(gi[hn + j] + gh[hn + j]);
                    let n = (gi[2 * hn + j] + r * gh[2 * hn + j]).tanh();
                    (1.0 - z) * n + z * h[j]
                })
                .collect();
            (h2, vec![])
        }
        "rnn_tanh" => ((0..hn).map(|j| (gi[j] + gh[j]).tanh()).collect(), vec![]),
        "rnn_relu" => {
            let z: Vec<f64> = (0..hn).map(|j| gi[j] + gh[j]).collect();
            RELU_MARGIN.with(|m| m.set(z.iter().fold(m.get(), |a, v| a.min(v.abs()))));
            (z.iter().map(|v| v.max(0.0)).collect(), vec![])
        }
        other => panic!("unknown mode {other}"),
    }
}

/// (v − mean) / √(biased variance + 1e-5) over v.
fn normalized(v: &[f64]) -> Vec<f64> {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    v.iter().map(|x| (x - mean) / (var + 1e-5).sqrt()).collect()
}

/// A LayerNorm-LSTM step (haste's formulation): a = LN(W_ih·x)·γ_ih +
/// LN(W_hh·h)·γ_hh + b_ih + b_hh, c = f·c' + i·g, h = o·tanh(LN(c)·γ_c + β_c).
fn layer_norm_lstm(
    spec: &Spec,
    p: &Params,
    name: &str,
    ln_ih: &[f64],
    x: &[f64],
    (h, c): (&[f64], &[f64]),
) -> (Vec<f64>, Vec<f64>) {
    let hn = spec.hidden;
    let param = |what: &str| &p[&format!("{what}{name}")];
    let zeros = vec![0.0; 4 * hn];
    let nx = normalized(&affine(param("weight_ih"), &zeros, x));
    let nh = normalized(&affine(param("weight_hh"), &zeros, h));
    let (ln_hh, b_ih, b_hh) = (
        param("layer_norm_hh_weight"),
        param("bias_ih"),
        param("bias_hh"),
    );
    let a: Vec<f64> = (0..4 * hn)
        .map(|k| nx[k] * ln_ih[k] + nh[k] * ln_hh[k] + b_ih[k] + b_hh[k])
        .collect();
    let c2: Vec<f64> = (0..hn)
        .map(|j| sigmoid(a[hn + j]) * c[j] + sigmoid(a[j]) * a[2 * hn + j].tanh())
        .collect();
    let nc = normalized(&c2);
    let (w, bias) = (param("layer_norm_c_weight"), param("layer_norm_c_bias"));
    let h2 = (0..hn)
        .map(|j| sigmoid(a[3 * hn + j]) * (nc[j] * w[j] + bias[j]).tanh())
        .collect();
    (h2, c2)
}

pub fn forward(spec: &Spec, p: &Params, inp: &Inputs) -> Outputs {
    // h_n is the state width S here (the cell state is H wide).
    let (b_n, t_n, h_n, d_n) = (inp.batch, inp.steps, spec.state(), spec.dirs);
    let hc = spec.hidden;
    let mut layer_in = inp.x.clone();
    let mut feat = spec.input;
    let mut out = Outputs {
        y: vec![],
        h_n: vec![0.0; spec.layers * d_n * b_n * h_n],
        c_n: if spec.lstm() {
            vec![0.0; spec.layers * d_n * b_n * hc]
        } else {
            vec![]
        },
    };
    for l in 0..spec.layers {
        let mut y = vec![0.0; b_n * t_n * d_n * h_n];
        for d in 0..d_n {
            let name = format!("_l{l}{}", if d == 1 { "_reverse" } else { "" });
            for b in 0..b_n {
                let row = (l * d_n + d) * b_n + b;
                let (s0, c0) = (row * h_n, row * hc);
                let mut h = inp.h0[s0..s0 + h_n].to_vec();
                let mut c = if spec.lstm() {
                    inp.c0[c0..c0 + hc].to_vec()
                } else {
                    vec![]
                };
                let len = inp.lengths[b];
                let times: Vec<usize> = if d == 0 {
                    (0..len).collect()
                } else {
                    (0..len).rev().collect()
                };
                for t in times {
                    let xi = &layer_in[(b * t_n + t) * feat..(b * t_n + t + 1) * feat];
                    let h_read: Vec<f64> = match inp.recurrent.get(l) {
                        Some(m) => {
                            let m0 = (d * b_n + b) * h_n;
                            h.iter().zip(&m[m0..m0 + h_n]).map(|(h, m)| h * m).collect()
                        }
                        None => h.clone(),
                    };
                    let (h2, c2) = cell(spec, p, &name, xi, (&h, &c), &h_read);
                    (h, c) = match &inp.zoneout {
                        None => (h2, c2),
                        Some(zo) => {
                            let mix = |new: &[f64], old: &[f64], is_c: bool| -> Vec<f64> {
                                (0..new.len())
                                    .map(|j| {
                                        let z = zo.z(is_c, l, d, t, b, j, [b_n, t_n, hc]);
                                        z * old[j] + (1.0 - z) * new[j]
                                    })
                                    .collect()
                            };
                            (mix(&h2, &h, false), mix(&c2, &c, true))
                        }
                    };
                    let yo = (b * t_n + t) * d_n * h_n + d * h_n;
                    y[yo..yo + h_n].copy_from_slice(&h);
                }
                out.h_n[s0..s0 + h_n].copy_from_slice(&h);
                if spec.lstm() {
                    out.c_n[c0..c0 + hc].copy_from_slice(&c);
                }
            }
        }
        if let Some(m) = inp.between.get(l).filter(|_| l + 1 < spec.layers) {
            y.iter_mut().zip(m).for_each(|(v, m)| *v *= m);
        }
        layer_in = y;
        feat = d_n * h_n;
    }
    out.y = layer_in;
    out
}

/// Upstream gradients: the loss is Σ y·dy + Σ h_n·dh_n + Σ c_n·dc_n.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub dy: Vec<f64>,
    pub dh_n: Vec<f64>,
    pub dc_n: Vec<f64>,
}

pub fn loss(spec: &Spec, p: &Params, inp: &Inputs, up: &Upstream) -> f64 {
    let o = forward(spec, p, inp);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    dot(&o.y, &up.dy) + dot(&o.h_n, &up.dh_n) + dot(&o.c_n, &up.dc_n)
}

/// Central differences of `f` with respect to every element of `v`.
pub fn numeric_grad(v: &mut [f64], mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    const EPS: f64 = 1e-6;
    (0..v.len())
        .map(|i| {
            let keep = v[i];
            v[i] = keep + EPS;
            let up = f(v);
            v[i] = keep - EPS;
            let down = f(v);
            v[i] = keep;
            (up - down) / (2.0 * EPS)
        })
        .collect()
}

/// Finite-difference gradients of [`loss`]: by parameter name, and of x, h0, c0.
pub struct Gradients {
    pub params: Params,
    pub x: Vec<f64>,
    pub h0: Vec<f64>,
    pub c0: Vec<f64>,
}

pub fn gradients(spec: &Spec, p: &Params, inp: &Inputs, up: &Upstream) -> Gradients {
    let mut params = Params::new();
    for name in p.keys() {
        let mut q = p.clone();
        let mut v = q[name].clone();
        let g = numeric_grad(&mut v, |v| {
            q.insert(name.clone(), v.to_vec());
            loss(spec, &q, inp, up)
        });
        params.insert(name.clone(), g);
    }
    let mut i2 = inp.clone();
    let mut v = inp.x.clone();
    let x = numeric_grad(&mut v, |v| {
        i2.x = v.to_vec();
        loss(spec, p, &i2, up)
    });
    let mut i2 = inp.clone();
    let mut v = inp.h0.clone();
    let h0 = numeric_grad(&mut v, |v| {
        i2.h0 = v.to_vec();
        loss(spec, p, &i2, up)
    });
    let mut i2 = inp.clone();
    let mut v = inp.c0.clone();
    let c0 = numeric_grad(&mut v, |v| {
        i2.c0 = v.to_vec();
        loss(spec, p, &i2, up)
    });
    Gradients { params, x, h0, c0 }
}
