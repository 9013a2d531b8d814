// Shared part of the recurrent cells: prepended (after activations) to lstm_cell,
// gru_cell and rnn_cell.
// One cell dispatch advances every sequence b and both directions d by one step.
// Direction 0 runs t = step, direction 1 (reverse) t = T − 1 − step. Past a
// sequence's length the state is carried unchanged, y is 0 and every gate gradient
// is 0; the reverse direction so starts from h0 at each sequence's last real step.
// Layouts (G = gates · H, A = saved activations per unit · H):
//   xw     [D, B, T, G]    input projections x·W_ihᵀ, batch-first like x (no bias)
//   gh     [D, B, G]       recurrent projections h·W_hhᵀ of this step (no bias)
//   hs, cs [D, T + 1, B, H] states by slot: direction 0 reads slot t and writes t + 1,
//                          direction 1 reads t + 1 and writes t
//   y, dy  [B, T, D·H]     outputs and their gradient
//   acts   [D, T, B, A]    activations saved for backward
//   dgi    [D, B, T, G]    gradient of the input pre-activations (also of b_ih);
//                          written only under WRITES_DGI (the GRU's differs from
//                          dgh; the other cells' equal it, and their caller reads dgh)
//   dgh    [D, T, B, G]    gradient of the recurrent pre-activations (also of b_hh)
//   dh, dc [D, B, H]       running gradients of the carried state; backward leaves
//                          the part that bypasses W_hh in dh, the GEMM adds the rest
// A step writes the states only: once the recurrence is done, `outputs` writes y
// from them (y[b, t, d·H + j] = hs[d, t + 1 − d, b, j] for t < length, else 0), so
// that no step binds y: the LSTM's step binds 8 storage buffers, WebGPU's default
// limit, where writing y too would take 9.
// Dispatch (ceil(H / 64), B, D), one invocation per unit j of sequence b, direction d;
// forward_packing (ceil(H / 256), B, D), one invocation per 4 units, which also
// writes them into the texture the next step's recurrent GEMM reads (on adapters
// whose GEMM reads packed textures, this saves a pack dispatch per step). Where H
// is a multiple of 4, forward4, forward_packing4 and backward4 (at the end of this
// file) do the same on 4 units per invocation: (ceil(H / 64), B, D), workgroups of
// 16 invocations. outputs (outputs4) is dispatched as forward (forward4), each
// invocation looping over t.

override WRITES_DGI: bool = true;

// Zoneout: zoneout.wgsl (ZONEOUT, ZONE_MEAN, zone_at), prepended with this file.

// Recurrent dropout (Gal and Ghahramani 2016, Keras's recurrent_dropout), in
// training: the recurrent product reads m ⊙ h' instead of h', with one mask per
// sequence, unit and direction for the whole sequence, m = 1 / (1 − P) where
// pcg(pcg((d·B + b)·H + j) ^ r_seed) ≥ P·2³², else 0. The cells never see it:
// the per-step products read masked states (mask_states, or the fused steps
// mask what they read), dh gets m ⊙ (dgh · W_hh) (add_masked, or the fused
// backward), and dW_hh reads the masked history (mask_history).
override RECURRENT_DROPOUT: bool = false;

struct Params {
    b: u32, t: u32, h: u32, d: u32,
    step: u32, seed: u32, h_threshold: u32, c_threshold: u32,
    h_zone: f32, c_zone: f32, r_seed: u32, r_threshold: u32,
    r_scale: f32, _pad0: u32, _pad1: u32, _pad2: u32,
}

// Storage type of the activations: xw, gh, hs, y and acts (f16 where the host
// binds f16 storage). The cell state cs, the biases and every gradient stay f32.
alias act_t = f32;

