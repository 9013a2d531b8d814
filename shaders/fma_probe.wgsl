// FMA ceiling probe: how many f32 fused multiply-adds per second this device sustains.
//   Each invocation runs 8 independent vec4 fma chains for 16 × `iters` rounds, so
//   the device sees 16 × 8 × 4 × 2 × iters flops per invocation with no memory
//   traffic and enough independent work to hide fma latency.
//
// Dispatch: (ceil(invocations / 64), 1, 1), workgroup 64 × 1.
// Saved for backward: none (a measurement, not an op of the model).

struct Params {
    invocations: u32,
    iters: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;  // [invocations]

@compute @workgroup_size(64, 1, 1)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.invocations) {
        return;
    }
    // Seeds and multipliers depend on the invocation so no chain can be folded away.
    let s = f32(i) * 1e-7;
    let m = vec4<f32>(0.999999 - s);
    let d = vec4<f32>(1e-6 + s);
    var x0 = vec4<f32>(s, s + 0.1, s + 0.2, s + 0.3);
    var x1 = x0 + 1.0;
    var x2 = x0 + 2.0;
    var x3 = x0 + 3.0;
    var x4 = x0 + 4.0;
    var x5 = x0 + 5.0;
    var x6 = x0 + 6.0;
    var x7 = x0 + 7.0;
    for (var it = 0u; it < p.iters; it++) {
        // 16 rounds written out: lavapipe does not unroll loops, and one trip of a
        // loop costs several times an fma there, so a one-round body would measure
        // the loop, not the arithmetic.
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
        x0 = fma(x0, m, d); x1 = fma(x1, m, d); x2 = fma(x2, m, d); x3 = fma(x3, m, d); x4 = fma(x4, m, d); x5 = fma(x5, m, d); x6 = fma(x6, m, d); x7 = fma(x7, m, d);
    }
    out[i] = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
}
