// Batched strided GEMM: C[b] = alpha * A[b] * B[b] + beta * C[b] + bias, and the bias gradient.
//   A is viewed as [M, K], B as [K, N], C as [M, N]; every operand carries its own
//   (row, col, batch) element strides, so op(A) = Aᵀ, a broadcast operand (batch
//   stride 0) or a slice of a larger tensor is a change of strides on the host.
//   backward_bias: dbias[i] = alpha * Σ_{b,m} dC[b, m, i] + beta * dbias[i], with dC
//   bound as `a` ([M, N] view) and dbias as `c`.
//
// Entry points:
//   forward_vec4  A and B read as aligned vec4s (the host checks strides and offsets
//                 are multiples of 4). Each invocation owns an 8 × 8 block of C and
//                 reads 4 × 4 blocks of A and B, 16 vec4 loads for 256 fmas.
//                 Dispatch (ceil(N / 512), ceil(M / 8), batch), workgroup 64 × 1.
//   forward_thin  C of at most 4 rows (a decoding step, say) from aligned vec4 loads,
//                 A's rows along k: each invocation owns all THIN_ROWS rows × 8
//                 columns and reads per 4 k steps 8 vec4s of B but only THIN_ROWS
//                 of A, where forward_vec4 would read 8 rows of A for 1..4 real ones.
//                 Dispatch (ceil(N / 512), 1, batch), workgroup 64 × 1.
//   forward       any strides. Each invocation owns 8 rows × 4 columns of C, its
//                 columns 64 apart. Dispatch (ceil(N / 256), ceil(M / 8), batch).
//   pack          copies a strided [rows, K] view of `a` into an array texture whose
//                 texels hold 4 consecutive k (zeros past K). Dispatch
//                 (ceil(K / 256), rows, layers), or (ceil(rows / 64), ceil(K / 4),
//                 layers) with PACK_ALONG_ROWS.
//   forward_tex   C from packed A and B textures. Each invocation owns 16 × 16 outputs,
//                 fetching 32 texels per 4 k steps for 1024 fmas. A shared operand
//                 is one layer (a_bs, b_bs = 0), a batched one has a layer per entry.
//                 Dispatch (ceil(N / 128), ceil(M / 16), batch), workgroup 8 × 1.
//                 The 8 invocations of a workgroup share A's 16 rows, which
//                 `a_rows` fetches: every invocation all 16 (gemm_rows.wgsl), or,
//                 where a subgroup is the workgroup, two each, shared through the
//                 subgroup (gemm_subgroup.wgsl): 18 fetches per 4 k steps.
//   backward_bias one invocation per column. Dispatch (ceil(N / 64), 1, 1).
// Loads dominate on CPU adapters: lavapipe runs each storage load as a loop over
// the SIMD lanes (about 30 cycles per element), so the kernels maximize fmas per
// loaded element and unroll k by 4 (a loop trip costs several fmas there too).
// Stores cost as much: forward_vec4 and forward_tex store C's rows as vec4s where
// C is aligned (C_VEC4), a quarter of the stores (and of C's and the bias's loads).
// Saved for backward: nothing; dA and dB are GEMMs over the caller's A, B and dC.

struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_off: u32, a_ms: u32, a_ks: u32, a_bs: u32,
    b_off: u32, b_ks: u32, b_ns: u32, b_bs: u32,
    c_off: u32, c_ms: u32, c_ns: u32, c_bs: u32,
    bias_off: u32, bias_ms: u32, bias_ns: u32, has_bias: u32,
    alpha: f32, beta: f32, blocks: u32, a_h: u32, // blocks: forward_tex's 16
    a_f: u32, b_h: u32, b_f: u32, _pad0: u32,      // packed layouts (see pack)
}

