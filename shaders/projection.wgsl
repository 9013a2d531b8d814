// The LSTM's output projection (torch.nn.LSTM's proj_size): the state a step
// passes on, and outputs, is h = W_hr · (o ⊙ tanh(c)), P values from the cell's H.
// The cell writes its H-wide output into hf (slots as recurrence.wgsl's hs);
// `forward` projects a step's slot of hf into hp, or past a sequence's length
// carries hp's state. Backward runs `backward_state` then `backward`: the
// running gradient of the projected state, g = dh + dy (0 past the length), is
// kept per step for dW_hr and taken out of dh (which carries it past the
// length); then df = g · W_hr is the cell's output gradient.
// Layouts (slots as in recurrence.wgsl: direction 0 reads slot t and writes
// t + 1, direction 1 reads t + 1 and writes t):
//   hf [D, T + 1, B, H]   hp [D, T + 1, B, P]   w_hr [D, P, H]
//   dh [D, B, P]   dy [B, T, D·P]   df [D, B, H]   g [D, T, B, P]
// Dispatch (ceil(P / 64), B, D) for forward and backward_state, one invocation
// per projected unit; (ceil(H / 64), B, D) for backward, one per cell unit.

struct Params {
    b: u32, t: u32, h: u32, d: u32,
    step: u32, p: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> lengths: array<u32>;
@group(0) @binding(2) var<storage, read> hf: array<f32>;
@group(0) @binding(3) var<storage, read_write> hp: array<f32>;
@group(0) @binding(4) var<storage, read> w_hr: array<f32>;
@group(0) @binding(5) var<storage, read_write> dh: array<f32>;
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> df: array<f32>;
@group(0) @binding(8) var<storage, read_write> g: array<f32>;

// The step's time (by direction) and slots: (t, prev, next).
fn slots(d: u32) -> vec3<u32> {
    let reverse = d == 1u;
    let t = select(p.step, p.t - 1u - p.step, reverse);
    return vec3<u32>(t, select(t, t + 1u, reverse), select(t + 1u, t, reverse));
}

// Index of unit k of sequence b in slot `slot` of direction d, rows `width` wide.
fn at(d: u32, slot: u32, b: u32, k: u32, width: u32) -> u32 {
    return ((d * (p.t + 1u) + slot) * p.b + b) * width + k;
}

@compute @workgroup_size(64, 1, 1)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    let b = gid.y;
    let d = gid.z;
    if (k >= p.p) {
        return;
    }
    let s = slots(d);
    if (s.x >= lengths[b]) {
        hp[at(d, s.z, b, k, p.p)] = hp[at(d, s.y, b, k, p.p)];
        return;
    }
    let w0 = (d * p.p + k) * p.h;
    let f0 = at(d, s.z, b, 0u, p.h);
    var acc = 0.0;
    for (var j = 0u; j < p.h; j++) {
        acc = fma(w_hr[w0 + j], hf[f0 + j], acc);
    }
    hp[at(d, s.z, b, k, p.p)] = acc;
}

@compute @workgroup_size(64, 1, 1)
fn backward_state(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    let b = gid.y;
    let d = gid.z;
    if (k >= p.p) {
        return;
    }
    let t = slots(d).x;
    let s = (d * p.b + b) * p.p + k;
    let row = ((d * p.t + t) * p.b + b) * p.p + k;
    if (t >= lengths[b]) {
        g[row] = 0.0;
        return;
    }
    g[row] = dh[s] + dy[(b * p.t + t) * p.d * p.p + d * p.p + k];
    dh[s] = 0.0;
}

@compute @workgroup_size(64, 1, 1)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let b = gid.y;
    let d = gid.z;
    if (j >= p.h) {
        return;
    }
    let t = slots(d).x;
    let g0 = ((d * p.t + t) * p.b + b) * p.p;
    var acc = 0.0;
    for (var k = 0u; k < p.p; k++) {
        acc = fma(g[g0 + k], w_hr[(d * p.p + k) * p.h + j], acc);
    }
    df[(d * p.b + b) * p.h + j] = acc;
}
