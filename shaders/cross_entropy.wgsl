// Softmax cross-entropy over C classes for N rows, averaged over the real rows
// (target != IGNORE), fused with its gradient; with label smoothing ε the target
// distribution is q = (1 − ε)·onehot(t_n) + ε / C (PyTorch's label_smoothing):
//   loss_n = logsumexp(z_n) − (1 − ε)·z_n[t_n] − ε·mean(z_n)   (0 if ignored)
//   dz_n   = (softmax(z_n) − q) · scale                        (0 if ignored)
//   loss   = Σ_n loss_n · scale, with scale = 1 / (number of real rows)
//   hit_n  = scale when argmax(z_n) = t_n (the first maximum on ties), else 0;
//   accuracy = Σ_n hit_n, the share of real rows whose best class is the target
// With p.masked, row n's classes are those where class_mask[n, k] ≠ 0, and its
// target always: the others take no probability (their dz is 0), the max and
// the sums run over the row's K_n classes, and smoothing spreads ε over them
// (ε / K_n each, mean(z_n) over them). Without, K_n = C.
// Stable for logits of any magnitude: exp only ever sees z − max(z) ≤ 0.
// forward: one workgroup of 64 per row (rows folded into z past 65535), a strided
//   pass for the max, one for Σ exp, one for the gradient; tree reductions in
//   workgroup memory. Dispatch (1, min(N, 65535), ceil(N / 65535)).
// forward_rows: the same, one invocation per row (for C ≤ 64). Dispatch
//   (ceil(N / 64) folded into y past 65535).
// reduce_loss: one workgroup sums the N row losses and hits in a fixed order.
//   Dispatch (1, 1, 1).
// Saved for backward: nothing; the gradient is written by forward.
// WG and `reduce` come from workgroup_reduce.wgsl, prepended to this file.

const IGNORE: u32 = 0xffffffffu;

struct Params {
    n: u32,
    c: u32,
    scale: f32,
    smoothing: f32,
    masked: u32, // 1: class_mask chooses each row's classes
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;         // [N, C]
@group(0) @binding(2) var<storage, read> targets: array<u32>;        // [N], IGNORE for padding
@group(0) @binding(3) var<storage, read_write> row_loss: array<f32>; // [N]
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;  // [N, C]
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;     // [1]
@group(0) @binding(6) var<storage, read_write> row_hit: array<f32>;  // [N]
@group(0) @binding(7) var<storage, read_write> accuracy: array<f32>; // [1]
@group(0) @binding(8) var<storage, read> class_mask: array<u32>;     // [N, C] when masked; else any

// Whether class k of the row at base (target t) takes part.
fn kept(base: u32, k: u32, t: u32) -> bool {
    return p.masked == 0u || k == t || class_mask[base + k] != 0u;
}

// q_k: the target distribution's share of class k (`off` = ε / C).
fn target_share(k: u32, t: u32, off: f32) -> f32 {
    return select(off, 1.0 - p.smoothing + off, k == t);
}

// −Σ_k q_k·log softmax(z)_k from the log-sum-exp, the target's logit, Σ_k z_k
// and the row's class count.
fn smoothed_loss(lse: f32, zt: f32, zs: f32, classes: f32) -> f32 {
    if (p.smoothing == 0.0) {
        return lse - zt;
    }
    return lse - (1.0 - p.smoothing) * zt - p.smoothing * zs / classes;
}

@compute @workgroup_size(64, 1, 1)
fn forward(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = wid.y + wid.z * nwg.y;
    if (n >= p.n) {
        return;
    }
    let base = n * p.c;
    let t = targets[n];
    if (t == IGNORE) {
        for (var k = lane; k < p.c; k += WG) {
            dlogits[base + k] = 0.0;
        }
        if (lane == 0u) {
            row_loss[n] = 0.0;
            row_hit[n] = 0.0;
        }
        return;
    }
    var m = -3.4e38;
    var at = 0xffffffffu;
    for (var k = lane; k < p.c; k += WG) {
        if (kept(base, k, t) && beats(logits[base + k], k, m, at)) {
            m = logits[base + k];
            at = k;
        }
    }
    let best = reduce_best(lane, m, at);
    m = best.v;
    var s = 0.0;
    var zs = 0.0;
    var classes = 0.0;
    for (var k = lane; k < p.c; k += WG) {
        if (kept(base, k, t)) {
            s += exp(logits[base + k] - m);
            zs += logits[base + k];
            classes += 1.0;
        }
    }
    s = reduce(lane, s, false);
    let lse = m + log(s);
    if (p.masked == 1u) {
        classes = reduce(lane, classes, false);
    } else {
        classes = f32(p.c);
    }
    let off = p.smoothing / classes;
    for (var k = lane; k < p.c; k += WG) {
        let sm = exp(logits[base + k] - lse);
        dlogits[base + k] = select(0.0, (sm - target_share(k, t, off)) * p.scale, kept(base, k, t));
    }
    if (p.smoothing != 0.0) {
        zs = reduce(lane, zs, false);
    }
    if (lane == 0u) {
        row_loss[n] = smoothed_loss(lse, logits[base + t], zs, classes) * p.scale;
        row_hit[n] = select(0.0, p.scale, best.i == t);
    }
}

// forward with one invocation per row, for few classes (C ≤ 64): a workgroup per
// row would spend its time in reductions over a handful of numbers.
@compute @workgroup_size(64, 1, 1)
fn forward_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = gid.x + gid.y * nwg.x * WG;
    if (n >= p.n) {
        return;
    }
    let base = n * p.c;
    let t = targets[n];
    if (t == IGNORE) {
        for (var k = 0u; k < p.c; k++) {
            dlogits[base + k] = 0.0;
        }
        row_loss[n] = 0.0;
        row_hit[n] = 0.0;
        return;
    }
    var m = -3.4e38;
    var at = 0xffffffffu;
    for (var k = 0u; k < p.c; k++) {
        if (kept(base, k, t) && beats(logits[base + k], k, m, at)) {
            m = logits[base + k];
            at = k;
        }
    }
    var s = 0.0;
    var zs = 0.0;
    var classes = 0.0;
    for (var k = 0u; k < p.c; k++) {
        if (kept(base, k, t)) {
            s += exp(logits[base + k] - m);
            zs += logits[base + k];
            classes += 1.0;
        }
    }
    let lse = m + log(s);
    let off = p.smoothing / classes;
    for (var k = 0u; k < p.c; k++) {
        let sm = exp(logits[base + k] - lse);
        dlogits[base + k] = select(0.0, (sm - target_share(k, t, off)) * p.scale, kept(base, k, t));
    }
    row_loss[n] = smoothed_loss(lse, logits[base + t], zs, classes) * p.scale;
    row_hit[n] = select(0.0, p.scale, at == t);
}

@compute @workgroup_size(64, 1, 1)
fn reduce_loss(@builtin(local_invocation_index) lane: u32) {
    var s = 0.0;
    var h = 0.0;
    for (var k = lane; k < p.n; k += WG) {
        s += row_loss[k];
        h += row_hit[k];
    }
    s = reduce(lane, s, false);
    h = reduce(lane, h, false);
    if (lane == 0u) {
        loss[0] = s;
        accuracy[0] = h;
    }
}