// Storage types of A, B and C (f16 where the host binds f16 tensors); bias is f32.
alias a_t = f32;
alias b_t = f32;
alias c_t = f32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<a_t>;        // [batch, M, K] (strided view)
@group(0) @binding(2) var<storage, read> b: array<b_t>;        // [batch, K, N] (strided view)
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [N] or [M] (strided view)
@group(0) @binding(4) var<storage, read_write> c: array<c_t>;  // [batch, M, N] (strided view)
@group(0) @binding(5) var<storage, read> a4: array<vec4<a_t>>; // the buffer of `a`, as vec4s
@group(0) @binding(6) var<storage, read> b4: array<vec4<b_t>>; // the buffer of `b`, as vec4s
@group(0) @binding(7) var packed: texture_storage_2d_array<rgba32float, write>; // pack: [layers, rows, ceil(K/4)]
@group(0) @binding(8) var ta: texture_2d_array<f32>;           // packed A: texel (k/4, m, batch)
@group(0) @binding(9) var tb: texture_2d_array<f32>;           // packed B: texel (k/4, n, batch)
@group(0) @binding(10) var<storage, read_write> c4: array<vec4<c_t>>; // the buffer of `c`, as vec4s
@group(0) @binding(11) var<storage, read> bias4: array<vec4<f32>>;    // the buffer of `bias`, as vec4s

// Loads, converted to f32: every product and sum is f32 whatever the storage.
fn la(i: u32) -> f32 {
    return f32(a[i]);
}

fn lb(i: u32) -> f32 {
    return f32(b[i]);
}

fn la4(i: u32) -> vec4<f32> {
    return vec4<f32>(a4[i]);
}

fn lb4(i: u32) -> vec4<f32> {
    return vec4<f32>(b4[i]);
}

const WG: u32 = 64u;
// Rows of C per invocation of `forward`.
const ROWS: u32 = 8u;

// The 8 row accumulators of a `forward` invocation; each holds 4 columns, 64 apart.
struct Acc {
    r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32>,
    r4: vec4<f32>, r5: vec4<f32>, r6: vec4<f32>, r7: vec4<f32>,
}

// Index of A[row, 0] for each of the 8 rows (clamped to the last row).
struct RowBase {
    r0: u32, r1: u32, r2: u32, r3: u32, r4: u32, r5: u32, r6: u32, r7: u32,
}

// acc[r] += A[r, k] * B[k, n0 + 64j], one k step; `ak` is k's offset into A's rows.
fn k_step(acc: ptr<function, Acc>, ra: RowBase, ak: u32, bv: vec4<f32>) {
    (*acc).r0 = fma(vec4<f32>(la(ra.r0 + ak)), bv, (*acc).r0);
    (*acc).r1 = fma(vec4<f32>(la(ra.r1 + ak)), bv, (*acc).r1);
    (*acc).r2 = fma(vec4<f32>(la(ra.r2 + ak)), bv, (*acc).r2);
    (*acc).r3 = fma(vec4<f32>(la(ra.r3 + ak)), bv, (*acc).r3);
    (*acc).r4 = fma(vec4<f32>(la(ra.r4 + ak)), bv, (*acc).r4);
    (*acc).r5 = fma(vec4<f32>(la(ra.r5 + ak)), bv, (*acc).r5);
    (*acc).r6 = fma(vec4<f32>(la(ra.r6 + ak)), bv, (*acc).r6);
    (*acc).r7 = fma(vec4<f32>(la(ra.r7 + ak)), bv, (*acc).r7);
}

// B[k, n0 + 64j] for j = 0..3; `cols` holds each column's base index, `bk` k's offset.
fn b_row(cols: vec4<u32>, bk: u32) -> vec4<f32> {
    return vec4<f32>(lb(cols.x + bk), lb(cols.y + bk), lb(cols.z + bk), lb(cols.w + bk));
}

