// PCG-style integer hash (O'Neill's output permutation over an LCG step), for
// masks recomputed from a seed instead of stored: prepended to dropout and the
// recurrent cells.
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}
