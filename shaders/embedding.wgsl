// Embedding lookup and its gradient.
//   forward:  out[n, j] = table[ids[n], j]
//   backward: dtable[v, j] += Σ_{n : ids[n] = v} dout[n, j] for every id v in the
//             batch except padding_idx. The host lists each id's positions in
//             increasing n (rows, starts, order: a CSR index), and one invocation
//             sums one (id, j) in that order: no atomics, and the same gradient bit
//             for bit on every run.
// Dispatch: forward (ceil(E / 64), N) and backward (ceil(E / 64), U), each as a 2D
// grid of rows folded past the 65535-workgroup limit (see `row`).
// Saved for backward: the CSR index (host side), nothing on the GPU.

struct Params {
    rows: u32,  // N (forward) or U, the distinct ids (backward)
    dim: u32,   // E
    _pad0: u32,
    _pad1: u32,
}

// Storage type of the looked-up rows (f16 where the host binds f16 storage); the
// table and the gradients are f32.
alias out_t = f32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;           // [N]
@group(0) @binding(2) var<storage, read> table: array<f32>;         // [V, E]
@group(0) @binding(3) var<storage, read_write> out: array<out_t>;   // [N, E]
@group(0) @binding(4) var<storage, read> dout: array<f32>;          // [N, E]
@group(0) @binding(5) var<storage, read_write> dtable: array<f32>;  // [V, E]
@group(0) @binding(6) var<storage, read> uniq: array<u32>;          // [U] distinct ids
@group(0) @binding(7) var<storage, read> starts: array<u32>;        // [U + 1] into order
@group(0) @binding(8) var<storage, read> order: array<u32>;         // positions n, grouped by id

// The row of a workgroup: y, continued in z past the per-dimension limit.
fn row(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y + wid.z * nwg.y;
}

@compute @workgroup_size(64, 1, 1)
fn forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = row(wid, nwg);
    let j = gid.x;
    if (n >= p.rows || j >= p.dim) {
        return;
    }
    out[n * p.dim + j] = out_t(table[ids[n] * p.dim + j]);
}

@compute @workgroup_size(64, 1, 1)
fn backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let u = row(wid, nwg);
    let j = gid.x;
    if (u >= p.rows || j >= p.dim) {
        return;
    }
    var s = 0.0;
    for (var k = starts[u]; k < starts[u + 1u]; k++) {
        s += dout[order[k] * p.dim + j];
    }
    let i = uniq[u] * p.dim + j;
    dtable[i] += s;
}