// Bindings every cell uses; a cell adds cs (7), acts (9) and dc (12) as it needs.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> lengths: array<u32>;    // [B]
@group(0) @binding(2) var<storage, read> xw: array<act_t>;       // [D, B, T, G]
@group(0) @binding(3) var<storage, read_write> gh: array<act_t>; // [D, B, G]
@group(0) @binding(4) var<storage, read> b_ih: array<f32>;       // [D, G]
@group(0) @binding(5) var<storage, read> b_hh: array<f32>;       // [D, G]
@group(0) @binding(6) var<storage, read_write> hs: array<act_t>; // [D, T + 1, B, H]
@group(0) @binding(8) var<storage, read_write> y: array<act_t>;  // [B, T, D·H]
@group(0) @binding(10) var<storage, read> dy: array<f32>;        // [B, T, D·H]
@group(0) @binding(11) var<storage, read_write> dh: array<f32>;  // [D, B, H]
@group(0) @binding(13) var<storage, read_write> dgi: array<f32>; // [D, B, T, G]
@group(0) @binding(14) var<storage, read_write> dgh: array<f32>; // [D, T, B, G]
// forward_packing: the new states as the next step's packed GEMM operand, texel
// (j / 4, b, d) = hs[next][d, b, j .. j + 4] (zeros past H).
@group(0) @binding(15) var next_packed: texture_storage_2d_array<rgba32float, write>;

// Where one invocation reads and writes; indices are of unit j, gate 0.
struct At {
    j: u32,
    live: bool, // t < length: a real step
    prev: u32,  // hs, cs: state before the step
    next: u32,  // hs, cs: state after the step
    xw: u32,    // xw, dgi
    gh: u32,    // gh
    gate: u32,  // b_ih, b_hh
    y: u32,     // y, dy
    row: u32,   // acts and dgh row (d, t, b), to scale by the row width
    state: u32, // dh, dc
}

fn locate(gid: vec3<u32>) -> At {
    return locate_step(gid, p.step);
}

// locate for step `step` of the recurrence.
fn locate_step(gid: vec3<u32>, step: u32) -> At {
    let j = gid.x;
    let b = gid.y;
    let d = gid.z;
    let reverse = d == 1u;
    let t = select(step, p.t - 1u - step, reverse);
    let prev_slot = select(t, t + 1u, reverse);
    let next_slot = select(t + 1u, t, reverse);
    let g = p.h * GATES;
    var at: At;
    at.j = j;
    at.live = t < lengths[b];
    at.prev = ((d * (p.t + 1u) + prev_slot) * p.b + b) * p.h + j;
    at.next = ((d * (p.t + 1u) + next_slot) * p.b + b) * p.h + j;
    at.xw = ((d * p.b + b) * p.t + t) * g + j;
    at.gh = (d * p.b + b) * g + j;
    at.gate = d * g + j;
    at.y = (b * p.t + t) * p.d * p.h + d * p.h + j;
    at.row = (d * p.t + t) * p.b + b;
    at.state = (d * p.b + b) * p.h + j;
    return at;
}

// Past a sequence's length: the state carries over. Returns the carried state.
fn carry(at: At) -> f32 {
    let h = hs[at.prev];
    hs[at.next] = h;
    return f32(h);
}

// Recurrent dropout's multiplier of unit j of sequence b, direction d at `index`
// = (d·B + b)·H + j (1 without it).
fn keep_at(index: u32) -> f32 {
    if (!RECURRENT_DROPOUT) {
        return 1.0;
    }
    return select(0.0, p.r_scale, pcg(pcg(index) ^ p.r_seed) >= p.r_threshold);
}

fn keep4(index: u32) -> vec4<f32> {
    return vec4<f32>(keep_at(index), keep_at(index + 1u), keep_at(index + 2u), keep_at(index + 3u));
}

fn zone(at: At, c: bool) -> f32 {
    return zone_at(at.row * p.h + at.j, c);
}

// The step's h after zoneout from its new h (h itself without zoneout).
fn zone_h(at: At, h: f32) -> f32 {
    if (!ZONEOUT) {
        return h;
    }
    return mix(h, f32(hs[at.prev]), zone(at, false));
}

