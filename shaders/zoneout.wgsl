// Zoneout (Krueger et al. 2017, on h as haste's cells and on the LSTM's c): a
// part prepended to the recurrent cells and the LayerNorm-LSTM, whose Params
// carry seed, h_threshold, c_threshold, h_zone and c_zone. At a real step a unit
// keeps its previous state instead of the step's new one,
//   h = z ⊙ h' + (1 − z) ⊙ h_new,  c = z_c ⊙ c' + (1 − z_c) ⊙ c_new
// (h_new = o ⊙ tanh(c_new) in the LSTM). In training z ∈ {0, 1}: 1 where
// pcg(pcg(index) ^ seed) < P·2³², index = ((d·T + t)·B + b)·H + j, c's seed
// xored with C_SALT; backward draws the same z from the same seed. Under
// ZONE_MEAN (evaluation) z = P, the expectation.
override ZONEOUT: bool = false;
override ZONE_MEAN: bool = false;
const C_SALT: u32 = 0x9e3779b9u;

// Zoneout's z of the unit at `index` for h, or for c when `c` (0 without zoneout).
fn zone_at(index: u32, c: bool) -> f32 {
    if (!ZONEOUT) {
        return 0.0;
    }
    if (ZONE_MEAN) {
        return select(p.h_zone, p.c_zone, c);
    }
    let seed = select(p.seed, p.seed ^ C_SALT, c);
    return select(0.0, 1.0, pcg(pcg(index) ^ seed) < select(p.h_threshold, p.c_threshold, c));
}

// zone_at of the 4 units from `index` on.
fn zone_at4(index: u32, c: bool) -> vec4<f32> {
    return vec4<f32>(zone_at(index, c), zone_at(index + 1u, c), zone_at(index + 2u, c),
                     zone_at(index + 3u, c));
}
