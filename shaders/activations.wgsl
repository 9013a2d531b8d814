// The cells' activations, prepended to the recurrent cells, min_rnn and
// stream_step.

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// tanh whose argument is clamped where it is ±1 in f32, so that no back end's
// exp-based tanh can overflow to inf / inf.
fn tanh_(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

fn sigmoid4(x: vec4<f32>) -> vec4<f32> {
    return 1.0 / (1.0 + exp(-x));
}

fn tanh4_(x: vec4<f32>) -> vec4<f32> {
    return tanh(clamp(x, vec4<f32>(-15.0), vec4<f32>(15.0)));
}

