// Sampling one index per row from softmax(logits / temperature), by inverting the
// cumulative distribution at a uniform number u[r] in [0, 1) the host draws:
//   out[r] = the first c with Σ_{c' ≤ c} exp((x[r, c'] − max) / T) > u[r] · Σ_all
// (the last class with non-zero mass when rounding leaves u just past the total).
// One workgroup of 64 per row (rows folded into z past 65535): each lane owns a
// contiguous chunk of ceil(C / 64) classes and sums it; lane 0 walks the 64 chunk
// sums, then the classes of the chunk that holds the point. Every sum is taken in
// a fixed order, so the same u gives the same index on every run.
// Dispatch (1, min(R, 65535), ceil(R / 65535)). No backward: sampling is not
// differentiated. WG and `reduce` come from workgroup_reduce.wgsl, prepended.

struct Params {
    rows: u32,
    c: u32,
    inv_t: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [R, C]
@group(0) @binding(2) var<storage, read> u: array<f32>;         // [R]
@group(0) @binding(3) var<storage, read_write> out: array<u32>; // [R]

var<workgroup> chunk_sum: array<f32, WG>;

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
    let base = r * p.c;
    var m = -3.4e38;
    for (var k = lane; k < p.c; k += WG) {
        m = max(m, x[base + k]);
    }
    m = reduce(lane, m, true);
    let per = (p.c + WG - 1u) / WG;
    let lo = min(lane * per, p.c);
    let hi = min(lo + per, p.c);
    var s = 0.0;
    for (var k = lo; k < hi; k++) {
        s += exp((x[base + k] - m) * p.inv_t);
    }
    chunk_sum[lane] = s;
    workgroupBarrier();
    if (lane == 0u) {
        var total = 0.0;
        for (var l = 0u; l < WG; l++) {
            total += chunk_sum[l];
        }
        let target_mass = u[r] * total;
        var acc = 0.0;
        var chosen = 0u;
        var last_nonzero = 0u;
        var found = false;
        for (var l = 0u; l < WG && !found; l++) {
            if (chunk_sum[l] > 0.0 && acc + chunk_sum[l] > target_mass) {
                // The point lies in chunk l: walk its classes.
                let c0 = min(l * per, p.c);
                let c1 = min(c0 + per, p.c);
                for (var k = c0; k < c1 && !found; k++) {
                    let e = exp((x[base + k] - m) * p.inv_t);
                    if (e > 0.0) {
                        last_nonzero = k;
                    }
                    acc += e;
                    if (acc > target_mass) {
                        chosen = k;
                        found = true;
                    }
                }
            } else {
                acc += chunk_sum[l];
                if (chunk_sum[l] > 0.0) {
                    last_nonzero = min(l * per + per, p.c) - 1u;
                }
            }
        }
        out[r] = select(last_nonzero, chosen, found);
    }
}
