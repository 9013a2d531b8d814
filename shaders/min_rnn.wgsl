// Minimal recurrent cells whose gates read the input only (Feng et al. 2024,
// "Were RNNs All We Needed?"), so that a whole sequence is one input GEMM and a
// scan over time. Pre-activations p = x·W_ihᵀ + b_ih, [B, T, D, G·H] (gate
// blocks of H in the order below), come from that GEMM:
//   minGRU  (G = 2: z, h̃):    z = σ(p_z)                      a = 1 − z,      b = z ⊙ p_h̃
//   minLSTM (G = 3: f, i, h̃): f = σ(p_f), i = σ(p_i), s = f + i  a = f / s,      b = (i / s) ⊙ p_h̃
//   h_t = a_t ⊙ h_{t−1} + b_t, h_{−1} = h0; the reverse direction runs from each
//   sequence's last real step down. Past a sequence's length the state carries
//   (a = 1, b = 0) and y is 0; h_n is the state after the last real step.
// Scan: a channel (direction, sequence, unit) is p.chunks invocations (1, 2,
// 4, 8 or 16; 64 / p.chunks channels per workgroup of 64), each over a chunk
// of ⌈T / p.chunks⌉ steps. With several, each composes its chunk's maps
// h ↦ a·h + b into one (A, B) (products of a only, no division: the linear
// form is stable without the paper's log space); one invocation per channel
// chains the maps from h0 to give each chunk its starting state; then each
// chunk runs again from it, writing y. With one (many channels: parallel
// enough), the channel simply runs through time. One dispatch for any T.
// backward, given dy and dh_n: with g_s the gradient of the s-th processed state
//   g_s = a_{s+1} ⊙ g_{s+1} + dy_s, g_{len−1} = dy_{len−1} + dh_n (a reverse
//   scan, chunked as above); da_s = g_s ⊙ h_{s−1}, db_s = g_s, dh0 = a_0 ⊙ g_0;
//   minGRU:  dp_z = (db ⊙ p_h̃ − da) ⊙ z(1 − z), dp_h̃ = db ⊙ z
//   minLSTM: dp_f = (i / s²)(da − db ⊙ p_h̃) ⊙ f(1 − f),
//            dp_i = (f / s²)(db ⊙ p_h̃ − da) ⊙ i(1 − i), dp_h̃ = db ⊙ i / s
//   and dp = 0 past each length. Saved for backward: p and y (the states).
// Storage: p and y may be f16 (pre_t, y_t; the scan runs in f32, the backward
// reads the states as stored); h0, h_n and every gradient are f32.
// Width: an invocation owns 1 unit (v32 = f32) or 4 neighbouring units (v32 =
// vec4<f32>, when H is a multiple of 4: min_rnn4.wgsl), declared before this
// text with the stored types pre_v and y_v; p.h and every index count these
// values, so one text serves both widths. Four units per invocation make a
// quarter of the memory operations, which cost per invocation rather than per
// byte on CPU adapters.

const GROUP: u32 = 64u;

alias pre_t = f32;
alias y_t = f32;

