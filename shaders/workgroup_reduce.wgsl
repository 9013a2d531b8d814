// Shared part of the shaders whose workgroups reduce a row together
// (attention, cross_entropy, mse, optim): prepended to each of them.

// Lanes of a reducing workgroup; the entry points use @workgroup_size(64, 1, 1).
const WG: u32 = 64u;

var<workgroup> red: array<f32, WG>;

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
