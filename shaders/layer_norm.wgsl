// Layer normalization over the last dimension (torch.nn.LayerNorm) and its backward:
//   y = (x − μ) · rstd · γ + β,   μ, σ² the row's mean and biased variance,
//   rstd = 1 / √(σ² + eps)
//   dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)),  g = dy · γ,  x̂ = (x − μ) · rstd
//   dγ += Σ_rows dy · x̂,   dβ += Σ_rows dy
// forward, backward: one workgroup of 64 per row (rows folded into z past 65535),
//   two-pass mean and variance; dispatch (1, min(N, 65535), ceil(N / 65535)).
// backward_params: one invocation per column summing its rows in order;
//   dispatch (ceil(D / 64), 1, 1).
// Saved for backward: μ and rstd per row. WG and `reduce` come from
// workgroup_reduce.wgsl, prepended to this file.

struct Params {
    rows: u32,
    d: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;             // [N, D]
@group(0) @binding(2) var<storage, read> gamma: array<f32>;         // [D]
@group(0) @binding(3) var<storage, read> beta: array<f32>;          // [D]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;       // [N, D]
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;   // [N, 2]: μ, rstd
// backward
@group(0) @binding(6) var<storage, read> dy: array<f32>;            // [N, D]
@group(0) @binding(7) var<storage, read> saved: array<f32>;         // [N, 2]
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;      // [N, D]
@group(0) @binding(9) var<storage, read_write> dgamma: array<f32>;  // [D]
@group(0) @binding(10) var<storage, read_write> dbeta: array<f32>;  // [D]

@compute @workgroup_size(64, 1, 1)
fn forward(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = wid.y + wid.z * nwg.y;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.d;
    var s = 0.0;
    for (var i = lane; i < p.d; i += WG) {
        s += x[base + i];
    }
    let mu = reduce(lane, s, false) / f32(p.d);
    var v = 0.0;
    for (var i = lane; i < p.d; i += WG) {
        let c = x[base + i] - mu;
        v += c * c;
    }
    let rstd = inverseSqrt(reduce(lane, v, false) / f32(p.d) + p.eps);
    for (var i = lane; i < p.d; i += WG) {
        y[base + i] = (x[base + i] - mu) * rstd * gamma[i] + beta[i];
    }
    if (lane == 0u) {
        stats[2u * r] = mu;
        stats[2u * r + 1u] = rstd;
    }
}

@compute @workgroup_size(64, 1, 1)
fn backward(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = wid.y + wid.z * nwg.y;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.d;
    let mu = saved[2u * r];
    let rstd = saved[2u * r + 1u];
    var sg = 0.0;
    var sgx = 0.0;
    for (var i = lane; i < p.d; i += WG) {
        let g = dy[base + i] * gamma[i];
        sg += g;
        sgx += g * (x[base + i] - mu) * rstd;
    }
    let mean_g = reduce(lane, sg, false) / f32(p.d);
    let mean_gx = reduce(lane, sgx, false) / f32(p.d);
    for (var i = lane; i < p.d; i += WG) {
        let xh = (x[base + i] - mu) * rstd;
        dx[base + i] = rstd * (dy[base + i] * gamma[i] - mean_g - xh * mean_gx);
    }
}

@compute @workgroup_size(64, 1, 1)
fn backward_params(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.d) {
        return;
    }
    var sw = 0.0;
    var sb = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let g = dy[r * p.d + i];
        sw += g * (x[r * p.d + i] - saved[2u * r]) * saved[2u * r + 1u];
        sb += g;
    }
    dgamma[i] += sw;
    dbeta[i] += sb;
}
