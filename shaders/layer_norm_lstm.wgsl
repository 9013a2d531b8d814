
// LayerNorm-LSTM (haste's formulation; gates i, f, g, o as torch.nn.LSTM):
//   a = LN(x·W_ihᵀ) ⊙ γ_ih + LN(h'·W_hhᵀ) ⊙ γ_hh + b_ih + b_hh
//   [i f g o] = [σ σ tanh σ](a),  c = f ⊙ c' + i ⊙ g,  h = o ⊙ tanh(LN(c) ⊙ γ_c + β_c)
// LN(v) = (v − μ) · rstd over a row (the 4H gate pre-activations of one part, or
// the H cell values), rstd = 1 / √(σ² + eps), σ² biased. The products x·W_ihᵀ
// (all steps at once) and h'·W_hhᵀ (per step) are GEMMs on the host; this file
// does the rest. One workgroup of WG lanes per sequence b and direction d (a row:
// the normalizations reduce across it), its lanes taking units j = lane, lane +
// WG, ...; direction 0 runs t = step, direction 1 t = T − 1 − step. Past a
// sequence's length the states carry over and every gradient is 0.
// Layouts (D directions, B sequences, T steps, H units, G = 4H):
//   xw     [D, B, T, G]     input projections x·W_ihᵀ
//   gh     [D, B, G]        this step's recurrent projections h'·W_hhᵀ
//   lnp    [D, P]           per direction: γ_ih (G) | γ_hh (G) | b_ih (G) | b_hh (G) |
//                           γ_c (H) | β_c (H);  P = 4G + 2H
//   hs, cs [D, T + 1, B, H] states by slot, as in recurrence.wgsl
//   saved  [D, T, B, S]     per row: i f g o (G) | LN(h'·W_hhᵀ) (G) | μ_x rstd_x
//                           μ_h rstd_h μ_c rstd_c, 2 unused;  S = 2G + 8
//   dy     [B, T, D·H]      the outputs' gradient; dh, dc [D, B, H] running gradients
//   grads  [D, T, B, R]     per row: the gradient of h'·W_hhᵀ (G) | of a (G) | of
//                           LN(c) ⊙ γ_c + β_c (H);  R = 2G + H
//   dgi    [D, B, T, G]     the gradient of x·W_ihᵀ
//   dlnp   [D, Q]           the parameters' gradients: γ_ih | γ_hh | b (G each; b_ih's
//                           and b_hh's alike) | γ_c | β_c (H each);  Q = 3G + 2H
// Entries: forward and backward (one step; dispatch (1, B, D); forward_packing
// also writes the next step's packed GEMM operand), their vec4 twins forward4,
// forward_packing4 and backward4 for H a multiple of 4 (4 units per lane through
// vec4 views of the same buffers at the binding + 20: on CPU adapters a storage
// access costs per access whatever its width), input_backward
// (dgi of every row; (1, rows folded as layer_norm.wgsl's, D)), param_grads
// (one invocation per column of dlnp summing every row; (ceil(Q / 64), 1, D)).
// Zoneout (zoneout.wgsl, the recurrent cells' on h and c): h and c as stored
// mix the new values with the previous ones; the normalized cell and h_new read
// the new c, which with zoneout backward and param_grads compute again from the
// saved gates (cs holds the mixed c).
// WG and `reduce` come from workgroup_reduce.wgsl, pcg from hash.wgsl, zone_at
// from zoneout.wgsl, all prepended to this file.

