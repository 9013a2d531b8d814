// Additive (Bahdanau) attention scores and their backward. Dot and general
// scores, the context and their gradients are GEMMs, and the masked softmax over
// source positions is softmax.wgsl's (src/nn/attention.rs). Rows r = (b, i) of
// R = B·Tq query rows, S source positions.
//   additive_scores:  e[r, s] = Σ_a v[a] · tanh(pq[r, a] + pk[b·S + s, a]) with
//                     pq = q·W_qᵀ [R, A] and pk = k·W_kᵀ [B·S, A] (GEMMs)
//   additive_dq:      dpq[r, a] = Σ_s de[r, s] · v[a] · (1 − t²), t = tanh(pq + pk)
//   additive_dk:      dpk[b·S + s, a] = Σ_i de[(b, i), s] · v[a] · (1 − t²)
//   additive_dv:      dv[a] += Σ_{r, s} de[r, s] · t
// additive_scores writes e at binding 3; the additive backward kernels read de at
// binding 4 and write at binding 9. One invocation per output element, each
// summing in a fixed order (no atomics).
// Dispatch ceil(n / 64) folded into y past 65535 (see `element`), n the outputs.
// Saved for backward: pq and pk (t is recomputed).
// WG comes from workgroup_reduce.wgsl, prepended to this file.


struct Params {
    rows: u32, // R = B·Tq
    tq: u32,   // Tq
    s: u32,    // S
    a: u32,    // A, the additive score's size
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> w: array<f32>;   // [R, S] scores e
@group(0) @binding(4) var<storage, read> dw: array<f32>;        // [R, S] de
@group(0) @binding(6) var<storage, read> pq: array<f32>;        // [R, A]
@group(0) @binding(7) var<storage, read> pk: array<f32>;        // [B·S, A]
@group(0) @binding(8) var<storage, read> v: array<f32>;         // [A]
@group(0) @binding(9) var<storage, read_write> dp: array<f32>;  // [R, A], [B·S, A] or [A]

fn element(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// tanh with its argument clamped where it is ±1 in f32, so that no back end's
// exp-based tanh overflows to inf / inf.
fn tanh_(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

// The row of source position s in pk for query row r.
fn key_row(r: u32, s: u32) -> u32 {
    return (r / p.tq) * p.s + s;
}

@compute @workgroup_size(64, 1, 1)
fn additive_scores(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = element(gid, nwg);
    if (n >= p.rows * p.s) {
        return;
    }
    let r = n / p.s;
    let kr = key_row(r, n % p.s);
    var sum = 0.0;
    for (var a = 0u; a < p.a; a++) {
        sum += v[a] * tanh_(pq[r * p.a + a] + pk[kr * p.a + a]);
    }
    w[n] = sum;
}

@compute @workgroup_size(64, 1, 1)
fn additive_dq(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = element(gid, nwg);
    if (n >= p.rows * p.a) {
        return;
    }
    let r = n / p.a;
    let a = n % p.a;
    var sum = 0.0;
    for (var s = 0u; s < p.s; s++) {
        let t = tanh_(pq[n] + pk[key_row(r, s) * p.a + a]);
        sum += dw[r * p.s + s] * (1.0 - t * t);
    }
    dp[n] = sum * v[a];
}

@compute @workgroup_size(64, 1, 1)
fn additive_dk(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let batch = p.rows / p.tq;
    let n = element(gid, nwg);
    if (n >= batch * p.s * p.a) {
        return;
    }
    let kr = n / p.a;
    let a = n % p.a;
    let b = kr / p.s;
    let s = kr % p.s;
    var sum = 0.0;
    for (var i = 0u; i < p.tq; i++) {
        let r = b * p.tq + i;
        let t = tanh_(pq[r * p.a + a] + pk[n]);
        sum += dw[r * p.s + s] * (1.0 - t * t);
    }
    dp[n] = sum * v[a];
}

@compute @workgroup_size(64, 1, 1)
fn additive_dv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = element(gid, nwg);
    if (a >= p.a) {
        return;
    }
    var sum = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        for (var s = 0u; s < p.s; s++) {
            sum += dw[r * p.s + s] * tanh_(pq[r * p.a + a] + pk[key_row(r, s) * p.a + a]);
        }
    }
    dp[a] += sum;
}
