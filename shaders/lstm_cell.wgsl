
// Fused LSTM cell (gate order i, f, g, o as torch.nn.LSTM), forward and backward.
//   [i f g o] = [σ σ tanh σ](xw + b_ih + gh + b_hh)
//   c = f ⊙ c' + i ⊙ g,  h = o ⊙ tanh(c)
// Saved for backward: acts = [i f g o] (A = 4H); c' and c stay in cs.
// backward, given dh (running + dy): do = dh ⊙ tanh(c),
//   dc = dc_running + dh ⊙ o ⊙ (1 − tanh²c), di = dc ⊙ g, df = dc ⊙ c', dg = dc ⊙ i,
//   dc' = dc ⊙ f, pre-activation gradients through σ' and tanh'; dgi = dgh.
// With zoneout (recurrence.wgsl) cs holds the zoned c, so backward recomputes
// c_new = f ⊙ c' + i ⊙ g; dh and dc_running reach the new states scaled by
// 1 − z and the previous ones by z.

const GATES: u32 = 4u;

@group(0) @binding(7) var<storage, read_write> cs: array<f32>;   // [D, T + 1, B, H]
@group(0) @binding(9) var<storage, read_write> acts: array<act_t>; // [D, T, B, 4H]
@group(0) @binding(12) var<storage, read_write> dc: array<f32>;  // [D, B, H]

fn pre(at: At, k: u32) -> f32 {
    let o = k * p.h;
    return f32(xw[at.xw + o]) + f32(gh[at.gh + o]) + b_ih[at.gate + o] + b_hh[at.gate + o];
}

// The step's c after zoneout from its new c.
fn zone_c(at: At, c: f32) -> f32 {
    if (!ZONEOUT) {
        return c;
    }
    return mix(c, cs[at.prev], zone(at, true));
}

fn forward_unit(at: At) -> f32 {
    if (!at.live) {
        cs[at.next] = cs[at.prev];
        return carry(at);
    }
    let i = sigmoid(pre(at, 0u));
    let f = sigmoid(pre(at, 1u));
    let g = tanh_(pre(at, 2u));
    let o = sigmoid(pre(at, 3u));
    let c = f * cs[at.prev] + i * g;
    let h = o * tanh_(c);
    cs[at.next] = zone_c(at, c);
    let a = at.row * GATES * p.h + at.j;
    acts[a] = act_t(i);
    acts[a + p.h] = act_t(f);
    acts[a + 2u * p.h] = act_t(g);
    acts[a + 3u * p.h] = act_t(o);
    return put_h(at, h);
}

fn backward_unit(at: At) {
    let r = at.row * GATES * p.h + at.j;
    if (!at.live) {
        no_gradient(at);
        return;
    }
    let i = f32(acts[r]);
    let f = f32(acts[r + p.h]);
    let g = f32(acts[r + 2u * p.h]);
    let o = f32(acts[r + 3u * p.h]);
    let split = dh_split(at);
    let dh_t = split.cell;
    let c_prev = cs[at.prev];
    let tc = tanh_(select(cs[at.next], f * c_prev + i * g, ZONEOUT));
    let zc = zone(at, true);
    let dc_in = dc[at.state];
    let dc_t = (1.0 - zc) * dc_in + dh_t * o * (1.0 - tc * tc);
    let di = dc_t * g * i * (1.0 - i);
    let df = dc_t * c_prev * f * (1.0 - f);
    let dg = dc_t * i * (1.0 - g * g);
    let do_ = dh_t * tc * o * (1.0 - o);
    dc[at.state] = dc_t * f + zc * dc_in;
    dh[at.state] = split.bypass;
    if (WRITES_DGI) {
        dgi[at.xw] = di;
        dgi[at.xw + p.h] = df;
        dgi[at.xw + 2u * p.h] = dg;
        dgi[at.xw + 3u * p.h] = do_;
    }
    dgh[r] = di;
    dgh[r + p.h] = df;
    dgh[r + 2u * p.h] = dg;
    dgh[r + 3u * p.h] = do_;
}

@group(0) @binding(23) var<storage, read_write> cs4: array<vec4<f32>>;
@group(0) @binding(25) var<storage, read_write> acts4: array<vec4<act_t>>;
@group(0) @binding(28) var<storage, read_write> dc4: array<vec4<f32>>;

fn forward_units4(at: At) -> vec4<f32> {
    let prev = at.prev / 4u;
    let next = at.next / 4u;
    if (!at.live) {
        cs4[next] = cs4[prev];
        return carry4(at);
    }
    let i = sigmoid4(xw4_(at, 0u) + gh4_(at, 0u));
    let f = sigmoid4(xw4_(at, 1u) + gh4_(at, 1u));
    let g = tanh4_(xw4_(at, 2u) + gh4_(at, 2u));
    let o = sigmoid4(xw4_(at, 3u) + gh4_(at, 3u));
    let c = f * cs4[prev] + i * g;
    if (ZONEOUT) {
        cs4[next] = mix(c, cs4[prev], zone4(at, true));
    } else {
        cs4[next] = c;
    }
    let a = (at.row * GATES * p.h + at.j) / 4u;
    let q = p.h / 4u;
    acts4[a] = vec4<act_t>(i);
    acts4[a + q] = vec4<act_t>(f);
    acts4[a + 2u * q] = vec4<act_t>(g);
    acts4[a + 3u * q] = vec4<act_t>(o);
    return put_h4(at, o * tanh4_(c));
}

fn backward_units4(at: At) {
    if (!at.live) {
        no_gradient4(at);
        return;
    }
    let a = (at.row * GATES * p.h + at.j) / 4u;
    let q = p.h / 4u;
    let i = vec4<f32>(acts4[a]);
    let f = vec4<f32>(acts4[a + q]);
    let g = vec4<f32>(acts4[a + 2u * q]);
    let o = vec4<f32>(acts4[a + 3u * q]);
    let split = dh4_split(at);
    let dh_t = split.cell;
    let c_prev = cs4[at.prev / 4u];
    let tc = tanh4_(select(cs4[at.next / 4u], f * c_prev + i * g, ZONEOUT));
    let zc = zone4(at, true);
    let s = at.state / 4u;
    let dc_in = dc4[s];
    let dc_t = (1.0 - zc) * dc_in + dh_t * o * (1.0 - tc * tc);
    let di = dc_t * g * i * (1.0 - i);
    let df = dc_t * c_prev * f * (1.0 - f);
    let dg = dc_t * i * (1.0 - g * g);
    let do_ = dh_t * tc * o * (1.0 - o);
    dc4[s] = dc_t * f + zc * dc_in;
    dh4[s] = split.bypass;
    put_dg4(at, 0u, di, di);
    put_dg4(at, 1u, df, df);
    put_dg4(at, 2u, dg, dg);
    put_dg4(at, 3u, do_, do_);
}