// The gradient of the step's h (running dh + dy) split by zoneout: `cell`
// reaches the step's new h, `bypass` the state before it (0 without zoneout).
struct DhSplit {
    cell: f32,
    bypass: f32,
}

fn dh_split(at: At) -> DhSplit {
    let dh_t = dh[at.state] + dy[at.y];
    let z = zone(at, false);
    return DhSplit((1.0 - z) * dh_t, z * dh_t);
}

// Stores the new state h (after zoneout); returns it as stored, which is what
// the next step's GEMM reads.
fn put_h(at: At, h: f32) -> f32 {
    let stored = act_t(zone_h(at, h));
    hs[at.next] = stored;
    return f32(stored);
}

// Index of y[b, t, d·H + j] and of the state it copies, hs[d, t + 1 − d, b, j].
fn y_at(j: u32, b: u32, d: u32, t: u32) -> u32 {
    return (b * p.t + t) * p.d * p.h + d * p.h + j;
}

fn h_at(j: u32, b: u32, d: u32, t: u32) -> u32 {
    return ((d * (p.t + 1u) + t + 1u - d) * p.b + b) * p.h + j;
}

// Past a sequence's length no gate has a gradient.
fn no_gradient(at: At) {
    for (var k = 0u; k < GATES; k++) {
        if (WRITES_DGI) {
            dgi[at.xw + k * p.h] = 0.0;
        }
        dgh[(at.row * GATES + k) * p.h + at.j] = 0.0;
    }
}

// Each cell's forward does one unit in forward_unit (returning its new state); the
// two entry points differ in how many units an invocation does and what else it writes.
@compute @workgroup_size(64, 1, 1)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.h) {
        return;
    }
    forward_unit(locate(gid));
}

@compute @workgroup_size(64, 1, 1)
fn forward_packing(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j0 = 4u * gid.x;
    if (j0 >= p.h) {
        return;
    }
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        if (j0 + i < p.h) {
            v[i] = forward_unit(locate(vec3<u32>(j0 + i, gid.y, gid.z)));
        }
    }
    textureStore(next_packed, vec2<u32>(gid.x, gid.y), gid.z, v);
}

@compute @workgroup_size(64, 1, 1)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.h) {
        backward_unit(locate(gid));
    }
}

@compute @workgroup_size(64, 1, 1)
fn outputs(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let b = gid.y;
    let d = gid.z;
    if (j >= p.h) {
        return;
    }
    let len = lengths[b];
    for (var t = 0u; t < p.t; t++) {
        y[y_at(j, b, d, t)] = select(act_t(0.0), hs[h_at(j, b, d, t)], t < len);
    }
}

// The same on 4 consecutive units per invocation (H a multiple of 4, so every
// index below is too), through vec4 views of the same buffers bound 16 above the
// scalar ones: on CPU adapters a storage load or store costs per access whatever
// its width, so this does a quarter of them. Each cell provides forward_units4
// (returning the new states as stored) and backward_units4; workgroups of 16
// invocations do 64 units, as the scalar entries' do.
@group(0) @binding(18) var<storage, read> xw4: array<vec4<act_t>>;
@group(0) @binding(19) var<storage, read_write> gh4: array<vec4<act_t>>;
@group(0) @binding(20) var<storage, read> b_ih4: array<vec4<f32>>;
@group(0) @binding(21) var<storage, read> b_hh4: array<vec4<f32>>;
@group(0) @binding(22) var<storage, read_write> hs4: array<vec4<act_t>>;
@group(0) @binding(24) var<storage, read_write> y4: array<vec4<act_t>>;
@group(0) @binding(26) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(27) var<storage, read_write> dh4: array<vec4<f32>>;
@group(0) @binding(29) var<storage, read_write> dgi4: array<vec4<f32>>;
@group(0) @binding(30) var<storage, read_write> dgh4: array<vec4<f32>>;

// Gate k's pre-activation parts of the 4 units at `at`: input and recurrent
// projections, biases.
fn xw4_(at: At, k: u32) -> vec4<f32> {
    return vec4<f32>(xw4[(at.xw + k * p.h) / 4u]) + b_ih4[(at.gate + k * p.h) / 4u];
}

