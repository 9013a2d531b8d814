// One step of batched beam search: from the logits of every live hypothesis, the
// k best continuations of each batch entry.
//   candidate (j, t) of entry b, hypothesis r = b·k + j:
//     score[r] + logits[r, t] − logsumexp(logits[r, :])   hypothesis r still open
//     score[r] if t = eos, else −inf                       hypothesis r finished
//   (score[r] = −inf marks an empty slot: all its candidates are −inf.)
//   out_*[b·k + i] = the i-th best candidate (score, j, t), best first, the lower
//   candidate index j·V + t first on ties; NaN never wins.
// One workgroup of 64 per entry (entries folded into z past 65535): a log-sum-exp
// per hypothesis, then each lane keeps a sorted top-k of its strided share of the
// k·V candidates, and k rounds of `reduce_best` merge the lanes' lists.
// Dispatch (1, min(B, 65535), ceil(B / 65535)). No backward: search is not
// differentiated. WG, reduce, beats and reduce_best come from
// workgroup_reduce.wgsl, prepended to this file.

// Most hypotheses per entry; the host refuses more.
const MAX_BEAM: u32 = 16u;
const NONE: u32 = 0xffffffffu;
// −inf, made at run time: a WGSL constant expression must be finite (Tint rejects
// bitcast<f32>(0xff800000u) at shader creation), and reading a variable is not one.
var<private> NEG_INF_BITS: u32 = 0xff800000u;

struct Params {
    batch: u32,
    k: u32,
    v: u32,
    eos: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;            // [B·k, V]
@group(0) @binding(2) var<storage, read> score: array<f32>;             // [B·k]
@group(0) @binding(3) var<storage, read> finished: array<u32>;          // [B·k], 1 = ended
@group(0) @binding(4) var<storage, read_write> out_score: array<f32>;   // [B·k]
@group(0) @binding(5) var<storage, read_write> out_origin: array<u32>;  // [B·k] j
@group(0) @binding(6) var<storage, read_write> out_token: array<u32>;   // [B·k] t

var<workgroup> lse: array<f32, MAX_BEAM>;

fn candidate(b: u32, c: u32) -> f32 {
    let j = c / p.v;
    let t = c % p.v;
    let r = b * p.k + j;
    let s = score[r];
    if (finished[r] != 0u) {
        return select(bitcast<f32>(NEG_INF_BITS), s, t == p.eos);
    }
    return s + logits[r * p.v + t] - lse[j];
}

@compute @workgroup_size(64, 1, 1)
fn step(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = wid.y + wid.z * nwg.y;
    if (b >= p.batch) {
        return;
    }
    for (var j = 0u; j < p.k; j++) {
        let row = (b * p.k + j) * p.v;
        var m = -3.4e38;
        for (var t = lane; t < p.v; t += WG) {
            m = max(m, logits[row + t]);
        }
        m = reduce(lane, m, true);
        var s = 0.0;
        for (var t = lane; t < p.v; t += WG) {
            s += exp(logits[row + t] - m);
        }
        s = reduce(lane, s, false);
        if (lane == 0u) {
            lse[j] = m + log(s);
        }
    }
    workgroupBarrier();

    // This lane's best k candidates, best first (−inf ones included, so that
    // every slot names a real candidate).
    var lv: array<f32, MAX_BEAM>;
    var li: array<u32, MAX_BEAM>;
    for (var i = 0u; i < p.k; i++) {
        lv[i] = bitcast<f32>(NEG_INF_BITS);
        li[i] = NONE;
    }
    let last = p.k - 1u;
    for (var c = lane; c < p.k * p.v; c += WG) {
        let s = candidate(b, c);
        if (beats(s, c, lv[last], li[last])) {
            var pos = last;
            while (pos > 0u && beats(s, c, lv[pos - 1u], li[pos - 1u])) {
                lv[pos] = lv[pos - 1u];
                li[pos] = li[pos - 1u];
                pos--;
            }
            lv[pos] = s;
            li[pos] = c;
        }
    }

    var head = 0u;
    for (var i = 0u; i < p.k; i++) {
        var v = bitcast<f32>(NEG_INF_BITS);
        var c = NONE;
        if (head < p.k) {
            v = lv[head];
            c = li[head];
        }
        let best = reduce_best(lane, v, c);
        // Candidate indices are unique to a lane: the owner moves on.
        if (best.i != NONE && c == best.i) {
            head++;
        }
        if (lane == 0u) {
            let o = b * p.k + i;
            out_score[o] = best.v;
            out_origin[o] = select(best.i / p.v, 0u, best.i == NONE);
            out_token[o] = select(best.i % p.v, p.eos, best.i == NONE);
        }
    }
}