@compute @workgroup_size(64, 1, 1)
fn forward(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let bt = wid.z;
    let m0 = wid.y * ROWS;
    let n0 = wid.x * (4u * WG) + lid.x;
    if (bt >= p.batch || m0 >= p.m || n0 >= p.n) {
        return;
    }
    // Out-of-range rows and columns are clamped so the K loop needs no branch;
    // their results are computed and dropped at the store.
    let last_m = p.m - 1u;
    let ab = p.a_off + bt * p.a_bs;
    let ra = RowBase(
        ab + min(m0, last_m) * p.a_ms, ab + min(m0 + 1u, last_m) * p.a_ms,
        ab + min(m0 + 2u, last_m) * p.a_ms, ab + min(m0 + 3u, last_m) * p.a_ms,
        ab + min(m0 + 4u, last_m) * p.a_ms, ab + min(m0 + 5u, last_m) * p.a_ms,
        ab + min(m0 + 6u, last_m) * p.a_ms, ab + min(m0 + 7u, last_m) * p.a_ms,
    );
    let cols = min(vec4<u32>(n0) + vec4<u32>(0u, WG, 2u * WG, 3u * WG), vec4<u32>(p.n - 1u));
    let cb = vec4<u32>(p.b_off + bt * p.b_bs) + cols * p.b_ns;

    var acc = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0),
                  vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var ak = 0u;
    var bk = 0u;
    var kk = 0u;
    // Four k steps per trip: a loop trip costs several fmas' time on lavapipe.
    for (; kk + 4u <= p.k; kk += 4u) {
        k_step(&acc, ra, ak, b_row(cb, bk));
        k_step(&acc, ra, ak + p.a_ks, b_row(cb, bk + p.b_ks));
        k_step(&acc, ra, ak + 2u * p.a_ks, b_row(cb, bk + 2u * p.b_ks));
        k_step(&acc, ra, ak + 3u * p.a_ks, b_row(cb, bk + 3u * p.b_ks));
        ak += 4u * p.a_ks;
        bk += 4u * p.b_ks;
    }
    for (; kk < p.k; kk++) {
        k_step(&acc, ra, ak, b_row(cb, bk));
        ak += p.a_ks;
        bk += p.b_ks;
    }
    store_row(bt, m0, n0, acc.r0);
    store_row(bt, m0 + 1u, n0, acc.r1);
    store_row(bt, m0 + 2u, n0, acc.r2);
    store_row(bt, m0 + 3u, n0, acc.r3);
    store_row(bt, m0 + 4u, n0, acc.r4);
    store_row(bt, m0 + 5u, n0, acc.r5);
    store_row(bt, m0 + 6u, n0, acc.r6);
    store_row(bt, m0 + 7u, n0, acc.r7);
}

// forward_vec4 reads A's vec4s along k (A_ALONG_K) or along m, and B's along n
// (B_ALONG_N) or along k, whichever has unit stride. Rows or columns past M or N are
// read through the bounds check and dropped at the store; the K tail (K mod 4) uses
// scalar loads.
override A_ALONG_K: bool = true;
override B_ALONG_N: bool = true;

// A[m0 .. m0+4, k .. k+4] as a matrix whose column t holds A[m0 .., k + t].
fn a_block(base: u32, k: u32) -> mat4x4<f32> {
    if (A_ALONG_K) {
        let i = (base + k) / 4u;
        let s = p.a_ms / 4u;
        return transpose(mat4x4<f32>(la4(i), la4(i + s), la4(i + 2u * s), la4(i + 3u * s)));
    }
    let i = (base + k * p.a_ks) / 4u;
    let s = p.a_ks / 4u;
    return mat4x4<f32>(la4(i), la4(i + s), la4(i + 2u * s), la4(i + 3u * s));
}

// B[k .. k+4, n0 .. n0+4] as a matrix whose column j holds B[k .., n0 + j].
fn b_block(base: u32, k: u32) -> mat4x4<f32> {
    if (B_ALONG_N) {
        let i = (base + k * p.b_ks) / 4u;
        let s = p.b_ks / 4u;
        return transpose(mat4x4<f32>(lb4(i), lb4(i + s), lb4(i + 2u * s), lb4(i + 3u * s)));
    }
    let i = (base + k) / 4u;
    let s = p.b_ns / 4u;
    return mat4x4<f32>(lb4(i), lb4(i + s), lb4(i + 2u * s), lb4(i + 3u * s));
}

