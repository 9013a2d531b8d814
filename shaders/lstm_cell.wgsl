
// Fused LSTM cell (gate order i, f, g, o as torch.nn.LSTM), forward and backward.
//   [i f g o] = [σ σ tanh σ](xw + b_ih + gh + b_hh)
//   c = f ⊙ c' + i ⊙ g,  h = o ⊙ tanh(c)
// Saved for backward: acts = [i f g o] (A = 4H); c' and c stay in cs.
// backward, given dh (running + dy): do = dh ⊙ tanh(c),
//   dc = dc_running + dh ⊙ o ⊙ (1 − tanh²c), di = dc ⊙ g, df = dc ⊙ c', dg = dc ⊙ i,
//   dc' = dc ⊙ f, pre-activation gradients through σ' and tanh'; dgi = dgh.

const GATES: u32 = 4u;

@group(0) @binding(7) var<storage, read_write> cs: array<f32>;   // [D, T + 1, B, H]
@group(0) @binding(9) var<storage, read_write> acts: array<act_t>; // [D, T, B, 4H]
@group(0) @binding(12) var<storage, read_write> dc: array<f32>;  // [D, B, H]

fn pre(at: At, k: u32) -> f32 {
    let o = k * p.h;
    return f32(xw[at.xw + o]) + f32(gh[at.gh + o]) + b_ih[at.gate + o] + b_hh[at.gate + o];
}

fn forward_unit(gid: vec3<u32>) -> f32 {
    let at = locate(gid);
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
    cs[at.next] = c;
    let a = at.row * GATES * p.h + at.j;
    acts[a] = act_t(i);
    acts[a + p.h] = act_t(f);
    acts[a + 2u * p.h] = act_t(g);
    acts[a + 3u * p.h] = act_t(o);
    return put_h(at, h);
}

@compute @workgroup_size(64, 1, 1)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.h) {
        return;
    }
    let at = locate(gid);
    let r = at.row * GATES * p.h + at.j;
    if (!at.live) {
        no_gradient(at);
        return;
    }
    let i = f32(acts[r]);
    let f = f32(acts[r + p.h]);
    let g = f32(acts[r + 2u * p.h]);
    let o = f32(acts[r + 3u * p.h]);
    let dh_t = dh[at.state] + dy[at.y];
    let tc = tanh_(cs[at.next]);
    let dc_t = dc[at.state] + dh_t * o * (1.0 - tc * tc);
    let di = dc_t * g * i * (1.0 - i);
    let df = dc_t * cs[at.prev] * f * (1.0 - f);
    let dg = dc_t * i * (1.0 - g * g);
    let do_ = dh_t * tc * o * (1.0 - o);
    dc[at.state] = dc_t * f;
    dh[at.state] = 0.0;
    dgi[at.xw] = di;
    dgi[at.xw + p.h] = df;
    dgi[at.xw + 2u * p.h] = dg;
    dgi[at.xw + 3u * p.h] = do_;
    dgh[r] = di;
    dgh[r + p.h] = df;
    dgh[r + 2u * p.h] = dg;
    dgh[r + 3u * p.h] = do_;
}
