// Shared part of the shaders whose workgroups reduce a row together
// (argmax, attention, beam, cross_entropy, layer_norm, mse, optim, sample):
// prepended to each of them.

// Lanes of a reducing workgroup; the entry points use @workgroup_size(64, 1, 1).
const WG: u32 = 64u;

var<workgroup> red: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;

// Tree reduction over the workgroup's lanes (max when `take_max`, else sum), in a
// fixed order; every lane gets the result. Call from uniform control flow.
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

// NaN and finiteness by the bits: compilers with fast math (Metal's) may fold a
// comparison that only NaN or inf would fail.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// Whether (v, i) beats (w, j): larger, or equal with the lower index. NaN never wins.
fn beats(v: f32, i: u32, w: f32, j: u32) -> bool {
    return !is_nan(v) && (v > w || (v == w && i < j));
}

struct Best {
    v: f32,
    i: u32,
}

// The (value, index) pair of the workgroup's lanes that beats all others; every
// lane gets it. Call from uniform control flow.
fn reduce_best(lane: u32, v: f32, i: u32) -> Best {
    red[lane] = v;
    red_i[lane] = i;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lane < k && beats(red[lane + k], red_i[lane + k], red[lane], red_i[lane])) {
            red[lane] = red[lane + k];
            red_i[lane] = red_i[lane + k];
        }
        workgroupBarrier();
    }
    let r = Best(red[0], red_i[0]);
    workgroupBarrier();
    return r;
}