@compute @workgroup_size(64, 1, 1)
fn forward_vec4(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let bt = wid.z;
    let m0 = wid.y * 8u;
    let n0 = (wid.x * WG + lid.x) * 8u;
    if (bt >= p.batch || m0 >= p.m || n0 >= p.n) {
        return;
    }
    let a0 = p.a_off + bt * p.a_bs + m0 * p.a_ms;
    let a1 = a0 + 4u * p.a_ms;
    let b0 = p.b_off + bt * p.b_bs + n0 * p.b_ns;
    let b1 = b0 + 4u * p.b_ns;
    // acc_rc[j][r] = C[m0 + 4r' + r, n0 + 4c' + j] for the row half r' and column half c'.
    var acc00 = mat4x4<f32>();
    var acc01 = mat4x4<f32>();
    var acc10 = mat4x4<f32>();
    var acc11 = mat4x4<f32>();
    var k = 0u;
    for (; k + 4u <= p.k; k += 4u) {
        let x0 = a_block(a0, k);
        let x1 = a_block(a1, k);
        let y0 = b_block(b0, k);
        let y1 = b_block(b1, k);
        acc00 += x0 * y0;
        acc01 += x0 * y1;
        acc10 += x1 * y0;
        acc11 += x1 * y1;
    }
    for (; k < p.k; k++) {
        let x0 = a_col(a0, k);
        let x1 = a_col(a1, k);
        let y0 = b_row4(b0, k);
        let y1 = b_row4(b1, k);
        acc00 += mat4x4<f32>(x0 * y0.x, x0 * y0.y, x0 * y0.z, x0 * y0.w);
        acc01 += mat4x4<f32>(x0 * y1.x, x0 * y1.y, x0 * y1.z, x0 * y1.w);
        acc10 += mat4x4<f32>(x1 * y0.x, x1 * y0.y, x1 * y0.z, x1 * y0.w);
        acc11 += mat4x4<f32>(x1 * y1.x, x1 * y1.y, x1 * y1.z, x1 * y1.w);
    }
    store_block(bt, m0, n0, acc00);
    store_block(bt, m0, n0 + 4u, acc01);
    store_block(bt, m0 + 4u, n0, acc10);
    store_block(bt, m0 + 4u, n0 + 4u, acc11);
}

// Rows of C in forward_thin: M, 1 to 4.
override THIN_ROWS: u32 = 4u;

// acc[r] += A[r, k .. k+4] · B[k .. k+4, n .. n+4] (y as b_block returns it) for r < THIN_ROWS.
fn thin_rows(acc: ptr<function, mat4x4<f32>>, a_row: u32, y: mat4x4<f32>) {
    let s = p.a_ms / 4u;
    (*acc)[0] += la4(a_row) * y;
    if (THIN_ROWS > 1u) {
        (*acc)[1] += la4(a_row + s) * y;
    }
    if (THIN_ROWS > 2u) {
        (*acc)[2] += la4(a_row + 2u * s) * y;
    }
    if (THIN_ROWS > 3u) {
        (*acc)[3] += la4(a_row + 3u * s) * y;
    }
}

@compute @workgroup_size(64, 1, 1)
fn forward_thin(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let bt = wid.z;
    let n0 = (wid.x * WG + lid.x) * 8u;
    if (bt >= p.batch || n0 >= p.n) {
        return;
    }
    let a0 = p.a_off + bt * p.a_bs;
    let b0 = p.b_off + bt * p.b_bs + n0 * p.b_ns;
    let b1 = b0 + 4u * p.b_ns;
    // acc<h>[r][j] = C[r, n0 + 4h + j]; columns past N are read through the bounds
    // check and dropped at the store.
    var acc0 = mat4x4<f32>();
    var acc1 = mat4x4<f32>();
    var k = 0u;
    for (; k + 4u <= p.k; k += 4u) {
        let a_row = (a0 + k) / 4u;
        thin_rows(&acc0, a_row, b_block(b0, k));
        thin_rows(&acc1, a_row, b_block(b1, k));
    }
    for (; k < p.k; k++) {
        let y0 = b_row4(b0, k);
        let y1 = b_row4(b1, k);
        for (var r = 0u; r < THIN_ROWS; r++) {
            let x = la(a0 + r * p.a_ms + k);
            acc0[r] += x * y0;
            acc1[r] += x * y1;
        }
    }
    for (var r = 0u; r < THIN_ROWS; r++) {
        for (var j = 0u; j < 4u; j++) {
            if (n0 + j < p.n) {
                store(bt, r, n0 + j, acc0[r][j]);
            }
            if (n0 + 4u + j < p.n) {
                store(bt, r, n0 + 4u + j, acc1[r][j]);
            }
        }
    }
}