fn gh4_(at: At, k: u32) -> vec4<f32> {
    return vec4<f32>(gh4[(at.gh + k * p.h) / 4u]) + b_hh4[(at.gate + k * p.h) / 4u];
}

fn carry4(at: At) -> vec4<f32> {
    let h = hs4[at.prev / 4u];
    hs4[at.next / 4u] = h;
    return vec4<f32>(h);
}

fn zone4(at: At, c: bool) -> vec4<f32> {
    return zone_at4(at.row * p.h + at.j, c);
}

fn put_h4(at: At, h: vec4<f32>) -> vec4<f32> {
    var out = h;
    if (ZONEOUT) {
        out = mix(h, vec4<f32>(hs4[at.prev / 4u]), zone4(at, false));
    }
    let stored = vec4<act_t>(out);
    hs4[at.next / 4u] = stored;
    return vec4<f32>(stored);
}

// dh_split of the 4 units at `at`.
struct DhSplit4 {
    cell: vec4<f32>,
    bypass: vec4<f32>,
}

fn dh4_split(at: At) -> DhSplit4 {
    let dh_t = dh4[at.state / 4u] + dy4[at.y / 4u];
    let z = zone4(at, false);
    return DhSplit4((1.0 - z) * dh_t, z * dh_t);
}

// Stores gate k's gradients of the 4 units at `at`: dgi, and dgh (which differs
// from dgi only in the GRU's n gate).
fn put_dg4(at: At, k: u32, dgi: vec4<f32>, dgh: vec4<f32>) {
    if (WRITES_DGI) {
        dgi4[(at.xw + k * p.h) / 4u] = dgi;
    }
    dgh4[((at.row * GATES + k) * p.h + at.j) / 4u] = dgh;
}

fn no_gradient4(at: At) {
    for (var k = 0u; k < GATES; k++) {
        put_dg4(at, k, vec4<f32>(0.0), vec4<f32>(0.0));
    }
}

// Units 4·gid.x .. + 4 of sequence gid.y, direction gid.z.
fn at4(gid: vec3<u32>) -> At {
    return locate(vec3<u32>(4u * gid.x, gid.y, gid.z));
}

@compute @workgroup_size(16, 1, 1)
fn forward4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (4u * gid.x < p.h) {
        forward_units4(at4(gid));
    }
}

@compute @workgroup_size(16, 1, 1)
fn forward_packing4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (4u * gid.x < p.h) {
        textureStore(next_packed, vec2<u32>(gid.x, gid.y), gid.z, forward_units4(at4(gid)));
    }
}

@compute @workgroup_size(16, 1, 1)
fn outputs4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = 4u * gid.x;
    let b = gid.y;
    let d = gid.z;
    if (j >= p.h) {
        return;
    }
    let len = lengths[b];
    for (var t = 0u; t < p.t; t++) {
        let h = select(vec4<act_t>(0.0), hs4[h_at(j, b, d, t) / 4u], t < len);
        y4[y_at(j, b, d, t) / 4u] = h;
    }
}

@compute @workgroup_size(16, 1, 1)
fn backward4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (4u * gid.x < p.h) {
        backward_units4(at4(gid));
    }
}

// Fused steps, for adapters that bind a ninth storage buffer: the step's
// recurrent product inside the cell's dispatch, one dispatch per step.
// forward_fused computes gh of its own units from W_hh and the states before the
// step, then runs the cell. backward_fused first adds to dh the recurrent
// product of the step run before it (dgh of that step, written by the previous
// dispatch, times W_hh), then runs the cell's backward; the caller adds the last
// step's product with a GEMM. Same dispatch shapes as forward and backward (and
// their vec4 twins). W_hh [D, G, H] f32, with f32 activations.
@group(0) @binding(32) var<storage, read> w_hh: array<f32>;
@group(0) @binding(48) var<storage, read> w_hh4: array<vec4<f32>>;

