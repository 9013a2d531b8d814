// Masked softmax of attention scores over source positions, and its backward.
// Scores, context and their gradients are GEMMs (src/nn/attention.rs); these
// kernels give padded source positions exactly zero weight and no gradient.
//   softmax:          w[r, s] = exp(e[r, s] − m) / Σ_{s' < len} exp(e[r, s'] − m) for
//                     s < len, else 0; m = max_{s < len} e[r, s]
//   softmax_backward: de[r, s] = w[r, s] · (dw[r, s] − Σ_{s'} w[r, s'] · dw[r, s'])
// Rows r = (b, i) of R = B·Tq rows, S source positions, len = src_lengths[b] with
// b = r / TQ. One workgroup of 64 per row, rows folded into z past 65535; dispatch
// (1, min(R, 65535), ceil(R / 65535)).
// Saved for backward: the weights (softmax_backward needs nothing else).

const WG: u32 = 64u;

struct Params {
    rows: u32, // R = B·Tq
    tq: u32,   // Tq
    s: u32,    // S
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> lengths: array<u32>;   // [B]
@group(0) @binding(2) var<storage, read> e: array<f32>;         // [R, S] scores
@group(0) @binding(3) var<storage, read_write> w: array<f32>;   // [R, S] weights
@group(0) @binding(4) var<storage, read> dw: array<f32>;        // [R, S]
@group(0) @binding(5) var<storage, read_write> de: array<f32>;  // [R, S]

var<workgroup> red: array<f32, WG>;

// Tree reduction (max when `take_max`, else sum); every lane gets the result.
fn reduce(lane: u32, v: f32, take_max: bool) -> f32 {
    red[lane] = v;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lane < k) {
            let o = red[lane + k];
            red[lane] = select(red[lane] + o, max(red[lane], o), take_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64, 1, 1)
fn softmax(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = wid.y + wid.z * nwg.y;
    if (r >= p.rows) {
        return;
    }
    let len = min(lengths[r / p.tq], p.s);
    let base = r * p.s;
    var m = -3.4e38;
    for (var k = lane; k < len; k += WG) {
        m = max(m, e[base + k]);
    }
    m = reduce(lane, m, true);
    var sum = 0.0;
    for (var k = lane; k < len; k += WG) {
        sum += exp(e[base + k] - m);
    }
    sum = reduce(lane, sum, false);
    for (var k = lane; k < p.s; k += WG) {
        w[base + k] = select(0.0, exp(e[base + k] - m) / sum, k < len);
    }
}

@compute @workgroup_size(64, 1, 1)
fn softmax_backward(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = wid.y + wid.z * nwg.y;
    if (r >= p.rows) {
        return;
    }
    let len = min(lengths[r / p.tq], p.s);
    let base = r * p.s;
    var dot = 0.0;
    for (var k = lane; k < len; k += WG) {
        dot += w[base + k] * dw[base + k];
    }
    dot = reduce(lane, dot, false);
    for (var k = lane; k < p.s; k += WG) {
        de[base + k] = select(0.0, w[base + k] * (dw[base + k] - dot), k < len);
    }
}
