
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

// The forward on 4 consecutive units at once (H a multiple of 4, so every index
// below is too): the same math on vec4s, through vec4 views of the same buffers at
// bindings 16 + the scalar ones'. A storage load costs per load on CPU adapters,
// whatever its width.
@group(0) @binding(18) var<storage, read> xw4: array<vec4<act_t>>;
@group(0) @binding(19) var<storage, read> gh4: array<vec4<act_t>>;
@group(0) @binding(20) var<storage, read> b_ih4: array<vec4<f32>>;
@group(0) @binding(21) var<storage, read> b_hh4: array<vec4<f32>>;
@group(0) @binding(22) var<storage, read_write> hs4: array<vec4<act_t>>;
@group(0) @binding(23) var<storage, read_write> cs4: array<vec4<f32>>;
@group(0) @binding(24) var<storage, read_write> y4: array<vec4<act_t>>;
@group(0) @binding(25) var<storage, read_write> acts4: array<vec4<act_t>>;

fn pre4(at: At, k: u32) -> vec4<f32> {
    let o = k * p.h;
    return vec4<f32>(xw4[(at.xw + o) / 4u]) + vec4<f32>(gh4[(at.gh + o) / 4u])
        + b_ih4[(at.gate + o) / 4u] + b_hh4[(at.gate + o) / 4u];
}

fn sigmoid4(x: vec4<f32>) -> vec4<f32> {
    return 1.0 / (1.0 + exp(-x));
}

// Units 4·gid.x .. + 4; returns their new states as stored.
fn forward_units4(gid: vec3<u32>) -> vec4<f32> {
    let at = locate(vec3<u32>(4u * gid.x, gid.y, gid.z));
    let prev = at.prev / 4u;
    let next = at.next / 4u;
    if (!at.live) {
        cs4[next] = cs4[prev];
        let h = hs4[prev];
        hs4[next] = h;
        y4[at.y / 4u] = vec4<act_t>(0.0);
        return vec4<f32>(h);
    }
    let i = sigmoid4(pre4(at, 0u));
    let f = sigmoid4(pre4(at, 1u));
    let g = tanh(clamp(pre4(at, 2u), vec4<f32>(-15.0), vec4<f32>(15.0)));
    let o = sigmoid4(pre4(at, 3u));
    let c = f * cs4[prev] + i * g;
    let h = vec4<act_t>(o * tanh(clamp(c, vec4<f32>(-15.0), vec4<f32>(15.0))));
    cs4[next] = c;
    hs4[next] = h;
    y4[at.y / 4u] = h;
    let a = (at.row * GATES * p.h + at.j) / 4u;
    let q = p.h / 4u;
    acts4[a] = vec4<act_t>(i);
    acts4[a + q] = vec4<act_t>(f);
    acts4[a + 2u * q] = vec4<act_t>(g);
    acts4[a + 3u * q] = vec4<act_t>(o);
    return vec4<f32>(h);
}

// Workgroups of 16 × 4 units: 64 units each, as the scalar forward's.
@compute @workgroup_size(16, 1, 1)
fn forward4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (4u * gid.x < p.h) {
        forward_units4(gid);
    }
}

@compute @workgroup_size(16, 1, 1)
fn forward_packing4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (4u * gid.x < p.h) {
        textureStore(next_packed, vec2<u32>(gid.x, gid.y), gid.z, forward_units4(gid));
    }
}

@group(0) @binding(26) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(27) var<storage, read_write> dh4: array<vec4<f32>>;
@group(0) @binding(28) var<storage, read_write> dc4: array<vec4<f32>>;
@group(0) @binding(29) var<storage, read_write> dgi4: array<vec4<f32>>;
@group(0) @binding(30) var<storage, read_write> dgh4: array<vec4<f32>>;

// The backward on 4 units per invocation through the vec4 views, as forward4.
@compute @workgroup_size(16, 1, 1)
fn backward4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (4u * gid.x >= p.h) {
        return;
    }
    let at = locate(vec3<u32>(4u * gid.x, gid.y, gid.z));
    let q = p.h / 4u;
    let r = (at.row * GATES * p.h + at.j) / 4u;
    let gi = at.xw / 4u;
    if (!at.live) {
        for (var k = 0u; k < GATES; k++) {
            dgi4[gi + k * q] = vec4<f32>(0.0);
            dgh4[r + k * q] = vec4<f32>(0.0);
        }
        return;
    }
    let i = vec4<f32>(acts4[r]);
    let f = vec4<f32>(acts4[r + q]);
    let g = vec4<f32>(acts4[r + 2u * q]);
    let o = vec4<f32>(acts4[r + 3u * q]);
    let s = at.state / 4u;
    let dh_t = dh4[s] + dy4[at.y / 4u];
    let tc = tanh(clamp(cs4[at.next / 4u], vec4<f32>(-15.0), vec4<f32>(15.0)));
    let dc_t = dc4[s] + dh_t * o * (1.0 - tc * tc);
    let di = dc_t * g * i * (1.0 - i);
    let df = dc_t * cs4[at.prev / 4u] * f * (1.0 - f);
    let dg = dc_t * i * (1.0 - g * g);
    let do_ = dh_t * tc * o * (1.0 - o);
    dc4[s] = dc_t * f;
    dh4[s] = vec4<f32>(0.0);
    dgi4[gi] = di;
    dgi4[gi + q] = df;
    dgi4[gi + 2u * q] = dg;
    dgi4[gi + 3u * q] = do_;
    dgh4[r] = di;
    dgh4[r + q] = df;
    dgh4[r + 2u * q] = dg;
    dgh4[r + 3u * q] = do_;
}