struct Params {
    b: u32, t: u32, h: u32, d: u32,
    step: u32, eps: f32, seed: u32, h_threshold: u32,
    c_threshold: u32, h_zone: f32, c_zone: f32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> lengths: array<u32>;
@group(0) @binding(2) var<storage, read> xw: array<f32>;
@group(0) @binding(3) var<storage, read> gh: array<f32>;
@group(0) @binding(4) var<storage, read> lnp: array<f32>;
@group(0) @binding(5) var<storage, read_write> hs: array<f32>;
@group(0) @binding(6) var<storage, read_write> cs: array<f32>;
@group(0) @binding(7) var<storage, read_write> saved: array<f32>;
@group(0) @binding(8) var<storage, read> dy: array<f32>;
@group(0) @binding(9) var<storage, read_write> dh: array<f32>;
@group(0) @binding(10) var<storage, read_write> dc: array<f32>;
@group(0) @binding(11) var<storage, read_write> grads: array<f32>;
@group(0) @binding(12) var<storage, read_write> dgi: array<f32>;
@group(0) @binding(13) var<storage, read_write> dlnp: array<f32>;
// forward_packing: the new states as the next step's packed GEMM operand, texel
// (j / 4, b, d) = hs[next][d, b, j .. j + 4] (zeros past H), as recurrence.wgsl's.
@group(0) @binding(15) var next_packed: texture_storage_2d_array<rgba32float, write>;

var<workgroup> wg_len: u32;

fn g4() -> u32 {
    return 4u * p.h;
}

// Where a step's row reads and writes.
struct Row {
    live: bool,
    t: u32,
    prev: u32,  // hs, cs: unit 0 of the state before the step
    next: u32,  // and after it
    x: u32,     // xw, dgi: gate 0 of unit 0
    gh: u32,    // gh
    lnp: u32,   // lnp
    saved: u32, // saved
    grads: u32, // grads
    state: u32, // dh, dc
    zone: u32,  // zoneout's index of unit 0
}

// Row of sequence b, direction d at step `step`; `len` its length, loaded
// uniformly so that the workgroup's barriers stay in uniform control flow.
fn row(b: u32, d: u32, len: u32) -> Row {
    let t = select(p.step, p.t - 1u - p.step, d == 1u);
    let prev = select(t, t + 1u, d == 1u);
    let next = select(t + 1u, t, d == 1u);
    let r = (d * p.t + t) * p.b + b;
    var o: Row;
    o.live = t < len;
    o.t = t;
    o.prev = ((d * (p.t + 1u) + prev) * p.b + b) * p.h;
    o.next = ((d * (p.t + 1u) + next) * p.b + b) * p.h;
    o.x = ((d * p.b + b) * p.t + t) * g4();
    o.gh = (d * p.b + b) * g4();
    o.lnp = d * (4u * g4() + 2u * p.h);
    o.saved = r * (2u * g4() + 8u);
    o.grads = r * (2u * g4() + p.h);
    o.state = (d * p.b + b) * p.h;
    o.zone = r * p.h;
    return o;
}

fn length_of(lane: u32, b: u32) -> u32 {
    if (lane == 0u) {
        wg_len = lengths[b];
    }
    return workgroupUniformLoad(&wg_len);
}

// Mean and rstd of the n values src[at + k] (src: 0 xw, 1 gh, 2 cs).
fn moments(lane: u32, src: u32, at: u32, n: u32) -> vec2<f32> {
    var s = 0.0;
    for (var k = lane; k < n; k += WG) {
        s += load(src, at + k);
    }
    let mu = reduce(lane, s, false) / f32(n);
    var v = 0.0;
    for (var k = lane; k < n; k += WG) {
        let c = load(src, at + k) - mu;
        v += c * c;
    }
    return vec2<f32>(mu, inverseSqrt(reduce(lane, v, false) / f32(n) + p.eps));
}

fn load(src: u32, i: u32) -> f32 {
    switch src {
        case 0u: {
            return xw[i];
        }
        case 1u: {
            return gh[i];
        }
        default: {
            return cs[i];
        }
    }
}

@compute @workgroup_size(64, 1, 1)
fn forward(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    forward_row(lane, wid);
}

// forward, then the row's new states into the texture the next step's recurrent
// GEMM reads (in place of a pack dispatch).
@compute @workgroup_size(64, 1, 1)
fn forward_packing(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let next = forward_row(lane, wid);
    // The states other lanes wrote.
    storageBarrier();
    for (var q = lane; 4u * q < p.h; q += WG) {
        var v = vec4<f32>(0.0);
        for (var e = 0u; e < 4u; e++) {
            if (4u * q + e < p.h) {
                v[e] = hs[next + 4u * q + e];
            }
        }
        textureStore(next_packed, vec2<u32>(q, wid.y), wid.z, v);
    }
}

// One row's forward step; returns where its new states start in hs.
fn forward_row(lane: u32, wid: vec3<u32>) -> u32 {
    let b = wid.y;
    let o = row(b, wid.z, length_of(lane, b));
    let g = g4();
    let stats = o.saved + 2u * g;
    if (!o.live) {
        for (var j = lane; j < p.h; j += WG) {
            hs[o.next + j] = hs[o.prev + j];
            cs[o.next + j] = cs[o.prev + j];
        }
        // Zeros, which backward's parameter sums multiply by zero gradients.
        for (var k = lane; k < 2u * g + 8u; k += WG) {
            saved[o.saved + k] = 0.0;
        }
        return o.next;
    }
    let mx = moments(lane, 0u, o.x, g);
    let mh = moments(lane, 1u, o.gh, g);
    for (var j = lane; j < p.h; j += WG) {
        var a: array<f32, 4>;
        for (var k = 0u; k < 4u; k++) {
            let u = k * p.h + j;
            let nh = (gh[o.gh + u] - mh.x) * mh.y;
            saved[o.saved + g + u] = nh;
            a[k] = (xw[o.x + u] - mx.x) * mx.y * lnp[o.lnp + u] + nh * lnp[o.lnp + g + u]
                + lnp[o.lnp + 2u * g + u] + lnp[o.lnp + 3u * g + u];
        }
        let i = sigmoid(a[0]);
        let f = sigmoid(a[1]);
        let gg = tanh_(a[2]);
        let og = sigmoid(a[3]);
        // The new c, mixed with c' below once its moments are taken.
        cs[o.next + j] = f * cs[o.prev + j] + i * gg;
        saved[o.saved + j] = i;
        saved[o.saved + p.h + j] = f;
        saved[o.saved + 2u * p.h + j] = gg;
        saved[o.saved + 3u * p.h + j] = og;
    }
    // moments' last reduce is a barrier: every lane has read the new c.
    let mc = moments(lane, 2u, o.next, p.h);
    let cp = o.lnp + 4u * g;
    for (var j = lane; j < p.h; j += WG) {
        let c = cs[o.next + j];
        let nc = (c - mc.x) * mc.y;
        var h = saved[o.saved + 3u * p.h + j] * tanh_(nc * lnp[cp + j] + lnp[cp + p.h + j]);
        if (ZONEOUT) {
            h = mix(h, hs[o.prev + j], zone_at(o.zone + j, false));
            cs[o.next + j] = mix(c, cs[o.prev + j], zone_at(o.zone + j, true));
        }
        hs[o.next + j] = h;
    }
    if (lane == 0u) {
        saved[stats] = mx.x;
        saved[stats + 1u] = mx.y;
        saved[stats + 2u] = mh.x;
        saved[stats + 3u] = mh.y;
        saved[stats + 4u] = mc.x;
        saved[stats + 5u] = mc.y;
    }
    return o.next;
}

// The new c of a step before zoneout: cs[next] without zoneout, else f ⊙ c' + i ⊙ g
// again from the saved gates (`sv`: the row's saved values at unit j).
fn new_c(sv: u32, prev: u32, next: u32) -> f32 {
    if (ZONEOUT) {
        return saved[sv + p.h] * cs[prev] + saved[sv] * saved[sv + 2u * p.h];
    }
    return cs[next];
}

// One step of the backward, run from step T − 1 down to 0: the gradients of the
// row's h'·W_hhᵀ (for the host's dh += · W_hh and dW_hh), of a and of the
// normalized cell's affine output into grads, dc carried to the step before, dh
// left with zoneout's bypass (0 without; the host's product adds the rest).
@compute @workgroup_size(64, 1, 1)
fn backward(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let b = wid.y;
    let d = wid.z;
    let o = row(b, d, length_of(lane, b));
    let g = g4();
    if (!o.live) {
        for (var k = lane; k < 2u * g + p.h; k += WG) {
            grads[o.grads + k] = 0.0;
        }
        return;
    }
    let stats = o.saved + 2u * g;
    let mc = vec2<f32>(saved[stats + 4u], saved[stats + 5u]);
    let rstd_h = saved[stats + 3u];
    let cp = o.lnp + 4u * g;
    let y0 = (b * p.t + o.t) * p.d * p.h + d * p.h;
    // Through h = o ⊙ tanh(l), l = LN(c) ⊙ γ_c + β_c: dl, and LN's row sums.
    var s1 = 0.0;
    var s2 = 0.0;
    for (var j = lane; j < p.h; j += WG) {
        let nc = (new_c(o.saved + j, o.prev + j, o.next + j) - mc.x) * mc.y;
        let tl = tanh_(nc * lnp[cp + j] + lnp[cp + p.h + j]);
        let og = saved[o.saved + 3u * p.h + j];
        let dh_t = dh[o.state + j] + dy[y0 + j];
        let zh = zone_at(o.zone + j, false);
        let dh_new = (1.0 - zh) * dh_t;
        let dl = dh_new * og * (1.0 - tl * tl);
        grads[o.grads + 2u * g + j] = dl;
        // do, kept in its slot of da until the gates' pass reads it back.
        grads[o.grads + g + 3u * p.h + j] = dh_new * tl * og * (1.0 - og);
        dh[o.state + j] = zh * dh_t;
        let gc = dl * lnp[cp + j];
        s1 += gc;
        s2 += gc * nc;
    }
    let m1 = reduce(lane, s1, false) / f32(p.h);
    let m2 = reduce(lane, s2, false) / f32(p.h);
    var t1 = 0.0;
    var t2 = 0.0;
    for (var j = lane; j < p.h; j += WG) {
        let nc = (new_c(o.saved + j, o.prev + j, o.next + j) - mc.x) * mc.y;
        let gc = grads[o.grads + 2u * g + j] * lnp[cp + j];
        // dc holds the gradient of c as stored; dc_t is that of the new c.
        let zc = zone_at(o.zone + j, true);
        let dc_s = dc[o.state + j];
        let dc_t = (1.0 - zc) * dc_s + mc.y * (gc - m1 - nc * m2);
        let i = saved[o.saved + j];
        let f = saved[o.saved + p.h + j];
        let gg = saved[o.saved + 2u * p.h + j];
        var da: array<f32, 4>;
        da[0] = dc_t * gg * i * (1.0 - i);
        da[1] = dc_t * cs[o.prev + j] * f * (1.0 - f);
        da[2] = dc_t * i * (1.0 - gg * gg);
        da[3] = grads[o.grads + g + 3u * p.h + j];
        dc[o.state + j] = zc * dc_s + dc_t * f;
        for (var k = 0u; k < 4u; k++) {
            let u = k * p.h + j;
            grads[o.grads + g + u] = da[k];
            let gk = da[k] * lnp[o.lnp + g + u];
            t1 += gk;
            t2 += gk * saved[o.saved + g + u];
        }
    }
    let n1 = reduce(lane, t1, false) / f32(g);
    let n2 = reduce(lane, t2, false) / f32(g);
    for (var j = lane; j < p.h; j += WG) {
        for (var k = 0u; k < 4u; k++) {
            let u = k * p.h + j;
            let gk = grads[o.grads + g + u] * lnp[o.lnp + g + u];
            grads[o.grads + u] = rstd_h * (gk - n1 - saved[o.saved + g + u] * n2);
        }
    }
}

// dgi of row (b, t) of direction d: back through LN(x·W_ihᵀ) ⊙ γ_ih.
@compute @workgroup_size(64, 1, 1)
fn input_backward(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = wid.y + wid.z * nwg.y;
    if (r >= p.d * p.b * p.t) {
        return;
    }
    let t = r % p.t;
    let b = (r / p.t) % p.b;
    let d = r / (p.t * p.b);
    let g = g4();
    let sr = (d * p.t + t) * p.b + b;
    let stats = sr * (2u * g + 8u) + 2u * g;
    let mx = vec2<f32>(saved[stats], saved[stats + 1u]);
    let da = sr * (2u * g + p.h) + g;
    let lp = d * (4u * g + 2u * p.h);
    let x0 = r * g;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var k = lane; k < g; k += WG) {
        let gk = grads[da + k] * lnp[lp + k];
        s1 += gk;
        s2 += gk * (xw[x0 + k] - mx.x) * mx.y;
    }
    let m1 = reduce(lane, s1, false) / f32(g);
    let m2 = reduce(lane, s2, false) / f32(g);
    for (var k = lane; k < g; k += WG) {
        let gk = grads[da + k] * lnp[lp + k];
        dgi[x0 + k] = mx.y * (gk - m1 - (xw[x0 + k] - mx.x) * mx.y * m2);
    }
}

