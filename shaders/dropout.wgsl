// Inverted dropout with a counter-based hash, so no mask is stored:
//   keep_i = hash(seed, i) ≥ P·2³²;  y_i = keep_i ? x_i / (1 − P) : 0
//   backward: dx_i = keep_i ? dy_i / (1 − P) : 0, the same mask from the same seed.
// Dispatch ceil(n / 64) folded into y past 65535 (see `index`).

struct Params {
    n: u32,
    seed: u32,
    threshold: u32, // P·2³², rounded
    _pad: u32,
    scale: f32,     // 1 / (1 − P)
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

// Storage types (f16 where the host binds f16 storage; y's follows x's).
alias x_t = f32;
alias y_t = f32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;        // [n] x, or dy
@group(0) @binding(2) var<storage, read_write> y: array<y_t>;  // [n] y, or dx

// The same function for forward and backward: masking is its own derivative.
@compute @workgroup_size(64, 1, 1)
fn apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n) {
        return;
    }
    let keep = pcg(pcg(i) ^ p.seed) >= p.threshold;
    y[i] = y_t(select(0.0, f32(x[i]) * p.scale, keep));
}
