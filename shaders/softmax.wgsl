// Masked softmax and log-softmax over the last dimension, and their backward.
// Row r = (b, i) of R = B·Tq rows of S values looks at its first len = lengths[b]
// values (b = r / TQ); the rest get exactly zero output and zero gradient.
//   forward, softmax:      y[r, s] = exp(x[r, s] − m) / Σ_{s' < len} exp(x[r, s'] − m)
//   backward, softmax:     dx[r, s] = y[r, s] · (dy[r, s] − Σ_{s' < len} y[r, s'] · dy[r, s'])
//   forward, log-softmax:  y[r, s] = x[r, s] − m − log Σ_{s' < len} exp(x[r, s'] − m)
//   backward, log-softmax: dx[r, s] = dy[r, s] − exp(y[r, s]) · Σ_{s' < len} dy[r, s']
// with m = max_{s < len} x[r, s]. With p.masked, a position s < len takes part
// only where mask[r, s] ≠ 0 (sums and the max run over those; the others are
// zero like the positions past len; a row with none is all zero).
// One workgroup of 64 per row, rows folded into z
// past 65535; dispatch (1, min(R, 65535), ceil(R / 65535)).
// Saved for backward: the output y (nothing else).
// WG and `reduce` come from workgroup_reduce.wgsl, prepended to this file.

struct Params {
    rows: u32, // R = B·Tq
    tq: u32,   // Tq, rows that share one length
    s: u32,    // S
    log: u32,  // 1: log-softmax
    masked: u32, // 1: mask chooses the positions too
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> lengths: array<u32>;   // [B]
@group(0) @binding(2) var<storage, read> x: array<f32>;         // [R, S]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;   // [R, S]
@group(0) @binding(4) var<storage, read> dy: array<f32>;        // [R, S]
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;  // [R, S]
@group(0) @binding(6) var<storage, read> mask: array<u32>;      // [R, S] when masked; else any

fn row(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y + wid.z * nwg.y;
}

// Whether position k (< len) of the row at base takes part.
fn kept(base: u32, k: u32) -> bool {
    return p.masked == 0u || mask[base + k] != 0u;
}

// (max, Σ exp(x − max)) over the row's first len values that take part.
fn max_and_sum(lane: u32, base: u32, len: u32) -> vec2<f32> {
    var m = -3.4e38;
    for (var k = lane; k < len; k += WG) {
        if (kept(base, k)) {
            m = max(m, x[base + k]);
        }
    }
    m = reduce(lane, m, true);
    var sum = 0.0;
    for (var k = lane; k < len; k += WG) {
        if (kept(base, k)) {
            sum += exp(x[base + k] - m);
        }
    }
    return vec2<f32>(m, reduce(lane, sum, false));
}

@compute @workgroup_size(64, 1, 1)
fn forward(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = row(wid, nwg);
    if (r >= p.rows) {
        return;
    }
    let len = min(lengths[r / p.tq], p.s);
    let base = r * p.s;
    let ms = max_and_sum(lane, base, len);
    let shift = ms.x + log(ms.y);
    for (var k = lane; k < p.s; k += WG) {
        let v = select(exp(x[base + k] - ms.x) / ms.y, x[base + k] - shift, p.log == 1u);
        y[base + k] = select(0.0, v, k < len && kept(base, k));
    }
}

@compute @workgroup_size(64, 1, 1)
fn backward(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = row(wid, nwg);
    if (r >= p.rows) {
        return;
    }
    let len = min(lengths[r / p.tq], p.s);
    let base = r * p.s;
    let log_softmax = p.log == 1u;
    // Σ y·dy for softmax, Σ dy for log-softmax
    var sum = 0.0;
    for (var k = lane; k < len; k += WG) {
        if (kept(base, k)) {
            sum += select(y[base + k], 1.0, log_softmax) * dy[base + k];
        }
    }
    sum = reduce(lane, sum, false);
    for (var k = lane; k < p.s; k += WG) {
        let g = dy[base + k];
        let v = select(y[base + k] * (g - sum), g - exp(y[base + k]) * sum, log_softmax);
        dx[base + k] = select(0.0, v, k < len && kept(base, k));
    }
}