// Column `col` of dlnp for direction d, summed over every (t, b) in order.
@compute @workgroup_size(64, 1, 1)
fn param_grads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = g4();
    let col = gid.x;
    let d = gid.z;
    if (col >= 3u * g + 2u * p.h) {
        return;
    }
    var acc = 0.0;
    for (var t = 0u; t < p.t; t++) {
        for (var b = 0u; b < p.b; b++) {
            let sr = (d * p.t + t) * p.b + b;
            let sv = sr * (2u * g + 8u);
            let gr = sr * (2u * g + p.h);
            if (col < g) {
                // γ_ih: da ⊙ LN(x·W_ihᵀ)
                let nx = (xw[((d * p.b + b) * p.t + t) * g + col] - saved[sv + 2u * g]) * saved[sv + 2u * g + 1u];
                acc += grads[gr + g + col] * nx;
            } else if (col < 2u * g) {
                // γ_hh: da ⊙ LN(h'·W_hhᵀ)
                acc += grads[gr + col] * saved[sv + col];
            } else if (col < 3u * g) {
                // the biases: da
                acc += grads[gr + col - g];
            } else {
                let j = (col - 3u * g) % p.h;
                let dl = grads[gr + 2u * g + j];
                if (col < 3u * g + p.h) {
                    // γ_c: dl ⊙ LN(c), c the row's step's new c
                    let next = select(t + 1u, t, d == 1u);
                    let prev = select(t, t + 1u, d == 1u);
                    let slot = (d * (p.t + 1u)) * p.b + b;
                    let c = new_c(sv + j, (slot + prev * p.b) * p.h + j, (slot + next * p.b) * p.h + j);
                    acc += dl * (c - saved[sv + 2u * g + 4u]) * saved[sv + 2u * g + 5u];
                } else {
                    // β_c: dl
                    acc += dl;
                }
            }
        }
    }
    dlnp[d * (3u * g + 2u * p.h) + col] = acc;
}

