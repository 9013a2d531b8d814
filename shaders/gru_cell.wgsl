
// Fused GRU cell (gate order r, z, n as torch.nn.GRU), forward and backward.
//   gi = xw + b_ih, gh' = gh + b_hh (each [r z n])
//   r = σ(gi_r + gh'_r), z = σ(gi_z + gh'_z), n = tanh(gi_n + r ⊙ gh'_n)
//   h = (1 − z) ⊙ n + z ⊙ h'
// Saved for backward: acts = [r z n gh'_n] (A = 4H); h' stays in hs.
// backward, given dh (running + dy): dn = dh ⊙ (1 − z), dz = dh ⊙ (h' − n),
//   dh' = dh ⊙ z (+ the GEMM's part), dr = dn ⊙ (1 − n²) ⊙ gh'_n; dgi and dgh agree
//   except for n, where dgh_n = dgi_n ⊙ r (b_hn sits inside the reset product).
//   (With zoneout, dh here is the share that reaches the new h; recurrence.wgsl.)

const GATES: u32 = 3u;

@group(0) @binding(9) var<storage, read_write> acts: array<act_t>; // [D, T, B, 4H]

fn forward_unit(at: At) -> f32 {
    if (!at.live) {
        return carry(at);
    }
    let h1 = p.h;
    let h2 = 2u * p.h;
    let r = sigmoid(f32(xw[at.xw]) + b_ih[at.gate] + f32(gh[at.gh]) + b_hh[at.gate]);
    let z = sigmoid(f32(xw[at.xw + h1]) + b_ih[at.gate + h1] + f32(gh[at.gh + h1]) + b_hh[at.gate + h1]);
    let ghn = f32(gh[at.gh + h2]) + b_hh[at.gate + h2];
    let n = tanh_(f32(xw[at.xw + h2]) + b_ih[at.gate + h2] + r * ghn);
    let h = (1.0 - z) * n + z * f32(hs[at.prev]);
    let a = at.row * 4u * p.h + at.j;
    acts[a] = act_t(r);
    acts[a + h1] = act_t(z);
    acts[a + h2] = act_t(n);
    acts[a + 3u * p.h] = act_t(ghn);
    return put_h(at, h);
}

fn backward_unit(at: At) {
    let h1 = p.h;
    let h2 = 2u * p.h;
    let gr = at.row * GATES * p.h + at.j;
    if (!at.live) {
        no_gradient(at);
        return;
    }
    let a = at.row * 4u * p.h + at.j;
    let r = f32(acts[a]);
    let z = f32(acts[a + h1]);
    let n = f32(acts[a + h2]);
    let ghn = f32(acts[a + 3u * p.h]);
    let split = dh_split(at);
    let dh_t = split.cell;
    let dn = dh_t * (1.0 - z) * (1.0 - n * n);
    let dz = dh_t * (f32(hs[at.prev]) - n) * z * (1.0 - z);
    let dr = dn * ghn * r * (1.0 - r);
    dh[at.state] = dh_t * z + split.bypass;
    dgi[at.xw] = dr;
    dgi[at.xw + h1] = dz;
    dgi[at.xw + h2] = dn;
    dgh[gr] = dr;
    dgh[gr + h1] = dz;
    dgh[gr + h2] = dn * r;
}

@group(0) @binding(25) var<storage, read_write> acts4: array<vec4<act_t>>;

fn forward_units4(at: At) -> vec4<f32> {
    if (!at.live) {
        return carry4(at);
    }
    let r = sigmoid4(xw4_(at, 0u) + gh4_(at, 0u));
    let z = sigmoid4(xw4_(at, 1u) + gh4_(at, 1u));
    let ghn = gh4_(at, 2u);
    let n = tanh4_(xw4_(at, 2u) + r * ghn);
    let h = (1.0 - z) * n + z * vec4<f32>(hs4[at.prev / 4u]);
    let a = (at.row * 4u * p.h + at.j) / 4u;
    let q = p.h / 4u;
    acts4[a] = vec4<act_t>(r);
    acts4[a + q] = vec4<act_t>(z);
    acts4[a + 2u * q] = vec4<act_t>(n);
    acts4[a + 3u * q] = vec4<act_t>(ghn);
    return put_h4(at, h);
}

fn backward_units4(at: At) {
    if (!at.live) {
        no_gradient4(at);
        return;
    }
    let a = (at.row * 4u * p.h + at.j) / 4u;
    let q = p.h / 4u;
    let r = vec4<f32>(acts4[a]);
    let z = vec4<f32>(acts4[a + q]);
    let n = vec4<f32>(acts4[a + 2u * q]);
    let ghn = vec4<f32>(acts4[a + 3u * q]);
    let split = dh4_split(at);
    let dh_t = split.cell;
    let dn = dh_t * (1.0 - z) * (1.0 - n * n);
    let dz = dh_t * (vec4<f32>(hs4[at.prev / 4u]) - n) * z * (1.0 - z);
    let dr = dn * ghn * r * (1.0 - r);
    dh4[at.state / 4u] = dh_t * z + split.bypass;
    put_dg4(at, 0u, dr, dr);
    put_dg4(at, 1u, dz, dz);
    put_dg4(at, 2u, dn, dn * r);
}
