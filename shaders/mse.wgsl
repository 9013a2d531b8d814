// Mean squared error fused with its gradient:
//   loss = Σ_i (y_i − t_i)² / n,   dy_i = 2 (y_i − t_i) / n
// forward: one workgroup; each lane sums a fixed strided share, then a tree in
// workgroup memory (a fixed order: the same loss on every run). It also writes
// the gradient. Dispatch (1, 1, 1).
// WG and `reduce` come from workgroup_reduce.wgsl, prepended to this file.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;        // [n]
@group(0) @binding(2) var<storage, read> t: array<f32>;        // [n]
@group(0) @binding(3) var<storage, read_write> dy: array<f32>; // [n]
@group(0) @binding(4) var<storage, read_write> loss: array<f32>; // [1]

@compute @workgroup_size(64, 1, 1)
fn forward(@builtin(local_invocation_index) lane: u32) {
    let inv_n = 1.0 / f32(p.n);
    var s = 0.0;
    for (var i = lane; i < p.n; i += WG) {
        let d = y[i] - t[i];
        s += d * d;
        dy[i] = 2.0 * d * inv_n;
    }
    let total = reduce(lane, s, false);
    if (lane == 0u) {
        loss[0] = total * inv_n;
    }
}
