// Optimizer updates, with clipping by global gradient norm and a guard against
// non-finite gradients, all on the GPU:
//   sumsq:  parts[part0 + w] = Σ g² over the elements workgroup w visits (a fixed
//           strided range, so the sum's order never changes)
//   norm:   stats = [‖g‖, scale, finite] from all parts of all tensors, with
//           scale = min(1, max_norm / (‖g‖ + 1e-6)) (1 without clipping) and
//           finite = 0 when ‖g‖ is NaN or inf
//   sgd:    g' = clamp(g·scale, ±clip) + wd·w; buf = μ·buf + g' (buf = g' at step 1);
//           w −= lr·buf                                         (torch.optim.SGD)
//   adam:   g' = clamp(g·scale, ±clip) (+ wd·w unless DECOUPLED); m = β1·m + (1 − β1)·g';
//           v = β2·v + (1 − β2)·g'²; w −= lr·(m / (1 − β1ᵗ)) / (√(v / (1 − β2ᵗ)) + ε),
//           after w −= lr·wd·w when DECOUPLED          (torch.optim.Adam / AdamW)
// An update does nothing when stats.finite is 0: the weights stay as they were.
// adam works on 4 elements at a time: on CPU adapters a load costs about the
// same for 1 float or 4.
// Dispatch: sumsq (parts, 1, 1), parts ≤ PARTS by the tensor's size (a tensor's
// unused parts stay 0); norm (1, 1, 1); sgd (ceil(n / 64) folded into y past
// 65535, see `index`); adam the same for ceil(n / 4).
// WG and `reduce` come from workgroup_reduce.wgsl, prepended to this file.

const PARTS: u32 = 64u;
override DECOUPLED: bool = false;

struct Params {
    n: u32,          // elements of this tensor (sumsq, sgd, adam) or parts in all (norm)
    part0: u32,      // first part of this tensor (sumsq)
    step: u32,       // 1-based (sgd: first step sets buf; adam: bias corrections)
    has_clip: u32,   // norm: clip to max_norm
    lr: f32,
    wd: f32,
    momentum: f32,   // sgd μ
    beta1: f32,
    beta2: f32,
    eps: f32,
    max_norm: f32,
    clip_value: f32, // 0: no clipping by value
    correction1: f32, // adam: 1 − β1ᵗ and 1 − β2ᵗ, from the host in f64
    correction2: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;     // [n] weights
@group(0) @binding(2) var<storage, read> g: array<f32>;           // [n] gradient
@group(0) @binding(3) var<storage, read_write> m: array<f32>;     // [n] sgd buf
@group(0) @binding(5) var<storage, read_write> parts: array<f32>; // [parts in all]
@group(0) @binding(6) var<storage, read_write> stats: array<f32>; // [3] ‖g‖, scale, finite
// adam's w, g, m, v as vec4s (tensors' buffers are whole multiples of 16 bytes).
@group(0) @binding(7) var<storage, read_write> w4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> g4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> m4: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> v4: array<vec4<f32>>;

@compute @workgroup_size(64, 1, 1)
fn sumsq(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    var s = 0.0;
    for (var i = wid.x * WG + lane; i < p.n; i += nwg.x * WG) {
        s += g[i] * g[i];
    }
    let total = reduce(lane, s, false);
    if (lane == 0u) {
        parts[p.part0 + wid.x] = total;
    }
}

@compute @workgroup_size(64, 1, 1)
fn norm(@builtin(local_invocation_index) lane: u32) {
    var s = 0.0;
    for (var i = lane; i < p.n; i += WG) {
        s += parts[i];
    }
    let total = reduce(lane, s, false);
    if (lane == 0u) {
        let nrm = sqrt(total);
        let finite = is_finite(nrm);
        stats[0] = nrm;
        stats[1] = select(1.0, min(1.0, p.max_norm / (nrm + 1e-6)), p.has_clip == 1u);
        stats[2] = select(0.0, 1.0, finite);
    }
}

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// The gradient of element i as the update sees it: scaled by the global-norm clip
// and clamped by value.
fn grad(i: u32) -> f32 {
    let x = g[i] * stats[1];
    return select(x, clamp(x, -p.clip_value, p.clip_value), p.clip_value > 0.0);
}

@compute @workgroup_size(64, 1, 1)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n || stats[2] == 0.0) {
        return;
    }
    let d = grad(i) + p.wd * w[i];
    var b = d;
    if (p.momentum != 0.0) {
        b = select(p.momentum * m[i] + d, d, p.step == 1u);
        m[i] = b;
    }
    w[i] -= p.lr * b;
}

// adam on elements 4i .. 4i + 4 (the host dispatches ceil(n / 4) invocations);
// past n the values read are the buffer's padding and are written back as read.
@compute @workgroup_size(64, 1, 1)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (4u * i >= p.n || stats[2] == 0.0) {
        return;
    }
    let live = vec4<u32>(4u * i) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.n);
    let w0 = w4[i];
    var x = w0;
    var d = g4[i] * stats[1];
    if (p.clip_value > 0.0) {
        d = clamp(d, vec4<f32>(-p.clip_value), vec4<f32>(p.clip_value));
    }
    if (DECOUPLED) {
        x -= p.lr * p.wd * x;
    } else {
        d += p.wd * x;
    }
    let m0 = m4[i];
    let v0 = v4[i];
    let mi = p.beta1 * m0 + (1.0 - p.beta1) * d;
    let vi = p.beta2 * v0 + (1.0 - p.beta2) * d * d;
    m4[i] = select(m0, mi, live);
    v4[i] = select(v0, vi, live);
    let mhat = mi / p.correction1;
    let vhat = vi / p.correction2;
    w4[i] = select(w0, x - p.lr * mhat / (sqrt(vhat) + p.eps), live);
}