// A[r.., k] for the 4 rows starting at element `base`, scalar loads (the K tail).
fn a_col(base: u32, k: u32) -> vec4<f32> {
    let i = base + k * p.a_ks;
    return vec4<f32>(la(i), la(i + p.a_ms), la(i + 2u * p.a_ms), la(i + 3u * p.a_ms));
}

// B[k, ..] for the 4 columns starting at element `base`, scalar loads (the K tail).
fn b_row4(base: u32, k: u32) -> vec4<f32> {
    let i = base + k * p.b_ks;
    return vec4<f32>(lb(i), lb(i + p.b_ns), lb(i + 2u * p.b_ns), lb(i + 3u * p.b_ns));
}

// C's rows as aligned vec4s (c_ns = 1; c_off, c_ms, c_bs and N multiples of 4; a
// bias, if any, along N from an aligned offset, as the host checks): store_block
// then stores each row of its block with one store (and reads C and the bias with
// one load each) instead of four.
override C_VEC4: bool = false;

// Stores the 4 × 4 block acc (acc[j][r] = C[m0 + r, n0 + j]).
fn store_block(bt: u32, m0: u32, n0: u32, acc: mat4x4<f32>) {
    if (C_VEC4) {
        if (n0 >= p.n) {
            return;
        }
        let rows = transpose(acc);
        for (var r = 0u; r < 4u; r++) {
            let m = m0 + r;
            if (m < p.m) {
                let ci = (p.c_off + bt * p.c_bs + m * p.c_ms + n0) / 4u;
                var out = p.alpha * rows[r];
                if (p.beta != 0.0) {
                    out += p.beta * vec4<f32>(c4[ci]);
                }
                if (p.has_bias != 0u) {
                    out += bias4[(p.bias_off + n0) / 4u];
                }
                c4[ci] = vec4<c_t>(out);
            }
        }
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + j;
        if (n < p.n) {
            for (var r = 0u; r < 4u; r++) {
                store(bt, m0 + r, n, acc[j][r]);
            }
        }
    }
}

// texel (x, r % a_h, l·a_f + r / a_h) of `packed` = V[l, r, 4x .. 4x + 4] for the view
// V = (a_off, a_ms per row, a_ks per k, a_bs per layer) of `a`, with p.m rows, p.k
// columns, p.batch layers. a_f = 1, a_h = M: a layer per entry; a_f = 2 folds one
// entry's rows into two layers of a_h (a multiple of 16) each, so that a texture
// is an array (two layers) for one operand without holding a second copy. A row
// is below 2·a_h, so its layer and row come from a comparison.
// PACK_ALONG_ROWS puts the lanes along the rows instead of along k: for a view
// whose rows are the contiguous dimension (a transposed operand), neighbouring
// lanes then read neighbouring elements.
override PACK_ALONG_ROWS: bool = false;

@compute @workgroup_size(64, 1, 1)
fn pack(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = select(gid.x, gid.y, PACK_ALONG_ROWS);
    let row = select(gid.y, gid.x, PACK_ALONG_ROWS);
    let k0 = 4u * x;
    if (k0 >= p.k || row >= p.m || gid.z >= p.batch) {
        return;
    }
    let i = p.a_off + gid.z * p.a_bs + row * p.a_ms + k0 * p.a_ks;
    var v = vec4<f32>(la(i), 0.0, 0.0, 0.0);
    if (k0 + 1u < p.k) {
        v.y = la(i + p.a_ks);
    }
    if (k0 + 2u < p.k) {
        v.z = la(i + 2u * p.a_ks);
    }
    if (k0 + 3u < p.k) {
        v.w = la(i + 3u * p.a_ks);
    }
    // row / a_h and row % a_h, without a division (row < 2·a_h)
    let second = row >= p.a_h;
    let r = row - select(0u, p.a_h, second);
    textureStore(packed, vec2<u32>(x, r), gid.z * p.a_f + select(0u, 1u, second), v);
}

