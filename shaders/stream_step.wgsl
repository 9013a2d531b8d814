// One step of one recurrent layer for a stream: the input product, the recurrent
// product and the cell in one dispatch, every sequence advancing by one token.
// An invocation owns a unit and reads the rows of its gates along k. The
// minimal cells (minGRU, minLSTM: gates of the input only) have no recurrent
// product: their step is the sequential form of min_rnn.wgsl's scan,
//   minGRU  (z, h̃):    z = σ(p_z),                 h = (1 − z) ⊙ h' + z ⊙ p_h̃
//   minLSTM (f, i, h̃): f = σ(p_f), i = σ(p_i), s = f + i, h = (f/s) ⊙ h' + (i/s) ⊙ p_h̃
// with p = x·W_ihᵀ + b_ih; they bind w_ih as w_hh and never read it (S = H).
//   x       [B, T, I]  the input: step t is read (the layer below's new h: T = 1)
//   h       [B, S]  the state before the step: S = H, or P for a projected LSTM
//   c       [B, H]  the LSTM's cell state before the step
//   w_ih    [G, I]  G = gates · H, gates in PyTorch's order
//   w_hh    [G, S]
//   bias    [2, G]  b_ih then b_hh
//   h_out, c_out [B, H]  the cell's output and state after the step (a projected
//                   LSTM's host projects h_out to the next state)
// A cell without c binds h as c and h_out as c_out and never reads them.
// Dispatch (ceil(H / 64), B): one invocation per unit j of sequence b. Where I
// and S are multiples of 4, forward4 reads the rows, x and h as vec4s instead:
// (ceil(H / WG), B), workgroups of WG invocations.

// 0: LSTM (i f g o), 1: GRU (r z n), 2: RNN tanh, 3: RNN relu, 4: minGRU
// (z h̃), 5: minLSTM (f i h̃).
override MODE: u32 = 0u;

struct Params {
    b: u32, i: u32, h: u32, t: u32,
    // x's steps (T) and the step read
    steps: u32,
    // zoneout's probabilities for h and c: a stream keeps their expectation,
    // h = P·h' + (1 − P)·h_new (0: none)
    h_zone: f32, c_zone: f32,
    // S, the width of h
    s: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> h: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read> w_ih: array<f32>;
@group(0) @binding(5) var<storage, read> w_hh: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> h_out: array<f32>;
@group(0) @binding(8) var<storage, read_write> c_out: array<f32>;
// forward4's vec4 views of w_ih, w_hh, x and h.
@group(0) @binding(9) var<storage, read> w_ih4: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> w_hh4: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(13) var<storage, read> h4: array<vec4<f32>>;

// forward4's workgroup size: 64, or 16 where a few sequences would otherwise
// leave a CPU adapter's cores without workgroups.
override WG: u32 = 64u;

fn gates() -> u32 {
    var n = 1u;
    switch MODE {
        case 0u: { n = 4u; }
        case 1u, 5u: { n = 3u; }
        case 4u: { n = 2u; }
        default: {}
    }
    return n;
}

// Whether the cell has a recurrent product (the minimal cells do not).
fn recurrent() -> bool {
    return MODE < 4u;
}

// The biases of the first n gates of unit j from bias[at].
fn bias_of(at: u32, n: u32) -> vec4<f32> {
    var out = vec4<f32>(bias[at], 0.0, 0.0, 0.0);
    if (n > 1u) {
        out.y = bias[at + p.h];
    }
    if (n > 2u) {
        out.z = bias[at + 2u * p.h];
    }
    if (n > 3u) {
        out.w = bias[at + 3u * p.h];
    }
    return out;
}

@compute @workgroup_size(64, 1, 1)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let b = gid.y;
    if (j >= p.h || b >= p.b) {
        return;
    }
    let n = gates();
    // Input and recurrent pre-activations of the gates of unit j, apart: the GRU
    // resets only the recurrent part of n. Gates past n stay 0 (n is constant
    // per pipeline, so the branches fold away).
    let xs = (b * p.steps + p.t) * p.i;
    var gi = vec4<f32>(0.0);
    for (var k = 0u; k < p.i; k++) {
        let v = x[xs + k];
        let w = j * p.i + k;
        let s = p.h * p.i;
        gi.x = fma(w_ih[w], v, gi.x);
        if (n > 1u) {
            gi.y = fma(w_ih[w + s], v, gi.y);
        }
        if (n > 2u) {
            gi.z = fma(w_ih[w + 2u * s], v, gi.z);
        }
        if (n > 3u) {
            gi.w = fma(w_ih[w + 3u * s], v, gi.w);
        }
    }
    var gh = vec4<f32>(0.0);
    let s_rec = select(0u, p.s, recurrent());
    for (var k = 0u; k < s_rec; k++) {
        let v = h[b * p.s + k];
        let w = j * p.s + k;
        let s = p.h * p.s;
        gh.x = fma(w_hh[w], v, gh.x);
        if (n > 1u) {
            gh.y = fma(w_hh[w + s], v, gh.y);
            gh.z = fma(w_hh[w + 2u * s], v, gh.z);
        }
        if (n > 3u) {
            gh.w = fma(w_hh[w + 3u * s], v, gh.w);
        }
    }
    gi += bias_of(j, n);
    if (recurrent()) {
        gh += bias_of(n * p.h + j, n);
    }
    cell(b, j, gi, gh, prev_h(b, j));
}

