// FMA ceiling probe: how many f32 fused multiply-adds per second this device sustains.
//   Each invocation runs CHAINS independent vec4 fma chains for 64 × `iters` rounds:
//   64 × CHAINS × 4 × 2 × iters flops, no memory traffic. The host tries several
//   CHAINS and keeps the best: too few chains leave fma latency exposed, too many
//   spill registers (8 vec4 chains need 32 vector registers on a CPU adapter, which
//   runs 8 invocations per SIMD register).
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

// Independent chains in use (1 to 8); the others are folded away at pipeline creation.
override CHAINS: u32 = 8u;

struct Chains {
    x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
    x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>,
}

fn round(x: ptr<function, Chains>, m: vec4<f32>, d: vec4<f32>) {
    (*x).x0 = fma((*x).x0, m, d);
    if (CHAINS > 1u) { (*x).x1 = fma((*x).x1, m, d); }
    if (CHAINS > 2u) { (*x).x2 = fma((*x).x2, m, d); }
    if (CHAINS > 3u) { (*x).x3 = fma((*x).x3, m, d); }
    if (CHAINS > 4u) { (*x).x4 = fma((*x).x4, m, d); }
    if (CHAINS > 5u) { (*x).x5 = fma((*x).x5, m, d); }
    if (CHAINS > 6u) { (*x).x6 = fma((*x).x6, m, d); }
    if (CHAINS > 7u) { (*x).x7 = fma((*x).x7, m, d); }
}

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
    let x0 = vec4<f32>(s, s + 0.1, s + 0.2, s + 0.3);
    var x = Chains(x0, x0 + 1.0, x0 + 2.0, x0 + 3.0, x0 + 4.0, x0 + 5.0, x0 + 6.0, x0 + 7.0);
    for (var it = 0u; it < p.iters; it++) {
        // 64 rounds written out: lavapipe does not unroll loops, and one trip of a
        // loop costs several fmas there, so a short body would time the loop.
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
        round(&x, m, d); round(&x, m, d); round(&x, m, d); round(&x, m, d);
    }
    out[i] = x.x0 + x.x1 + x.x2 + x.x3 + x.x4 + x.x5 + x.x6 + x.x7;
}
