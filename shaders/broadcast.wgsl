// Broadcasting (NumPy's rules) and strided layouts over up to 8 dimensions:
//   binary           out[i] = x[xi(i)] op y[yi(i)], op ∈ {+, −, ·, /} (p.op 0..3)
//   binary_backward  the gradient of one operand, summed over the dimensions the
//                    forward broadcast it along: g[j] = Σ_k w(o(j, k)) with
//                    w = d, −d, d·y, d·x, d / y, −d·x / y² (p.op 0..5)
//   strided          dst[i] = src[si(i)] as 32-bit words (permute, expand; any
//                    4-byte dtype)
//   masked_fill      out[i] = value where mask[mi(i)] ≠ 0, else x[i] (its
//                    backward is masked_fill of d with 0)
// Indexing: i is decomposed row-major over p.shape (the output's dimensions;
// binary_backward: the operand's dimensions in the output's rank, 1 where it was
// broadcast) into coordinates c, and an operand's index is Σ c_d · stride_d with
// stride 0 along a broadcast dimension. binary_backward's k runs over p.k
// positions, decomposed over p.kshape (the output's dimensions, 1 where the
// operand was not broadcast); o(j, k) = Σ (c_d + b_d) · ostride_d.
// One invocation per output element (per operand element for binary_backward,
// which sums its k positions in a fixed order); dispatch (min(ceil(n / 64),
// 65535), ceil(ceil(n / 64) / 65535), 1), elements past 65535 workgroups folded
// into y. Saved for backward: the operands (binary's mul and div), nothing else.

struct Params {
    n: u32,     // invocations
    rank: u32,  // dimensions used, at most 8
    op: u32,    // binary: 0 add 1 sub 2 mul 3 div; binary_backward: the weight w
    k: u32,     // binary_backward: output positions summed per operand element
    value: f32, // masked_fill
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    shape: array<vec4<u32>, 2>,   // dimensions of i
    kshape: array<vec4<u32>, 2>,  // binary_backward: dimensions of k
    ostride: array<vec4<u32>, 2>, // binary_backward: the output's strides
    xs: array<vec4<u32>, 2>,      // x's (src's) strides
    ys: array<vec4<u32>, 2>,      // y's (mask's) strides
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // forward operand
@group(0) @binding(2) var<storage, read> y: array<f32>;          // forward operand
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // output, or an operand's gradient
@group(0) @binding(4) var<storage, read> d: array<f32>;          // the output's gradient
@group(0) @binding(5) var<storage, read> src: array<u32>;        // strided's source words
@group(0) @binding(6) var<storage, read_write> dst: array<u32>;  // strided's output words
@group(0) @binding(7) var<storage, read> mask: array<u32>;       // masked_fill's mask, ≠ 0 fills

fn element(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// Index of the x and y operands (strides xs, ys) of row-major element i of p.shape.
fn operands(i: u32) -> vec2<u32> {
    var rem = i;
    var at = vec2<u32>(0u, 0u);
    for (var dim = i32(p.rank) - 1; dim >= 0; dim--) {
        let q = u32(dim) / 4u;
        let r = u32(dim) % 4u;
        let c = rem % p.shape[q][r];
        rem = rem / p.shape[q][r];
        at += c * vec2<u32>(p.xs[q][r], p.ys[q][r]);
    }
    return at;
}

@compute @workgroup_size(64, 1, 1)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let at = operands(i);
    let a = x[at.x];
    let b = y[at.y];
    switch p.op {
        case 0u: { out[i] = a + b; }
        case 1u: { out[i] = a - b; }
        case 2u: { out[i] = a * b; }
        default: { out[i] = a / b; }
    }
}

@compute @workgroup_size(64, 1, 1)
fn binary_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = element(gid, nwg);
    if (j >= p.n) {
        return;
    }
    var acc = 0.0;
    for (var k = 0u; k < p.k; k++) {
        // coordinates c + b of output position o(j, k), dimension by dimension
        var rj = j;
        var rk = k;
        var o = 0u;
        var at = vec2<u32>(0u, 0u);
        for (var dim = i32(p.rank) - 1; dim >= 0; dim--) {
            let q = u32(dim) / 4u;
            let r = u32(dim) % 4u;
            let c = rj % p.shape[q][r] + rk % p.kshape[q][r];
            rj = rj / p.shape[q][r];
            rk = rk / p.kshape[q][r];
            o += c * p.ostride[q][r];
            at += c * vec2<u32>(p.xs[q][r], p.ys[q][r]);
        }
        let g = d[o];
        switch p.op {
            case 0u: { acc += g; }
            case 1u: { acc -= g; }
            case 2u: { acc += g * y[at.y]; }
            case 3u: { acc += g * x[at.x]; }
            case 4u: { acc += g / y[at.y]; }
            default: {
                let b = y[at.y];
                acc -= g * x[at.x] / (b * b);
            }
        }
    }
    out[j] = acc;
}

@compute @workgroup_size(64, 1, 1)
fn strided(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) {
        return;
    }
    dst[i] = src[operands(i).x];
}

@compute @workgroup_size(64, 1, 1)
fn masked_fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) {
        return;
    }
    out[i] = select(x[i], p.value, mask[operands(i).y] != 0u);
}
