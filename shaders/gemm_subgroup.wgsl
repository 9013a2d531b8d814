// The GEMM (shaders/gemm.wgsl) for adapters whose subgroups are forward_tex's
// 8-invocation workgroups: its invocations share A's rows, so each fetches the
// texels of two (rows m0 + lane and m0 + 8 + lane) and reads the other 14 from
// its neighbours, an eighth of A's fetches. On a CPU adapter a texel fetch is a
// gather across the SIMD lanes while a broadcast is a register shuffle.
fn a_rows(kt: u32, m0: u32, layer: u32, lane: u32) -> ARows {
    let r0 = textureLoad(ta, vec2<u32>(kt, m0 + lane), layer, 0);
    let r1 = textureLoad(ta, vec2<u32>(kt, m0 + 8u + lane), layer, 0);
    return ARows(
        transpose(mat4x4<f32>(subgroupBroadcast(r0, 0u), subgroupBroadcast(r0, 1u),
                              subgroupBroadcast(r0, 2u), subgroupBroadcast(r0, 3u))),
        transpose(mat4x4<f32>(subgroupBroadcast(r0, 4u), subgroupBroadcast(r0, 5u),
                              subgroupBroadcast(r0, 6u), subgroupBroadcast(r0, 7u))),
        transpose(mat4x4<f32>(subgroupBroadcast(r1, 0u), subgroupBroadcast(r1, 1u),
                              subgroupBroadcast(r1, 2u), subgroupBroadcast(r1, 3u))),
        transpose(mat4x4<f32>(subgroupBroadcast(r1, 4u), subgroupBroadcast(r1, 5u),
                              subgroupBroadcast(r1, 6u), subgroupBroadcast(r1, 7u))),
    );
}