// A[m .. m + 4, 4kt .. 4kt + 4] from packed A, as a matrix whose column t holds A[m .., 4kt + t].
fn ta_block(kt: u32, m: u32, layer: u32) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(textureLoad(ta, vec2<u32>(kt, m), layer, 0),
                                 textureLoad(ta, vec2<u32>(kt, m + 1u), layer, 0),
                                 textureLoad(ta, vec2<u32>(kt, m + 2u), layer, 0),
                                 textureLoad(ta, vec2<u32>(kt, m + 3u), layer, 0)));
}

// A[m0 .. m0 + 16, 4kt .. 4kt + 4] as four of ta_block's matrices, rows 4i .. 4i + 4 in x<i>.
struct ARows {
    x0: mat4x4<f32>, x1: mat4x4<f32>, x2: mat4x4<f32>, x3: mat4x4<f32>,
}

// B[4kt .. 4kt + 4, n .. n + 4] from packed B, as a matrix whose column j holds B[4kt .., n + j].
fn tb_block(kt: u32, n: u32, layer: u32) -> mat4x4<f32> {
    return mat4x4<f32>(textureLoad(tb, vec2<u32>(kt, n), layer, 0),
                       textureLoad(tb, vec2<u32>(kt, n + 1u), layer, 0),
                       textureLoad(tb, vec2<u32>(kt, n + 2u), layer, 0),
                       textureLoad(tb, vec2<u32>(kt, n + 3u), layer, 0));
}

// K and the number of 4 × 4 blocks (16), forward_tex's loop bounds, through
// workgroup memory: lavapipe compiles a variant of a kernel for every value of
// a uniform that bounds a loop (to unroll it), which for K is one per layer
// size, seconds each, and its scalar epilogue unrolled 16 times takes seconds
// more to compile.
var<workgroup> tex_loops: vec2<u32>;