// gh[d, b, k·H + j] = Σ_i hs[prev][i] · W_hh[d, k·H + j, i] for unit j's gates
// (hs[prev][i] times its recurrent dropout multiplier).
fn recurrent_product(at: At, d: u32) {
    let h0 = at.prev - at.j;
    let r0 = at.state - at.j;
    for (var k = 0u; k < GATES; k++) {
        let w0 = ((d * GATES + k) * p.h + at.j) * p.h;
        var acc = 0.0;
        for (var i = 0u; i < p.h; i++) {
            acc = fma(w_hh[w0 + i], f32(hs[h0 + i]) * keep_at(r0 + i), acc);
        }
        gh[at.gh + k * p.h] = act_t(acc);
    }
}

// dh[d, b, j] += Σ_g dgh[the step run before `step`][g] · W_hh[d, g, j]; nothing
// before the first step run (step T − 1).
fn state_product(at: At, gid: vec3<u32>, step: u32) {
    if (step + 1u >= p.t) {
        return;
    }
    let g = GATES * p.h;
    let r0 = locate_step(gid, step + 1u).row * g;
    var acc = 0.0;
    for (var k = 0u; k < g; k++) {
        acc = fma(dgh[r0 + k], w_hh[(gid.z * g + k) * p.h + at.j], acc);
    }
    dh[at.state] += acc * keep_at(at.state);
}

@compute @workgroup_size(64, 1, 1)
fn forward_fused(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.h) {
        return;
    }
    let at = locate(gid);
    if (at.live) {
        recurrent_product(at, gid.z);
    }
    forward_unit(at);
}

@compute @workgroup_size(64, 1, 1)
fn backward_fused(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.h) {
        return;
    }
    let at = locate(gid);
    state_product(at, gid, p.step);
    backward_unit(at);
}

// The same for the 4 units at `at`: rows read as vec4s along i.
fn recurrent_product4(at: At, d: u32) {
    let h0 = (at.prev - at.j) / 4u;
    let m0 = at.state - at.j;
    let q = p.h / 4u;
    for (var k = 0u; k < GATES; k++) {
        let r0 = ((d * GATES + k) * p.h + at.j) * q;
        // acc[e]: the partial sums of unit j + e's row.
        var acc = mat4x4<f32>();
        for (var i = 0u; i < q; i++) {
            let v = vec4<f32>(hs4[h0 + i]) * keep4(m0 + 4u * i);
            acc[0] = fma(w_hh4[r0 + i], v, acc[0]);
            acc[1] = fma(w_hh4[r0 + q + i], v, acc[1]);
            acc[2] = fma(w_hh4[r0 + 2u * q + i], v, acc[2]);
            acc[3] = fma(w_hh4[r0 + 3u * q + i], v, acc[3]);
        }
        gh4[(at.gh + k * p.h) / 4u] = vec4<act_t>(vec4<f32>(1.0) * acc);
    }
}

fn state_product4(at: At, gid: vec3<u32>, step: u32) {
    if (step + 1u >= p.t) {
        return;
    }
    let g = GATES * p.h;
    let r0 = locate_step(gid, step + 1u).row * g / 4u;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < g / 4u; k++) {
        let dg = dgh4[r0 + k];
        let w = ((gid.z * g + 4u * k) * p.h + at.j) / 4u;
        let q = p.h / 4u;
        acc = fma(w_hh4[w], vec4<f32>(dg.x), acc);
        acc = fma(w_hh4[w + q], vec4<f32>(dg.y), acc);
        acc = fma(w_hh4[w + 2u * q], vec4<f32>(dg.z), acc);
        acc = fma(w_hh4[w + 3u * q], vec4<f32>(dg.w), acc);
    }
    dh4[at.state / 4u] += acc * keep4(at.state);
}

@compute @workgroup_size(16, 1, 1)
fn forward_fused4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (4u * gid.x >= p.h) {
        return;
    }
    let at = at4(gid);
    if (at.live) {
        recurrent_product4(at, gid.z);
    }
    forward_units4(at);
}