// The state of unit j before the step, which the GRU and zoneout read (S = H
// for them: only an LSTM projects); prev_h4 through forward4's view.
fn reads_prev() -> bool {
    return MODE != 0u || p.h_zone != 0.0;
}

fn prev_h(b: u32, j: u32) -> f32 {
    if (!reads_prev()) {
        return 0.0;
    }
    return h[b * p.s + j];
}

fn prev_h4(b: u32, j: u32) -> f32 {
    if (!reads_prev()) {
        return 0.0;
    }
    let s = b * p.s + j;
    return h4[s / 4u][s % 4u];
}

// The cell of unit j of sequence b from its gates' input (gi) and recurrent (gh)
// pre-activations, biases included, and its state h_prev: writes h_out and c_out.
fn cell(b: u32, j: u32, gi: vec4<f32>, gh: vec4<f32>, h_prev: f32) {
    let s = b * p.h + j;
    var h_new: f32;
    switch MODE {
        case 0u: {
            let a = gi + gh;
            let c_new = sigmoid(a.y) * c[s] + sigmoid(a.x) * tanh_(a.z);
            c_out[s] = mix(c_new, c[s], p.c_zone);
            h_new = sigmoid(a.w) * tanh_(c_new);
        }
        case 1u: {
            let r = sigmoid(gi.x + gh.x);
            let z = sigmoid(gi.y + gh.y);
            let m = tanh_(gi.z + r * gh.z);
            h_new = (1.0 - z) * m + z * h_prev;
        }
        case 2u: {
            h_new = tanh_(gi.x + gh.x);
        }
        case 3u: {
            h_new = max(gi.x + gh.x, 0.0);
        }
        case 4u: {
            let z = sigmoid(gi.x);
            h_new = (1.0 - z) * h_prev + z * gi.y;
        }
        default: {
            let f = sigmoid(gi.x);
            let ig = sigmoid(gi.y);
            let total = f + ig;
            h_new = (f / total) * h_prev + (ig / total) * gi.z;
        }
    }
    h_out[s] = mix(h_new, h_prev, p.h_zone);
}

@compute @workgroup_size(WG, 1, 1)
fn forward4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let b = gid.y;
    if (j >= p.h || b >= p.b) {
        return;
    }
    let n = gates();
    let i4 = p.i / 4u;
    // acc[q]: the products of gate q's row, summed across its vec4 at the end.
    var ai = mat4x4<f32>();
    var ah = mat4x4<f32>();
    let xs = (b * p.steps + p.t) * p.i;
    for (var k = 0u; k < i4; k++) {
        let v = x4[xs / 4u + k];
        let w = j * i4 + k;
        ai[0] = fma(w_ih4[w], v, ai[0]);
        if (n > 1u) {
            ai[1] = fma(w_ih4[w + p.h * i4], v, ai[1]);
        }
        if (n > 2u) {
            ai[2] = fma(w_ih4[w + 2u * p.h * i4], v, ai[2]);
        }
        if (n > 3u) {
            ai[3] = fma(w_ih4[w + 3u * p.h * i4], v, ai[3]);
        }
    }
    let s4 = select(0u, p.s / 4u, recurrent());
    for (var k = 0u; k < s4; k++) {
        let v = h4[b * s4 + k];
        let w = j * s4 + k;
        ah[0] = fma(w_hh4[w], v, ah[0]);
        if (n > 1u) {
            ah[1] = fma(w_hh4[w + p.h * s4], v, ah[1]);
            ah[2] = fma(w_hh4[w + 2u * p.h * s4], v, ah[2]);
        }
        if (n > 3u) {
            ah[3] = fma(w_hh4[w + 3u * p.h * s4], v, ah[3]);
        }
    }
    let ones = vec4<f32>(1.0);
    var gi = ones * ai;
    var gh = ones * ah;
    let g = n * p.h;
    gi += bias_of(j, n);
    if (recurrent()) {
        gh += bias_of(g + j, n);
    }
    cell(b, j, gi, gh, prev_h4(b, j));
}
