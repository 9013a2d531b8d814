// Elementwise and layout ops that the composite models (encoder-decoder,
// attentional hidden state) need between the big kernels:
//   tanh_forward   y = tanh(x)
//   tanh_backward  dx = dy · (1 − y²), from the forward's output
//   relu_forward   y = max(x, 0)
//   relu_backward  dx = dy where y > 0, else 0, from the forward's output
//   sigmoid_forward   y = 1 / (1 + exp(−x))
//   sigmoid_backward  dx = dy · y · (1 − y), from the forward's output
//   exp_forward    y = exp(x)
//   exp_backward   dx = dy · y, from the forward's output
//   log_forward    y = log(x) (NaN below 0, −inf at 0, as IEEE has it)
//   log_backward   dx = dy / x, from the forward's input
//   add            o[out_off + i] += x[x_off + i] for i < n
//   scale          o[i] = alpha · x[i]
//   mul            o[i] = x[i] · y[i], or x[i] · y[0] when a = 1 (times a scalar)
//   copy_block     o[out_off + r · b + c] = x[x_off + r · a + c] for r < rows,
//                  c < n / rows (a block of columns out of or into wider rows)
//   transpose      o[r, j, i, k] = x[r, i, j, k] for x [rows, a, b, inner]
//   concat         o[r, :] = [x[r, :a], y[r, :b]] for r < rows (x, y from x_off, y_off)
//   split          the backward of concat: xw[r, :] = src[r, :a], yw[r, :] = src[r, a:]
//                  (src from x_off)
// One invocation per element of the output (n = rows · (a + b) for concat and
// split); elements past 65535 workgroups fold into y (i = gid.x + gid.y · nwg.x · 64).
// Dispatch (min(ceil(n / 64), 65535), ceil(ceil(n / 64) / 65535), 1).

struct Params {
    n: u32,
    rows: u32,
    a: u32,
    b: u32,
    x_off: u32,
    y_off: u32,
    out_off: u32,
    alpha: f32,
    inner: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
// split's outputs, from `src`
@group(0) @binding(4) var<storage, read> src: array<f32>;
@group(0) @binding(5) var<storage, read_write> xw: array<f32>;
@group(0) @binding(6) var<storage, read_write> yw: array<f32>;

fn element(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

@compute @workgroup_size(64, 1, 1)
fn tanh_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        o[i] = tanh(x[i]);
    }
}

// x = dy, y = the forward's output
@compute @workgroup_size(64, 1, 1)
fn tanh_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        let t = y[i];
        o[i] = x[i] * (1.0 - t * t);
    }
}

@compute @workgroup_size(64, 1, 1)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        o[i] = max(x[i], 0.0);
    }
}

// x = dy, y = the forward's output
@compute @workgroup_size(64, 1, 1)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        o[i] = select(0.0, x[i], y[i] > 0.0);
    }
}

@compute @workgroup_size(64, 1, 1)
fn sigmoid_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        // exp of a non-positive number only: no overflow for large |x|
        let e = exp(-abs(x[i]));
        o[i] = select(e / (1.0 + e), 1.0 / (1.0 + e), x[i] >= 0.0);
    }
}

// x = dy, y = the forward's output
@compute @workgroup_size(64, 1, 1)
fn sigmoid_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        let s = y[i];
        o[i] = x[i] * s * (1.0 - s);
    }
}

@compute @workgroup_size(64, 1, 1)
fn exp_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        o[i] = exp(x[i]);
    }
}

// x = dy, y = the forward's output
@compute @workgroup_size(64, 1, 1)
fn exp_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        o[i] = x[i] * y[i];
    }
}

@compute @workgroup_size(64, 1, 1)
fn log_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        o[i] = log(x[i]);
    }
}

// x = dy, y = the forward's input
@compute @workgroup_size(64, 1, 1)
fn log_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        o[i] = x[i] / y[i];
    }
}

@compute @workgroup_size(64, 1, 1)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        o[p.out_off + i] += x[p.x_off + i];
    }
}

@compute @workgroup_size(64, 1, 1)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        o[i] = p.alpha * x[i];
    }
}

@compute @workgroup_size(64, 1, 1)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i < p.n) {
        o[i] = x[i] * y[select(i, 0u, p.a == 1u)];
    }
}

@compute @workgroup_size(64, 1, 1)
fn transpose(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let k = i % p.inner;
    let t = i / p.inner;
    let ia = t % p.a;
    let jb = (t / p.a) % p.b;
    let r = t / (p.a * p.b);
    o[i] = x[((r * p.a + ia) * p.b + jb) * p.inner + k];
}

@compute @workgroup_size(64, 1, 1)
fn copy_block(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let w = p.n / p.rows;
    let r = i / w;
    let c = i % w;
    o[p.out_off + r * p.b + c] = x[p.x_off + r * p.a + c];
}

@compute @workgroup_size(64, 1, 1)
fn concat(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let w = p.a + p.b;
    let r = i / w;
    let c = i % w;
    if (c < p.a) {
        o[i] = x[p.x_off + r * p.a + c];
    } else {
        o[i] = y[p.y_off + r * p.b + c - p.a];
    }
}

@compute @workgroup_size(64, 1, 1)
fn split(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let w = p.a + p.b;
    let r = i / w;
    let c = i % w;
    if (c < p.a) {
        xw[r * p.a + c] = src[p.x_off + i];
    } else {
        yw[r * p.b + c - p.a] = src[p.x_off + i];
    }
}
