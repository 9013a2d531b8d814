// Sampling one index per row from softmax(logits / temperature), restricted to
// the classes at or above a threshold τ (top-k, top-p), by inverting the
// cumulative distribution at a uniform number u[r] in [0, 1) the host draws:
//   e_c    = exp((x[r, c] − max) / T) where x[r, c] ≥ τ, else 0
//   out[r] = the first c with Σ_{c' ≤ c} e_c' > u[r] · Σ_all e
// (the last class with non-zero mass when rounding leaves u just past the total).
// τ, found by a binary search over the 32 bits of an order-preserving key of the
// logits (one workgroup reduction per bit):
//   top-k: the k-th largest logit (ties with it are all kept);
//   top-p: the largest τ whose kept mass is at least p of the top-k mass (the
//          smallest set of largest logits holding p of it; ties all kept).
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
    top_k: u32, // 0: no top-k
    top_p: f32, // 1: no top-p
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [R, C]
@group(0) @binding(2) var<storage, read> u: array<f32>;         // [R]
@group(0) @binding(3) var<storage, read_write> out: array<u32>; // [R]

var<workgroup> chunk_sum: array<f32, WG>;

// A u32 whose order is the f32 order of v (negative values flipped).
fn key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// The class's mass at the row's max m, or 0 below the key threshold.
fn mass(v: f32, m: f32, threshold: u32) -> f32 {
    return select(0.0, exp((v - m) * p.inv_t), key(v) >= threshold);
}

// Over the workgroup: the number (or, with `weigh`, the mass) of the row's
// classes whose key is at least `threshold`.
fn kept(lane: u32, base: u32, m: f32, threshold: u32, weigh: bool) -> f32 {
    var s = 0.0;
    for (var k = lane; k < p.c; k += WG) {
        let v = x[base + k];
        s += select(select(0.0, 1.0, key(v) >= threshold), mass(v, m, threshold), weigh);
    }
    return reduce(lane, s, false);
}

// The largest key threshold at or above `floor` whose kept count (or mass) is
// at least `need`: bit by bit from the top.
fn search(lane: u32, base: u32, m: f32, floor: u32, need: f32, weigh: bool) -> u32 {
    var t = 0u;
    for (var i = 0u; i < 32u; i++) {
        let candidate = t | (1u << (31u - i));
        if (kept(lane, base, m, max(candidate, floor), weigh) >= need) {
            t = candidate;
        }
    }
    return max(t, floor);
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
    let base = r * p.c;
    var m = -3.4e38;
    for (var k = lane; k < p.c; k += WG) {
        m = max(m, x[base + k]);
    }
    m = reduce(lane, m, true);
    var threshold = 0u;
    if (p.top_k > 0u && p.top_k < p.c) {
        threshold = search(lane, base, m, 0u, f32(p.top_k), false);
    }
    if (p.top_p < 1.0) {
        let total = kept(lane, base, m, threshold, true);
        threshold = search(lane, base, m, threshold, p.top_p * total, true);
    }
    let per = (p.c + WG - 1u) / WG;
    let lo = min(lane * per, p.c);
    let hi = min(lo + per, p.c);
    var s = 0.0;
    for (var k = lo; k < hi; k++) {
        s += mass(x[base + k], m, threshold);
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
                    let e = mass(x[base + k], m, threshold);
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
