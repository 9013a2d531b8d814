// GELU in its tanh form (PyTorch's approximate="tanh") and its backward:
//   forward   y  = x/2 · (1 + t),  t = tanh(u),  u = √(2/π) · (x + 0.044715·x³)
//   backward  dx = dy · (½(1 + t) + ½x(1 − t²) · √(2/π) · (1 + 3·0.044715·x²))
// One invocation per element; the backward reads the forward's input x.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

const K: f32 = 0.7978845608; // √(2/π)
const C: f32 = 0.044715;

// tanh(u), its argument clamped where tanh is ±1 in f32 (an exp-based tanh
// would overflow to inf / inf past it)
fn t_of(v: f32) -> f32 {
    return tanh(clamp(K * (v + C * v * v * v), -15.0, 15.0));
}

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i < arrayLength(&x)) {
        y[i] = 0.5 * x[i] * (1.0 + t_of(x[i]));
    }
}

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i < arrayLength(&x)) {
        let v = x[i];
        let t = t_of(v);
        dx[i] = dy[i] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * K * (1.0 + 3.0 * C * v * v));
    }
}
