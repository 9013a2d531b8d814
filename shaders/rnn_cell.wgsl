
// Elman RNN cell (torch.nn.RNN), forward and backward.
//   h = act(xw + b_ih + gh + b_hh), act = tanh, or relu when RELU
// Saved for backward: nothing beyond h itself, in hs.
// backward, given dh (running + dy): dpre = dh ⊙ act'(h), with tanh' = 1 − h² and
//   relu' = [h > 0]; dgi = dgh = dpre, nothing bypasses W_hh.

const GATES: u32 = 1u;
override RELU: bool = false;


fn forward_unit(gid: vec3<u32>) -> f32 {
    let at = locate(gid);
    if (!at.live) {
        return carry(at);
    }
    let x = f32(xw[at.xw]) + b_ih[at.gate] + f32(gh[at.gh]) + b_hh[at.gate];
    let h = select(tanh_(x), max(x, 0.0), RELU);
    return put_h(at, h);
}

fn backward_unit(at: At) {
    let gr = at.row * p.h + at.j;
    if (!at.live) {
        no_gradient(at);
        return;
    }
    let h = f32(hs[at.next]);
    let dh_t = dh[at.state] + dy[at.y];
    let d = dh_t * select(1.0 - h * h, select(0.0, 1.0, h > 0.0), RELU);
    dh[at.state] = 0.0;
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
    return put_h4(at, select(tanh4_(x), max(x, vec4<f32>(0.0)), RELU));
}

fn backward_units4(at: At) {
    if (!at.live) {
        no_gradient4(at);
        return;
    }
    let h = vec4<f32>(hs4[at.next / 4u]);
    let relu = select(vec4<f32>(0.0), vec4<f32>(1.0), h > vec4<f32>(0.0));
    let d = dh4_(at) * select(1.0 - h * h, relu, RELU);
    dh4[at.state / 4u] = vec4<f32>(0.0);
    put_dg4(at, 0u, d, d);
}
