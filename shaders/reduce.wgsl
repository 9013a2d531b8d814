// Sum or mean over the middle dimension of x [O, N, I], counting only the first
// len = lengths[o] of the N positions (padding is never evidence), and its backward.
//   sum:          out[o, i] = scale_o · Σ_{k < len} x[o, k, i]
//   sum_backward: dx[o, k, i] = scale_o · dout[o, i] for k < len, else 0
// scale_o = 1 / len for a mean, else 1. One invocation per output element (O·I for
// sum, O·N·I for sum_backward), each summing in a fixed order; dispatch
// ceil(n / 64) folded into y past 65535 (see `element`).
// Saved for backward: nothing (lengths only).

struct Params {
    outer: u32, // O
    n: u32,     // N
    inner: u32, // I
    mean: u32,  // 1: divide by len
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> lengths: array<u32>;    // [O]
@group(0) @binding(2) var<storage, read> x: array<f32>;          // [O, N, I] x, or [O, I] dout
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [O, I] out, or [O, N, I] dx

fn element(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

fn scale(len: u32) -> f32 {
    return select(1.0, 1.0 / f32(max(len, 1u)), p.mean == 1u);
}

@compute @workgroup_size(64, 1, 1)
fn sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = element(gid, nwg);
    if (e >= p.outer * p.inner) {
        return;
    }
    let o = e / p.inner;
    let i = e % p.inner;
    let len = min(lengths[o], p.n);
    var acc = 0.0;
    for (var k = 0u; k < len; k++) {
        acc += x[(o * p.n + k) * p.inner + i];
    }
    out[e] = acc * scale(len);
}

@compute @workgroup_size(64, 1, 1)
fn sum_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = element(gid, nwg);
    if (e >= p.outer * p.n * p.inner) {
        return;
    }
    let i = e % p.inner;
    let k = (e / p.inner) % p.n;
    let o = e / (p.inner * p.n);
    let len = min(lengths[o], p.n);
    out[e] = select(0.0, x[o * p.inner + i] * scale(len), k < len);
}
