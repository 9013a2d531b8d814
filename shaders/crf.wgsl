// Linear-chain CRF over K tags (Lafferty et al. 2001; the BiLSTM-CRF taggers of
// Huang et al. 2015 and Lample et al. 2016). Emissions e [B, T, K] (a tagger's
// logits, batch-first); weights w [K + 2, K]: row 0 the start scores s, row 1
// the end scores f, rows 2.. the transitions A[i, j] from tag i to tag j.
// Sequence b runs over its first L_b steps; gold [B + B·T] holds the lengths,
// then the gold tags y (anything past a length).
//   score(y) = s[y_0] + Σ_{t<L} e_t[y_t] + Σ_{0<t<L} A[y_{t−1}, y_t] + f[y_{L−1}]
// nll (the forward algorithm, in log space):
//   α_0[j] = s[j] + e_0[j],  α_t[j] = e_t[j] + logsumexp_i(α_{t−1}[i] + A[i, j])
//   log Z = logsumexp_j(α_{L−1}[j] + f[j]);  seq[b] = (log Z, log Z − score(y))
// loss: loss = scale · Σ_b (log Z − score(y)), scale = 1 / Σ_b L_b (per token).
// marginals, the backward's recursion (the backward algorithm; no autodiff
// through time): β_{L−1}[i] = f[i], β_t[i] = logsumexp_j(A[i, j] + e_{t+1}[j] + β_{t+1}[j]).
// emissions and weights, the gradient from the marginals, one invocation per
// emission or weight (no barriers):
//   P(y_t = j) = exp(α_t[j] + β_t[j] − log Z)
//   P(y_t = i, y_{t+1} = j) = exp(α_t[i] + A[i, j] + e_{t+1}[j] + β_{t+1}[j] − log Z)
//   de_t[j] = scale·(P(y_t = j) − [y_t = j]), 0 past L;
//   ds[j] = scale·Σ_b (P(y_0 = j) − [y_0 = j]), df the same at t = L − 1;
//   dA[i, j] = scale·Σ_b Σ_t (P(y_t = i, y_{t+1} = j) − [y_t = i, y_{t+1} = j]),
//   each sum over the sequences (and steps) in a fixed order.
// viterbi: δ_0 = s + e_0, δ_t[j] = e_t[j] + max_i(δ_{t−1}[i] + A[i, j]) (the
//   same recursion as α's), the arg max (the lowest i on ties) kept as
//   back-pointer (an f32: exact below 2²⁴ tags); the best last tag by
//   δ_{L−1} + f, the path traced back into path [B, T] (NO_TAG past L).
// With p.masked, transitions where allowed[i, j] = 0 are left out of every sum
// and max (A = −∞) and get no gradient; the host sees to it that each tag has
// an allowed successor, so every length has a path.
// One workgroup of WG lanes per sequence (nll, marginals, viterbi): tag j on
// lane j mod WG (any K); α and δ in storage, a storageBarrier between steps;
// lane 0 alone sums log Z and the gold score, or traces the path. Every
// lane runs all T steps so that the barriers stay in uniform control flow;
// steps past the length do nothing. exp only sees values less their maximum.
// Dispatch (1, min(B, 65535), ceil(B / 65535)); emissions ceil(B·T·K / 64),
// weights ceil((K + 2)·K / 64) (folded into y past 65535); loss (1, 1, 1).

// Lanes of a sequence's workgroup, chosen by the host from K.
override WG: u32 = 64u;
const NONE: f32 = -3.0e38;
const NO_TAG: u32 = 0xffffffffu;

