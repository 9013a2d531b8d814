// forward_tex's A rows (shaders/gemm.wgsl) where each invocation fetches all 16.
fn a_rows(kt: u32, m0: u32, layer: u32, lane: u32) -> ARows {
    return ARows(ta_block(kt, m0, layer), ta_block(kt, m0 + 4u, layer),
                 ta_block(kt, m0 + 8u, layer), ta_block(kt, m0 + 12u, layer));
}