// The vec4 twins of forward, forward_packing and backward: a lane takes units
// 4q .. 4q + 4 for q = lane, lane + WG, ...; every offset below counts vec4s.
// A row's statistics are saved[stats ..] = (μ_x, rstd_x, μ_h, rstd_h), (μ_c,
// rstd_c, 0, 0).
@group(0) @binding(22) var<storage, read> xw4: array<vec4<f32>>;
@group(0) @binding(23) var<storage, read> gh4: array<vec4<f32>>;
@group(0) @binding(24) var<storage, read> lnp4: array<vec4<f32>>;
@group(0) @binding(25) var<storage, read_write> hs4: array<vec4<f32>>;
@group(0) @binding(26) var<storage, read_write> cs4: array<vec4<f32>>;
@group(0) @binding(27) var<storage, read_write> saved4: array<vec4<f32>>;
@group(0) @binding(28) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(29) var<storage, read_write> dh4: array<vec4<f32>>;
@group(0) @binding(30) var<storage, read_write> dc4: array<vec4<f32>>;
@group(0) @binding(31) var<storage, read_write> grads4: array<vec4<f32>>;

fn hsum(v: vec4<f32>) -> f32 {
    return v.x + v.y + v.z + v.w;
}

// Mean and rstd of the 4n values of src[at .. at + n] (src: 0 xw, 1 gh, 2 cs).
fn moments4(lane: u32, src: u32, at: u32, n: u32) -> vec2<f32> {
    var s = 0.0;
    for (var k = lane; k < n; k += WG) {
        s += hsum(load4(src, at + k));
    }
    let mu = reduce(lane, s, false) / f32(4u * n);
    var v = 0.0;
    for (var k = lane; k < n; k += WG) {
        let c = load4(src, at + k) - mu;
        v += hsum(c * c);
    }
    return vec2<f32>(mu, inverseSqrt(reduce(lane, v, false) / f32(4u * n) + p.eps));
}