struct Params {
    b: u32,
    t: u32,
    k: u32,
    masked: u32, // 1: allowed chooses the transitions
    scale: f32,
    viterbi: u32, // 1: the recursion takes maxima (viterbi), 0: log-sum-exps
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> em: array<f32>;            // [B, T, K]
@group(0) @binding(2) var<storage, read> gold: array<u32>;          // [B] lengths, then [B, T] tags
@group(0) @binding(3) var<storage, read> w: array<f32>;             // [K + 2, K]
@group(0) @binding(4) var<storage, read> allowed: array<u32>;       // [K, K] when masked; else any
@group(0) @binding(5) var<storage, read_write> alpha: array<f32>;   // [B, T, K]: α; viterbi: [2, B, T, K], δ and back-pointers
@group(0) @binding(6) var<storage, read_write> seq: array<f32>;     // [B, 2]: log Z, nll
@group(0) @binding(7) var<storage, read_write> beta: array<f32>;    // [B, T, K]
@group(0) @binding(8) var<storage, read_write> dem: array<f32>;     // [B, T, K]
@group(0) @binding(9) var<storage, read_write> loss_out: array<f32>; // [1]
@group(0) @binding(10) var<storage, read_write> dw: array<f32>;     // [K + 2, K]
@group(0) @binding(11) var<storage, read_write> path: array<u32>;   // [B, T]

fn ok(i: u32, j: u32) -> bool {
    return p.masked == 0u || allowed[i * p.k + j] != 0u;
}

fn trans(i: u32, j: u32) -> f32 {
    return w[(2u + i) * p.k + j];
}

// A running log-sum-exp: the maximum and the sum of exp(v − maximum).
struct Lse {
    m: f32,
    s: f32,
}

fn lse_add(a: Lse, v: f32) -> Lse {
    if (v <= a.m) {
        return Lse(a.m, a.s + exp(v - a.m));
    }
    return Lse(v, a.s * exp(a.m - v) + 1.0);
}

fn lse_value(a: Lse) -> f32 {
    if (a.s == 0.0) {
        return NONE;
    }
    return a.m + log(a.s);
}

fn sequence(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y + wid.z * nwg.y;
}

fn tag(b: u32, t: u32) -> u32 {
    return gold[p.b + b * p.t + t];
}

// The forward recursion of sequence b over its first len steps into alpha:
// α by log-sum-exp over the previous tags, or with p.viterbi δ by their
// maximum, its arg max (the lowest on ties) kept as f32 in alpha's second
// half, [B, T, K] past the first.
fn recursion(lane: u32, b: u32, len: u32) {
    let base = b * p.t * p.k;
    for (var j = lane; j < p.k; j += WG) {
        alpha[base + j] = w[j] + em[base + j];
    }
    for (var t = 1u; t < p.t; t++) {
        storageBarrier();
        if (t < len) {
            let prev = base + (t - 1u) * p.k;
            let row = base + t * p.k;
            for (var j = lane; j < p.k; j += WG) {
                var acc = Lse(NONE, 0.0);
                var best = NONE;
                var at = 0u;
                for (var i = 0u; i < p.k; i++) {
                    if (ok(i, j)) {
                        let v = alpha[prev + i] + trans(i, j);
                        if (p.viterbi == 0u) {
                            acc = lse_add(acc, v);
                        } else if (v > best) {
                            best = v;
                            at = i;
                        }
                    }
                }
                if (p.viterbi == 0u) {
                    alpha[row + j] = em[row + j] + lse_value(acc);
                } else {
                    alpha[row + j] = em[row + j] + best;
                    alpha[p.b * p.t * p.k + row + j] = f32(at);
                }
            }
        }
    }
    storageBarrier();
}

// The recursion's end for sequence b of length len, the end scores added:
// log Z by log-sum-exp over the last tags, or with p.viterbi the best final
// score and its tag (the lowest on ties).
struct End {
    value: f32,
    tag: u32,
}

fn termination(b: u32, len: u32) -> End {
    let last = (b * p.t + len - 1u) * p.k;
    var acc = Lse(NONE, 0.0);
    var end = End(NONE, 0u);
    for (var j = 0u; j < p.k; j++) {
        let v = alpha[last + j] + w[p.k + j];
        if (p.viterbi == 0u) {
            acc = lse_add(acc, v);
        } else if (v > end.value) {
            end = End(v, j);
        }
    }
    if (p.viterbi == 0u) {
        end.value = lse_value(acc);
    }
    return end;
}

@compute @workgroup_size(WG, 1, 1)
fn nll(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = sequence(wid, nwg);
    if (b >= p.b) {
        return;
    }
    let len = gold[b];
    recursion(lane, b, len);
    if (lane == 0u) {
        let base = b * p.t * p.k;
        let log_z = termination(b, len).value;
        var y = tag(b, 0u);
        var score = w[y] + em[base + y];
        for (var t = 1u; t < len; t++) {
            let next = tag(b, t);
            score += trans(y, next) + em[base + t * p.k + next];
            y = next;
        }
        score += w[p.k + y];
        seq[2u * b] = log_z;
        seq[2u * b + 1u] = log_z - score;
    }
}

@compute @workgroup_size(1, 1, 1)
fn loss() {
    var sum = 0.0;
    for (var b = 0u; b < p.b; b++) {
        sum += seq[2u * b + 1u];
    }
    loss_out[0] = sum * p.scale;
}

@compute @workgroup_size(WG, 1, 1)
fn marginals(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = sequence(wid, nwg);
    if (b >= p.b) {
        return;
    }
    let len = gold[b];
    let base = b * p.t * p.k;
    for (var step = 0u; step < p.t; step++) {
        let t = p.t - 1u - step;
        let row = base + t * p.k;
        if (t + 1u == len) {
            for (var i = lane; i < p.k; i += WG) {
                beta[row + i] = w[p.k + i];
            }
        } else if (t + 1u < len) {
            let next = row + p.k;
            for (var i = lane; i < p.k; i += WG) {
                var acc = Lse(NONE, 0.0);
                for (var j = 0u; j < p.k; j++) {
                    if (ok(i, j)) {
                        acc = lse_add(acc, trans(i, j) + em[next + j] + beta[next + j]);
                    }
                }
                beta[row + i] = lse_value(acc);
            }
        }
        storageBarrier();
    }
}

// The marginal P(y_t = j) of sequence b at e = (b, t, j): exp(α + β − log Z).
fn unary(b: u32, e: u32) -> f32 {
    return exp(alpha[e] + beta[e] - seq[2u * b]);
}

// One invocation per emission (b, t, j): the gradient from α, β and log Z.
@compute @workgroup_size(64, 1, 1)
fn emissions(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.b * p.t * p.k) {
        return;
    }
    let j = i % p.k;
    let t = (i / p.k) % p.t;
    let b = i / (p.k * p.t);
    if (t >= gold[b]) {
        dem[i] = 0.0;
        return;
    }
    dem[i] = p.scale * (unary(b, i) - select(0.0, 1.0, tag(b, t) == j));
}

