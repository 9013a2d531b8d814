
// Elman RNN cell (torch.nn.RNN), forward and backward.
//   h = act(xw + b_ih + gh + b_hh), act = tanh, or relu when RELU
// Saved for backward: nothing beyond h itself, in hs; under zoneout the new h
// (before zoneout) in acts [D, T, B, 4H] at row · 4H + j, the kernels binding a
// placeholder there without zoneout.
// backward, given dh (running + dy): dpre = dh ⊙ act'(h), with tanh' = 1 − h² and
//   relu' = [h > 0]; dgi = dgh = dpre, nothing bypasses W_hh (but zoneout's share).

const GATES: u32 = 1u;
override RELU: bool = false;

@group(0) @binding(9) var<storage, read_write> acts: array<act_t>;
@group(0) @binding(25) var<storage, read_write> acts4: array<vec4<act_t>>;


fn forward_unit(at: At) -> f32 {
    if (!at.live) {
        return carry(at);
    }
    let x = f32(xw[at.xw]) + b_ih[at.gate] + f32(gh[at.gh]) + b_hh[at.gate];
    let h = select(tanh_(x), max(x, 0.0), RELU);
    if (ZONEOUT) {
        acts[at.row * 4u * p.h + at.j] = act_t(h);
    }
    return put_h(at, h);
}

// The step's new h: in hs, or under zoneout (whose h is the zoned one) in acts.
fn h_new(at: At) -> f32 {
    if (ZONEOUT) {
        return f32(acts[at.row * 4u * p.h + at.j]);
    }
    return f32(hs[at.next]);
}

fn h_new4(at: At) -> vec4<f32> {
    if (ZONEOUT) {
        return vec4<f32>(acts4[(at.row * 4u * p.h + at.j) / 4u]);
    }
    return vec4<f32>(hs4[at.next / 4u]);
}

fn backward_unit(at: At) {
    let gr = at.row * p.h + at.j;
    if (!at.live) {
        no_gradient(at);
        return;
    }
    let h = h_new(at);
    let split = dh_split(at);
    let d = split.cell * select(1.0 - h * h, select(0.0, 1.0, h > 0.0), RELU);
    dh[at.state] = split.bypass;
    if (WRITES_DGI) {
        dgi[at.xw] = d;
    }
    dgh[gr] = d;
}

fn forward_units4(at: At) -> vec4<f32> {
    if (!at.live) {
        return carry4(at);
    }
    let x = xw4_(at, 0u) + gh4_(at, 0u);
    let h = select(tanh4_(x), max(x, vec4<f32>(0.0)), RELU);
    if (ZONEOUT) {
        acts4[(at.row * 4u * p.h + at.j) / 4u] = vec4<act_t>(h);
    }
    return put_h4(at, h);
}

fn backward_units4(at: At) {
    if (!at.live) {
        no_gradient4(at);
        return;
    }
    let h = h_new4(at);
    let relu = select(vec4<f32>(0.0), vec4<f32>(1.0), h > vec4<f32>(0.0));
    let split = dh4_split(at);
    let d = split.cell * select(1.0 - h * h, relu, RELU);
    dh4[at.state / 4u] = split.bypass;
    put_dg4(at, 0u, d, d);
}