fn load4(src: u32, i: u32) -> vec4<f32> {
    switch src {
        case 0u: {
            return xw4[i];
        }
        case 1u: {
            return gh4[i];
        }
        default: {
            return cs4[i];
        }
    }
}

// row's offsets in vec4s (zone stays in units).
fn row4(b: u32, d: u32, len: u32) -> Row {
    var o = row(b, d, len);
    o.prev /= 4u;
    o.next /= 4u;
    o.x /= 4u;
    o.gh /= 4u;
    o.lnp /= 4u;
    o.saved /= 4u;
    o.grads /= 4u;
    o.state /= 4u;
    return o;
}

@compute @workgroup_size(64, 1, 1)
fn forward4(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    forward_row4(lane, wid);
}

@compute @workgroup_size(64, 1, 1)
fn forward_packing4(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let next = forward_row4(lane, wid);
    storageBarrier();
    for (var q = lane; q < p.h / 4u; q += WG) {
        textureStore(next_packed, vec2<u32>(q, wid.y), wid.z, hs4[next + q]);
    }
}

fn forward_row4(lane: u32, wid: vec3<u32>) -> u32 {
    let b = wid.y;
    let o = row4(b, wid.z, length_of(lane, b));
    let h4 = p.h / 4u;
    let g = p.h; // G in vec4s
    let stats = o.saved + 2u * g;
    if (!o.live) {
        for (var q = lane; q < h4; q += WG) {
            hs4[o.next + q] = hs4[o.prev + q];
            cs4[o.next + q] = cs4[o.prev + q];
        }
        for (var k = lane; k < 2u * g + 2u; k += WG) {
            saved4[o.saved + k] = vec4<f32>(0.0);
        }
        return o.next;
    }
    let mx = moments4(lane, 0u, o.x, g);
    let mh = moments4(lane, 1u, o.gh, g);
    for (var q = lane; q < h4; q += WG) {
        var a: array<vec4<f32>, 4>;
        for (var k = 0u; k < 4u; k++) {
            let u = k * h4 + q;
            let nh = (gh4[o.gh + u] - mh.x) * mh.y;
            saved4[o.saved + g + u] = nh;
            a[k] = (xw4[o.x + u] - mx.x) * mx.y * lnp4[o.lnp + u] + nh * lnp4[o.lnp + g + u]
                + lnp4[o.lnp + 2u * g + u] + lnp4[o.lnp + 3u * g + u];
        }
        let i = sigmoid4(a[0]);
        let f = sigmoid4(a[1]);
        let gg = tanh4_(a[2]);
        let og = sigmoid4(a[3]);
        cs4[o.next + q] = f * cs4[o.prev + q] + i * gg;
        saved4[o.saved + q] = i;
        saved4[o.saved + h4 + q] = f;
        saved4[o.saved + 2u * h4 + q] = gg;
        saved4[o.saved + 3u * h4 + q] = og;
    }
    let mc = moments4(lane, 2u, o.next, h4);
    let cp = o.lnp + 4u * g;
    for (var q = lane; q < h4; q += WG) {
        let c = cs4[o.next + q];
        let nc = (c - mc.x) * mc.y;
        var h = saved4[o.saved + 3u * h4 + q] * tanh4_(nc * lnp4[cp + q] + lnp4[cp + h4 + q]);
        if (ZONEOUT) {
            h = mix(h, hs4[o.prev + q], zone_at4(o.zone + 4u * q, false));
            cs4[o.next + q] = mix(c, cs4[o.prev + q], zone_at4(o.zone + 4u * q, true));
        }
        hs4[o.next + q] = h;
    }
    if (lane == 0u) {
        saved4[stats] = vec4<f32>(mx, mh);
        saved4[stats + 1u] = vec4<f32>(mc, 0.0, 0.0);
    }
    return o.next;
}