// One invocation per weight: its gradient summed over the sequences (and
// steps), each term a marginal less the gold path's count.
@compute @workgroup_size(64, 1, 1)
fn weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = (p.k + 2u) * p.k;
    let at = gid.x + gid.y * nwg.x * 64u;
    if (at >= n) {
        return;
    }
    let row = at / p.k;
    let j = at % p.k;
    var sum = 0.0;
    if (row == 0u) {
        // Start scores: P(y_0 = j) = exp(α_0 + β_0 − log Z).
        for (var b = 0u; b < p.b; b++) {
            sum += unary(b, b * p.t * p.k + j) - select(0.0, 1.0, tag(b, 0u) == j);
        }
    } else if (row == 1u) {
        // End scores: P(y_{L−1} = j) = exp(α_{L−1} + f − log Z).
        for (var b = 0u; b < p.b; b++) {
            let last = gold[b] - 1u;
            let q = exp(alpha[(b * p.t + last) * p.k + j] + w[p.k + j] - seq[2u * b]);
            sum += q - select(0.0, 1.0, tag(b, last) == j);
        }
    } else if (ok(row - 2u, j)) {
        let i = row - 2u;
        let a = trans(i, j);
        for (var b = 0u; b < p.b; b++) {
            let log_z = seq[2u * b];
            let len = gold[b];
            for (var t = 0u; t + 1u < len; t++) {
                let here = (b * p.t + t) * p.k;
                let next = here + p.k;
                let q = exp(alpha[here + i] + a + em[next + j] + beta[next + j] - log_z);
                let both = tag(b, t) == i && tag(b, t + 1u) == j;
                sum += q - select(0.0, 1.0, both);
            }
        }
    }
    dw[at] = p.scale * sum;
}

@compute @workgroup_size(WG, 1, 1)
fn viterbi(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = sequence(wid, nwg);
    if (b >= p.b) {
        return;
    }
    let len = gold[b];
    recursion(lane, b, len);
    if (lane == 0u) {
        let base = b * p.t * p.k;
        var y = termination(b, len).tag;
        for (var t = len; t < p.t; t++) {
            path[b * p.t + t] = NO_TAG;
        }
        path[b * p.t + len - 1u] = y;
        let back = p.b * p.t * p.k + base;
        for (var t = len - 1u; t > 0u; t--) {
            y = u32(alpha[back + t * p.k + y]);
            path[b * p.t + t - 1u] = y;
        }
    }
}