struct Params {
    b: u32,        // sequences
    t: u32,        // steps
    h: u32,        // units
    d: u32,        // directions, 1 or 2
    lstm: u32,     // 0 minGRU, 1 minLSTM
    has_h0: u32,   // 0: h0 is zero (binding 3 is a placeholder)
    groups_x: u32, // workgroups along x; more continue in y
    chunks: u32,   // invocations per channel: 1, 2, 4, 8 or 16
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pre: array<pre_v>;      // [B, T, D, G·H]
@group(0) @binding(2) var<storage, read> lengths: array<u32>;    // [B]
@group(0) @binding(3) var<storage, read> h0: array<v32>;         // [D, B, H]
@group(0) @binding(4) var<storage, read_write> y: array<y_v>;    // forward: [B, T, D·H]
@group(0) @binding(5) var<storage, read_write> hn: array<v32>;   // forward: [D, B, H]
@group(0) @binding(6) var<storage, read> ys: array<y_v>;         // backward: the forward's y
@group(0) @binding(7) var<storage, read> dy: array<v32>;         // backward: [B, T, D·H]
@group(0) @binding(8) var<storage, read> dhn: array<v32>;        // backward: [D, B, H]
@group(0) @binding(9) var<storage, read_write> dpre: array<v32>; // backward: like pre
@group(0) @binding(10) var<storage, read_write> dh0: array<v32>; // backward: [D, B, H]

var<workgroup> chunk_a: array<v32, 64>;
var<workgroup> chunk_b: array<v32, 64>;
var<workgroup> chunk_start: array<v32, 64>;

fn sigmoid_v(x: v32) -> v32 {
    return 1.0 / (1.0 + exp(-x));
}

struct Channel {
    valid: bool,
    d: u32,
    b: u32,
    j: u32,
    len: u32,
}

fn channel(wid: vec3<u32>, l: u32) -> Channel {
    let n = p.d * p.b * p.h;
    let index = (wid.x + wid.y * p.groups_x) * (GROUP / p.chunks) + l / p.chunks;
    let ch = min(index, n - 1u);
    var c: Channel;
    c.valid = index < n;
    c.d = ch / (p.b * p.h);
    c.b = (ch / p.h) % p.b;
    c.j = ch % p.h;
    c.len = clamp(lengths[c.b], 1u, p.t);
    return c;
}

// The time of the s-th step the channel processes (s < len).
fn time_of(c: Channel, s: u32) -> u32 {
    return select(s, c.len - 1u - s, c.d == 1u);
}

// The chunk of processed steps of invocation l: [first, end).
fn chunk(l: u32) -> vec2<u32> {
    let span = (p.t + p.chunks - 1u) / p.chunks;
    let first = min((l % p.chunks) * span, p.t);
    return vec2<u32>(first, min(first + span, p.t));
}

fn state_at(c: Channel) -> u32 {
    return (c.d * p.b + c.b) * p.h + c.j;
}

fn y_at(c: Channel, t: u32) -> u32 {
    return ((c.b * p.t + t) * p.d + c.d) * p.h + c.j;
}

// The channel's first pre-activation at time t (its gates follow, H apart).
fn pre_at(c: Channel, t: u32) -> u32 {
    return ((c.b * p.t + t) * p.d + c.d) * (2u + p.lstm) * p.h + c.j;
}

struct Map {
    a: v32,
    b: v32,
}

fn step_map(c: Channel, t: u32) -> Map {
    let at = pre_at(c, t);
    var m: Map;
    if (p.lstm == 0u) {
        let z = sigmoid_v(v32(pre[at]));
        m.a = 1.0 - z;
        m.b = z * v32(pre[at + p.h]);
    } else {
        let f = sigmoid_v(v32(pre[at]));
        let i = sigmoid_v(v32(pre[at + p.h]));
        let s = f + i;
        m.a = f / s;
        m.b = i / s * v32(pre[at + 2u * p.h]);
    }
    return m;
}

@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
    let c = channel(wid, l);
    let span = chunk(l);
    var h = v32(0.0);
    if (c.valid && p.has_h0 == 1u) {
        h = h0[state_at(c)];
    }
    if (p.chunks > 1u) {
        var a = v32(1.0);
        var b = v32(0.0);
        if (c.valid) {
            for (var s = span.x; s < min(span.y, c.len); s++) {
                let m = step_map(c, time_of(c, s));
                a = m.a * a;
                b = m.a * b + m.b;
            }
        }
        chunk_a[l] = a;
        chunk_b[l] = b;
        workgroupBarrier();
        if (c.valid && l % p.chunks == 0u) {
            var start = h;
            for (var k = 0u; k < p.chunks; k++) {
                chunk_start[l + k] = start;
                start = chunk_a[l + k] * start + chunk_b[l + k];
            }
        }
        workgroupBarrier();
        h = chunk_start[l];
    }
    if (c.valid) {
        for (var s = span.x; s < span.y; s++) {
            if (s < c.len) {
                let t = time_of(c, s);
                let m = step_map(c, t);
                h = m.a * h + m.b;
                y[y_at(c, t)] = y_v(h);
            } else {
                y[y_at(c, s)] = y_v(0.0);
            }
        }
        // The chunk holding the last real step ends with h_n.
        if (span.x < c.len && c.len <= span.y) {
            hn[state_at(c)] = h;
        }
    }
}