@compute @workgroup_size(16, 1, 1)
fn backward_fused4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (4u * gid.x >= p.h) {
        return;
    }
    let at = at4(gid);
    state_product4(at, gid, p.step);
    backward_units4(at);
}

// Persistent steps: the fused steps of a whole sequence in one dispatch. A
// workgroup owns sequence b of direction d (dispatch (1, B, D)) and runs every
// step, its lanes taking units lane, lane + 64, ... (4 at a time in the vec4
// twins); a storage barrier ends each step, since the next step's products read
// every unit's new state (forward) or state gradient (backward). WebGPU has no
// barrier across workgroups, so a sequence never spans two. The backward leaves
// the first state's product to the caller's GEMM, as backward_fused does.
@compute @workgroup_size(64, 1, 1)
fn forward_persistent(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    for (var s = 0u; s < p.t; s++) {
        for (var j = lane; j < p.h; j += 64u) {
            let at = locate_step(vec3<u32>(j, wid.y, wid.z), s);
            if (at.live) {
                recurrent_product(at, wid.z);
            }
            forward_unit(at);
        }
        storageBarrier();
    }
}

@compute @workgroup_size(64, 1, 1)
fn backward_persistent(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    for (var k = 0u; k < p.t; k++) {
        let s = p.t - 1u - k;
        for (var j = lane; j < p.h; j += 64u) {
            let gid = vec3<u32>(j, wid.y, wid.z);
            let at = locate_step(gid, s);
            state_product(at, gid, s);
            backward_unit(at);
        }
        storageBarrier();
    }
}

@compute @workgroup_size(64, 1, 1)
fn forward_persistent4(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    for (var s = 0u; s < p.t; s++) {
        for (var j = 4u * lane; j < p.h; j += 256u) {
            let at = locate_step(vec3<u32>(j, wid.y, wid.z), s);
            if (at.live) {
                recurrent_product4(at, wid.z);
            }
            forward_units4(at);
        }
        storageBarrier();
    }
}

@compute @workgroup_size(64, 1, 1)
fn backward_persistent4(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    for (var k = 0u; k < p.t; k++) {
        let s = p.t - 1u - k;
        for (var j = 4u * lane; j < p.h; j += 256u) {
            let gid = vec3<u32>(j, wid.y, wid.z);
            let at = locate_step(gid, s);
            state_product4(at, gid, s);
            backward_units4(at);
        }
        storageBarrier();
    }
}

// Recurrent dropout's unfused steps (see RECURRENT_DROPOUT): dispatched as
// forward, one invocation per unit j of sequence b, direction d.
@group(0) @binding(33) var<storage, read_write> masked: array<act_t>; // [D, B, H] or as hs
@group(0) @binding(34) var<storage, read> dh_rec: array<f32>;         // [D, B, H]

// masked[d, b, j] = m ⊙ the state step `step` reads.
@compute @workgroup_size(64, 1, 1)
fn mask_states(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.h) {
        let at = locate(gid);
        masked[at.state] = act_t(f32(hs[at.prev]) * keep_at(at.state));
    }
}

// masked = m ⊙ hs, every slot.
@compute @workgroup_size(64, 1, 1)
fn mask_history(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.h) {
        return;
    }
    let state = (gid.z * p.b + gid.y) * p.h + gid.x;
    let m = keep_at(state);
    for (var s = 0u; s <= p.t; s++) {
        let i = ((gid.z * (p.t + 1u) + s) * p.b + gid.y) * p.h + gid.x;
        masked[i] = act_t(f32(hs[i]) * m);
    }
}

// dh += m ⊙ dh_rec, the recurrent product's share of the state gradient.
@compute @workgroup_size(64, 1, 1)
fn add_masked(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.h) {
        let state = (gid.z * p.b + gid.y) * p.h + gid.x;
        dh[state] += dh_rec[state] * keep_at(state);
    }
}
