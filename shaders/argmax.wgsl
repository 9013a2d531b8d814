// Index of the largest value of each row (the lowest such index on ties), for
// greedy decoding and accuracy without reading the scores back:
//   out[r] = argmax_c x[r, c]
// One workgroup of 64 per row, rows folded into z past 65535; each lane scans a
// strided share, then `reduce_best` over (value, index) pairs.
// Dispatch (1, min(R, 65535), ceil(R / 65535)). No backward: argmax is not
// differentiable. WG, beats and reduce_best come from workgroup_reduce.wgsl,
// prepended to this file.

struct Params {
    rows: u32,
    c: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [R, C]
@group(0) @binding(2) var<storage, read_write> out: array<u32>; // [R]

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
    // The lowest finite f32 with no index: every value but NaN and -inf beats it
    // (-inf itself is no constant in WGSL, where a constant must be finite).
    var v = bitcast<f32>(0xff7fffffu);
    var i = 0xffffffffu;
    for (var k = lane; k < p.c; k += WG) {
        let xv = x[r * p.c + k];
        if (beats(xv, k, v, i)) {
            v = xv;
            i = k;
        }
    }
    let best = reduce_best(lane, v, i);
    if (lane == 0u) {
        // A row of NaN or -inf only: index 0.
        out[r] = select(best.i, 0u, best.i == 0xffffffffu);
    }
}