// a of the s-th step (1 past the last: dh_n enters unscaled).
fn a_of(c: Channel, s: u32) -> v32 {
    if (s < c.len) {
        return step_map(c, time_of(c, s)).a;
    }
    return v32(1.0);
}

// The state before the s-th step.
fn h_before(c: Channel, s: u32) -> v32 {
    if (s == 0u) {
        if (p.has_h0 == 1u) {
            return h0[state_at(c)];
        }
        return v32(0.0);
    }
    return v32(ys[y_at(c, time_of(c, s - 1u))]);
}

// Writes the pre-activations' gradients at time t from g (the state's
// gradient) and the state before; returns the step's a.
fn gate_backward(c: Channel, t: u32, g: v32, before: v32) -> v32 {
    let at = pre_at(c, t);
    let da = g * before;
    let db = g;
    if (p.lstm == 0u) {
        let z = sigmoid_v(v32(pre[at]));
        let ht = v32(pre[at + p.h]);
        dpre[at] = (db * ht - da) * z * (1.0 - z);
        dpre[at + p.h] = db * z;
        return 1.0 - z;
    }
    let f = sigmoid_v(v32(pre[at]));
    let i = sigmoid_v(v32(pre[at + p.h]));
    let ht = v32(pre[at + 2u * p.h]);
    let s = f + i;
    let s2 = s * s;
    dpre[at] = i / s2 * (da - db * ht) * f * (1.0 - f);
    dpre[at + p.h] = f / s2 * (db * ht - da) * i * (1.0 - i);
    dpre[at + 2u * p.h] = db * i / s;
    return f / s;
}

@compute @workgroup_size(64)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
    let c = channel(wid, l);
    let span = chunk(l);
    var g = v32(0.0);
    if (c.valid) {
        g = dhn[state_at(c)];
    }
    if (p.chunks > 1u) {
        // The chunk's map of the incoming gradient (that of the step after it)
        // to the gradient of its first step.
        var a = v32(1.0);
        var b = v32(0.0);
        if (c.valid) {
            var a_after = a_of(c, span.y);
            var s = min(span.y, c.len);
            while (s > span.x) {
                s = s - 1u;
                if (s + 1u < span.y) {
                    a_after = a_of(c, s + 1u);
                }
                a = a_after * a;
                b = a_after * b + dy[y_at(c, time_of(c, s))];
            }
        }
        chunk_a[l] = a;
        chunk_b[l] = b;
        workgroupBarrier();
        if (c.valid && l % p.chunks == 0u) {
            var incoming = g;
            for (var k = p.chunks; k > 0u; k--) {
                chunk_start[l + k - 1u] = incoming;
                incoming = chunk_a[l + k - 1u] * incoming + chunk_b[l + k - 1u];
            }
        }
        workgroupBarrier();
        g = chunk_start[l];
    }
    if (c.valid) {
        var a_after = a_of(c, span.y);
        var s = span.y;
        while (s > span.x) {
            s = s - 1u;
            if (s >= c.len) {
                // Padding: no gradient (the time of a padded step is its index).
                let at = pre_at(c, s);
                for (var k = 0u; k < 2u + p.lstm; k++) {
                    dpre[at + k * p.h] = v32(0.0);
                }
                continue;
            }
            let t = time_of(c, s);
            g = a_after * g + dy[y_at(c, t)];
            a_after = gate_backward(c, t, g, h_before(c, s));
            if (s == 0u) {
                dh0[state_at(c)] = a_after * g;
            }
        }
    }
}