@compute @workgroup_size(8, 1, 1)
fn forward_tex(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    if (lid.x == 0u) {
        tex_loops = vec2<u32>(p.k, p.blocks);
    }
    let loops = workgroupUniformLoad(&tex_loops);
    let bt = wid.z;
    let m0 = wid.y * 16u;
    let n0 = (wid.x * 8u + lid.x) * 16u;
    // Invocations past N run the loop all the same (a_rows may need their
    // fetches) and store nothing.
    if (bt >= p.batch || m0 >= p.m) {
        return;
    }
    // The layers and rows of this invocation's 16 rows of A and of B (a folded
    // layout keeps each 16 together, see pack).
    // (without divisions: a real tile starts below twice its layer's rows; one
    // past N reads what it reads and stores nothing)
    let a2 = m0 >= p.a_h;
    let b2 = n0 >= p.b_h;
    let la = select(bt, 0u, p.a_bs == 0u) * p.a_f + select(0u, 1u, a2);
    let lb = select(bt, 0u, p.b_bs == 0u) * p.b_f + select(0u, 1u, b2);
    let ra = m0 - select(0u, p.a_h, a2);
    let rb = n0 - select(0u, p.b_h, b2);
    // c<r><c>[j][i] = C[m0 + 4r + i, n0 + 4c + j]: 16 named blocks, since an indexed
    // array of accumulators is not kept in registers. Rows and columns past M or N
    // fetch texels outside the texture (read through the bounds check) and are
    // dropped at the store.
    var c00 = mat4x4<f32>();
    var c01 = mat4x4<f32>();
    var c02 = mat4x4<f32>();
    var c03 = mat4x4<f32>();
    var c10 = mat4x4<f32>();
    var c11 = mat4x4<f32>();
    var c12 = mat4x4<f32>();
    var c13 = mat4x4<f32>();
    var c20 = mat4x4<f32>();
    var c21 = mat4x4<f32>();
    var c22 = mat4x4<f32>();
    var c23 = mat4x4<f32>();
    var c30 = mat4x4<f32>();
    var c31 = mat4x4<f32>();
    var c32 = mat4x4<f32>();
    var c33 = mat4x4<f32>();
    let kts = (loops.x + 3u) / 4u;
    for (var kt = 0u; kt < kts; kt++) {
        let x = a_rows(kt, ra, la, lid.x);
        let x0 = x.x0;
        let x1 = x.x1;
        let x2 = x.x2;
        let x3 = x.x3;
        let y0 = tb_block(kt, rb, lb);
        let y1 = tb_block(kt, rb + 4u, lb);
        let y2 = tb_block(kt, rb + 8u, lb);
        let y3 = tb_block(kt, rb + 12u, lb);
        c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
        c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
        c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
        c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
    }
    if (C_VEC4) {
        store_block(bt, m0 + 0u, n0 + 0u, c00);
        store_block(bt, m0 + 0u, n0 + 4u, c01);
        store_block(bt, m0 + 0u, n0 + 8u, c02);
        store_block(bt, m0 + 0u, n0 + 12u, c03);
        store_block(bt, m0 + 4u, n0 + 0u, c10);
        store_block(bt, m0 + 4u, n0 + 4u, c11);
        store_block(bt, m0 + 4u, n0 + 8u, c12);
        store_block(bt, m0 + 4u, n0 + 12u, c13);
        store_block(bt, m0 + 8u, n0 + 0u, c20);
        store_block(bt, m0 + 8u, n0 + 4u, c21);
        store_block(bt, m0 + 8u, n0 + 8u, c22);
        store_block(bt, m0 + 8u, n0 + 12u, c23);
        store_block(bt, m0 + 12u, n0 + 0u, c30);
        store_block(bt, m0 + 12u, n0 + 4u, c31);
        store_block(bt, m0 + 12u, n0 + 8u, c32);
        store_block(bt, m0 + 12u, n0 + 12u, c33);
        return;
    }
    // Scalar stores, each behind its bounds checks: a loop over the blocks
    // keeps the kernel a sixteenth of the size to compile (seconds on
    // lavapipe) for products whose C rows are not vec4-aligned.
    let acc = array<mat4x4<f32>, 16>(c00, c01, c02, c03, c10, c11, c12, c13,
                                      c20, c21, c22, c23, c30, c31, c32, c33);
    for (var i = 0u; i < loops.y; i++) {
        store_block(bt, m0 + 4u * (i / 4u), n0 + 4u * (i % 4u), acc[i]);
    }
}

fn store_row(bt: u32, m: u32, n0: u32, acc: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + j * WG;
        if (n < p.n) {
            store(bt, m, n, acc[j]);
        }
    }
}

// C[bt, m, n] = alpha * v + beta * C[bt, m, n] + bias, for m < M (n checked by the caller).
fn store(bt: u32, m: u32, n: u32, v: f32) {
    if (m >= p.m) {
        return;
    }
    let ci = p.c_off + bt * p.c_bs + m * p.c_ms + n * p.c_ns;
    var out = p.alpha * v;
    // beta = 0 never reads C, so stale or NaN contents of a fresh buffer cannot leak in.
    if (p.beta != 0.0) {
        out += p.beta * f32(c[ci]);
    }
    if (p.has_bias != 0u) {
        out += bias[p.bias_off + m * p.bias_ms + n * p.bias_ns];
    }
    c[ci] = c_t(out);
}

// d(bias) for `bias[n]` added to every row: dbias = alpha * Σ_{b,m} dC[b, m, :] + beta * dbias.
// dC is read through `a` with strides (a_ms, a_ks as the column stride, a_bs); dbias is
// written through `c` at c_off with stride c_ns.
@compute @workgroup_size(64, 1, 1)
fn backward_bias(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    if (n >= p.n) {
        return;
    }
    var s = 0.0;
    for (var bt = 0u; bt < p.batch; bt++) {
        let base = p.a_off + bt * p.a_bs + n * p.a_ks;
        for (var m = 0u; m < p.m; m++) {
            s += la(base + m * p.a_ms);
        }
    }
    let ci = p.c_off + n * p.c_ns;
    var v = p.alpha * s;
    if (p.beta != 0.0) {
        v += p.beta * f32(c[ci]);
    }
    c[ci] = c_t(v);
}