fn new_c4(sv: u32, prev: u32, next: u32) -> vec4<f32> {
    if (ZONEOUT) {
        let h4 = p.h / 4u;
        return saved4[sv + h4] * cs4[prev] + saved4[sv] * saved4[sv + 2u * h4];
    }
    return cs4[next];
}

@compute @workgroup_size(64, 1, 1)
fn backward4(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let b = wid.y;
    let d = wid.z;
    let o = row4(b, d, length_of(lane, b));
    let h4 = p.h / 4u;
    let g = p.h;
    if (!o.live) {
        for (var k = lane; k < 2u * g + h4; k += WG) {
            grads4[o.grads + k] = vec4<f32>(0.0);
        }
        return;
    }
    let stats = o.saved + 2u * g;
    let st = saved4[stats];
    let mc = saved4[stats + 1u].xy;
    let rstd_h = st.w;
    let cp = o.lnp + 4u * g;
    let y0 = ((b * p.t + o.t) * p.d + d) * h4;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var q = lane; q < h4; q += WG) {
        let nc = (new_c4(o.saved + q, o.prev + q, o.next + q) - mc.x) * mc.y;
        let tl = tanh4_(nc * lnp4[cp + q] + lnp4[cp + h4 + q]);
        let og = saved4[o.saved + 3u * h4 + q];
        let dh_t = dh4[o.state + q] + dy4[y0 + q];
        let zh = zone_at4(o.zone + 4u * q, false);
        let dh_new = (1.0 - zh) * dh_t;
        let dl = dh_new * og * (1.0 - tl * tl);
        grads4[o.grads + 2u * g + q] = dl;
        grads4[o.grads + g + 3u * h4 + q] = dh_new * tl * og * (1.0 - og);
        dh4[o.state + q] = zh * dh_t;
        let gc = dl * lnp4[cp + q];
        s1 += hsum(gc);
        s2 += hsum(gc * nc);
    }
    let m1 = reduce(lane, s1, false) / f32(p.h);
    let m2 = reduce(lane, s2, false) / f32(p.h);
    var t1 = 0.0;
    var t2 = 0.0;
    for (var q = lane; q < h4; q += WG) {
        let nc = (new_c4(o.saved + q, o.prev + q, o.next + q) - mc.x) * mc.y;
        let gc = grads4[o.grads + 2u * g + q] * lnp4[cp + q];
        let zc = zone_at4(o.zone + 4u * q, true);
        let dc_s = dc4[o.state + q];
        let dc_t = (1.0 - zc) * dc_s + mc.y * (gc - m1 - nc * m2);
        let i = saved4[o.saved + q];
        let f = saved4[o.saved + h4 + q];
        let gg = saved4[o.saved + 2u * h4 + q];
        var da: array<vec4<f32>, 4>;
        da[0] = dc_t * gg * i * (1.0 - i);
        da[1] = dc_t * cs4[o.prev + q] * f * (1.0 - f);
        da[2] = dc_t * i * (1.0 - gg * gg);
        da[3] = grads4[o.grads + g + 3u * h4 + q];
        dc4[o.state + q] = zc * dc_s + dc_t * f;
        for (var k = 0u; k < 4u; k++) {
            let u = k * h4 + q;
            grads4[o.grads + g + u] = da[k];
            let gk = da[k] * lnp4[o.lnp + g + u];
            t1 += hsum(gk);
            t2 += hsum(gk * saved4[o.saved + g + u]);
        }
    }
    let n1 = reduce(lane, t1, false) / f32(4u * p.h);
    let n2 = reduce(lane, t2, false) / f32(4u * p.h);
    for (var q = lane; q < h4; q += WG) {
        for (var k = 0u; k < 4u; k++) {
            let u = k * h4 + q;
            let gk = grads4[o.grads + g + u] * lnp4[o.lnp + g + u];
            grads4[o.grads + u] = rstd_h * (gk - n1 - saved4[o.saved + g + u] * n2);
        }
    }
}
