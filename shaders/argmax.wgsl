// Index of the largest value of each row (the lowest such index on ties), for
// greedy decoding and accuracy without reading the scores back:
//   out[r] = argmax_c x[r, c]
// One workgroup of 64 per row, rows folded into z past 65535; each lane scans a
// strided share, then a tree over (value, index) pairs in workgroup memory.
// Dispatch (1, min(R, 65535), ceil(R / 65535)). No backward: argmax is not
// differentiable.

const WG: u32 = 64u;

struct Params {
    rows: u32,
    c: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [R, C]
@group(0) @binding(2) var<storage, read_write> out: array<u32>; // [R]

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

// Whether (v, i) beats (w, j): larger, or equal with the lower index. NaN never wins.
fn beats(v: f32, i: u32, w: f32, j: u32) -> bool {
    return v > w || (v == w && i < j);
}

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
    // -inf: every value but NaN and -inf itself beats it.
    var v = bitcast<f32>(0xff800000u);
    var i = 0xffffffffu;
    for (var k = lane; k < p.c; k += WG) {
        let xv = x[r * p.c + k];
        if (beats(xv, k, v, i)) {
            v = xv;
            i = k;
        }
    }
    best_v[lane] = v;
    best_i[lane] = i;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lane < s && beats(best_v[lane + s], best_i[lane + s], best_v[lane], best_i[lane])) {
            best_v[lane] = best_v[lane + s];
            best_i[lane] = best_i[lane + s];
        }
        workgroupBarrier();
    }
    if (lane == 0u) {
        // A row of NaN or -inf only: index 0.
        out[r] = select(best_i[0], 0u, best_i[0] == 0xffffffffu);
    }
}
