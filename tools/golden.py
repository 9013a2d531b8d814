#!/usr/bin/env python3
"""Writes the PyTorch golden cases of the recurrent layers and of attention to
tests/golden/.

Each case runs torch.nn.LSTM / GRU / RNN in float64 on a padded batch
(pack_padded_sequence with enforce_sorted=False, pad_packed_sequence with
total_length=T), takes the gradients of
    loss = Σ y·dy + Σ h_n·dh_n (+ Σ c_n·dc_n)
and stores everything as f32 (lengths as i32) in one safetensors file per case.
Metadata: op, input_size, hidden_size, num_layers, bidirectional ("0"/"1"), and
proj_size for torch.nn.LSTM's projection (h0, h_n and y then P wide).

Attention cases (op = attention, score = dot | general | additive): q [B, Tq, Dq],
k [B, S, Dk] (keys are also the values), W [Dq, Dk] for general, W_q [A, Dq],
W_k [A, Dk] and v [A] for additive, i32 src_lengths [B]; outputs
weights [B, Tq, S] (zero past each length) and context [B, Tq, Dk]; upstream
dcontext, dweights; gradients of loss = Σ context·dcontext + Σ weights·dweights
as grad.q, grad.k and grad.<parameter>.

Transformer encoder layer cases (op = transformer_encoder_layer, heads):
torch.nn.TransformerEncoderLayer(batch_first, ReLU, post-norm, dropout 0) on x
[B, T, D] with src_key_padding_mask from i32 src_lengths [B]; output y, upstream
dy, every parameter under its state_dict name, and the gradients of Σ y·dy as
grad.x and grad.<parameter>.

Dropout between stacked layers (the recurrent metadata plus dropout, the drop
probability, and train "0"/"1"): in evaluation torch.nn.LSTM / GRU with its
`dropout` set, which must ignore it; in training the stack run layer by layer
with each output but the last multiplied by the library's mask (its counter
hash, ported below, from dropout_seed: the seed of the layer's
`with_dropout(p, seed)`, call k of its first forward using
seed·0x9E3779B9 + k), so that the forward and every gradient are PyTorch's for
that mask.

Zoneout (the recurrent metadata plus zoneout_h, zoneout_c, zoneout_seed and
train "0"/"1"): the stack run step by step through PyTorch's cell functions
(torch.lstm_cell, torch.gru_cell) on its own parameters, each sequence over its
real steps, the new h (and c) mixed with the previous one by z: in training z
is 1 where the library's hash (ported below) of the unit's index ((d·T + t)·B +
b)·H + j and layer l's seed (zoneout_seed·0x9E3779B9 xor l·0x85EBCA6B; c's
xored with 0x9E3779B9) is below p·2³², else 0; in evaluation z = p. With
recurrent_dropout and recurrent_dropout_seed as well (LSTM, training): the
recurrent product reads the previous h times the library's dropout mask of
[D, B, H] from that layer's seed (drawn as zoneout's).

LayerNorm-LSTM (the recurrent metadata plus layer_norm "1"): haste's
formulation step by step on the stack's parameters and the normalizations'
(layer_norm_ih_weight_l{k}, layer_norm_hh_weight_l{k} [4H], layer_norm_c_weight_l{k},
layer_norm_c_bias_l{k} [H], random), each sequence over its real steps:
a = LN(x·W_ihᵀ)·γ_ih + LN(h'·W_hhᵀ)·γ_hh + b_ih + b_hh, c = f·c' + i·g,
h = o·tanh(LN(c)·γ_c + β_c), LN over the row with eps 1e-5.

Tape op cases (op = tape, fn = the op): inputs x0 (and x1), upstream d, output
y and the gradients of Σ y·d as grad.x0 (grad.x1), in float64; i32 lengths or
ids where the op takes them, the other arguments in the metadata (dim, start,
len, alpha).

Tensor op cases (op = tape as well): the broadcasting arithmetic, sigmoid, exp,
log, permute, swap_dims, expand and the ops that take a mask tensor
(masked_fill, softmax_masked, log_softmax_masked, cross_entropy_masked), in the
same format; a mask is an i32 tensor `mask` (non-zero: fill, or take part)
whose shape is the metadata mask_shape ("2,1,5"), the other arguments in the
metadata (dims, a, b, shape, value). Divisors and logarithms' arguments are
drawn away from 0.

minGRU and minLSTM cases (op = min_gru | min_lstm, the recurrent metadata):
the paper's sequential equations (Feng et al. 2024) written here in float64,
each layer and direction an input map with weight_ih_l{k}(_reverse) [G·H, I]
and bias_ih_l{k}(_reverse) [G·H] (gates z, h̃ or f, i, h̃), each sequence over
its real steps (the reverse direction from its last), y 0 past each length,
h_n the state after the last real step; x, h0, dy, dh_n and the gradients of
Σ y·dy + Σ h_n·dh_n as in the recurrent cases.

Linear-chain CRF cases (op = crf, tags K, forbidden "i>j,..." or ""): a
reference written here in float64 plain PyTorch, pytorch-crf's parameters
start_transitions [K], end_transitions [K] and transitions [K, K] (from the
row's tag to the column's; forbidden ones -inf), emissions [B, T, K], i32 gold
tags [B, T] and lengths [B] (-1 past each length); loss = Σ_b (log Z_b −
score_b(tags)) / Σ_b L_b with log Z by the forward algorithm, the gradients of
the loss as grad.emissions and grad.<parameter>, and the Viterbi paths as i32
path [B, T] (-1 past each length). For chains small enough, log Z and the
best path are checked here against brute force over every path first.

    pip install torch safetensors numpy
    python3 tools/golden.py [OUT_DIR]      # default: tests/golden
"""

import itertools
import os
import sys

import torch
from safetensors.torch import save_file
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# (op, input, hidden, layers, bidirectional, lengths (B = len), T)
CASES = [
    (op, i, h, layers, bi, lengths, t)
    for op in ["lstm", "gru", "rnn_tanh", "rnn_relu"]
    for (i, h, layers, bi, lengths, t) in [
        (7, 13, 1, False, [9, 1, 5, 3], 9),
        (5, 13, 2, True, [1, 6, 4], 6),
        (11, 65, 1, True, [5, 2, 1], 5),
        (6, 65, 2, False, [4, 1, 3], 4),
    ]
]


def module(op, i, h, layers, bi, proj=0):
    kw = dict(num_layers=layers, bidirectional=bi, batch_first=True)
    if op == "lstm":
        return torch.nn.LSTM(i, h, proj_size=proj, **kw)
    if op == "gru":
        return torch.nn.GRU(i, h, **kw)
    return torch.nn.RNN(i, h, nonlinearity=op.split("_")[1], **kw)


def recurrent_tensors(m, grads, lens, x, h0, c0, y, h_n, c_n, dy, dh_n, dc_n):
    """A recurrent case's tensors: parameters, their gradients `grads`, inputs,
    outputs, upstream gradients and the inputs' gradients (c's for an LSTM, where
    c_n is given), as f32, and the lengths as i32."""
    tensors = {name: p for name, p in m.named_parameters()}
    tensors.update(grads)
    tensors.update(x=x, h0=h0, y=y, h_n=h_n, dy=dy, dh_n=dh_n)
    tensors.update({"grad.x": x.grad, "grad.h0": h0.grad})
    if c_n is not None:
        tensors.update({"c0": c0, "c_n": c_n, "dc_n": dc_n, "grad.c0": c0.grad})
    tensors = {k: v.detach().float().contiguous() for k, v in tensors.items()}
    tensors["lengths"] = lens.to(torch.int32)
    return tensors


def recurrent_meta(op, i, h, layers, bi):
    return dict(
        op=op,
        input_size=str(i),
        hidden_size=str(h),
        num_layers=str(layers),
        bidirectional="1" if bi else "0",
    )


def random_inputs(b, t, i, h, s, layers, bi):
    """A recurrent case's random x, h0, c0 (the inputs, with gradients) and dy,
    dh_n, dc_n (the upstream gradients), drawn in that order; states and outputs
    s wide, cell states h wide."""
    d = 2 if bi else 1

    def draw(*shape, grad=False):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=grad)

    return (
        draw(b, t, i, grad=True),
        draw(layers * d, b, s, grad=True),
        draw(layers * d, b, h, grad=True),
        draw(b, t, d * s),
        draw(layers * d, b, s),
        draw(layers * d, b, h),
    )


def case(seed, op, i, h, layers, bi, lengths, t, proj=0):
    torch.manual_seed(seed)
    m = module(op, i, h, layers, bi, proj).double()
    b = len(lengths)
    x, h0, c0, dy, dh_n, dc_n = random_inputs(b, t, i, h, proj or h, layers, bi)
    lens = torch.tensor(lengths)
    packed = pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
    lstm = op == "lstm"
    out, state = m(packed, (h0, c0) if lstm else h0)
    y, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
    h_n, c_n = state if lstm else (state, None)
    loss = (y * dy).sum() + (h_n * dh_n).sum()
    if lstm:
        loss = loss + (c_n * dc_n).sum()
    loss.backward()

    grads = {f"grad.{name}": p.grad for name, p in m.named_parameters()}
    tensors = recurrent_tensors(m, grads, lens, x, h0, c0, y, h_n, c_n, dy, dh_n, dc_n)
    meta = recurrent_meta(op, i, h, layers, bi)
    if proj:
        meta["proj_size"] = str(proj)
    return tensors, meta


# LSTMs with proj_size: (op, input, hidden, layers, bidirectional, lengths, T, P)
PROJ = [
    ("lstm", 7, 13, 1, False, [9, 1, 5, 3], 9, 5),
    ("lstm", 5, 12, 2, True, [1, 6, 4], 6, 8),
]


# (op, input, hidden, layers, bidirectional, lengths, T, p, dropout_seed, train)
DROPOUT = [
    ("lstm", 5, 6, 3, True, [4, 1, 3], 4, 0.25, 9, True),
    ("gru", 4, 8, 2, False, [3, 2], 3, 0.5, 17, True),
    ("lstm", 5, 6, 2, True, [4, 2, 3], 4, 0.5, 0, False),
]

M32 = 0xFFFFFFFF


def pcg(v):
    """shaders/hash.wgsl's hash."""
    state = (v * 747796405 + 2891336453) & M32
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & M32
    return ((word >> 22) ^ word) & M32


def dropout_mask(shape, p, seed):
    """The library's dropout of probability p with mask seed `seed` as a
    multiplier: 0, or 1 / (1 − p) where pcg(pcg(i) ^ seed) ≥ p·2³²."""
    threshold = min(int(p * 2**32 + 0.5), M32)
    n = 1
    for s in shape:
        n *= s
    keep = [pcg(pcg(i) ^ seed) >= threshold for i in range(n)]
    return torch.tensor(keep, dtype=torch.float64).reshape(shape) / (1 - p)


def dropout_case(seed, op, i, h, layers, bi, lengths, t, p, drop_seed, train):
    torch.manual_seed(seed)
    m = module(op, i, h, layers, bi).double()
    m.dropout = p
    b, d = len(lengths), 2 if bi else 1
    x, h0, c0, dy, dh_n, dc_n = random_inputs(b, t, i, h, h, layers, bi)
    lens = torch.tensor(lengths)
    lstm = op == "lstm"

    def run(mod, inp, h0, c0):
        packed = pack_padded_sequence(inp, lens, batch_first=True, enforce_sorted=False)
        out, state = mod(packed, (h0, c0) if lstm else h0)
        y, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
        return (y, *state) if lstm else (y, state, None)

    layer_of = {}
    if not train:
        m.eval()
        y, h_n, c_n = run(m, x, h0, c0)
    else:
        # Layer by layer, each a one-layer module holding a copy of the stack's
        # weights of that layer: their gradients are the stack's.
        inp, hs, cs = x, [], []
        for l in range(layers):
            one = module(op, inp.shape[2], h, 1, bi).double()
            for name, prm in one.named_parameters():
                prm.data = getattr(m, name.replace("_l0", f"_l{l}")).data.clone()
            layer_of[l] = one
            rows = slice(l * d, (l + 1) * d)
            y, h_l, c_l = run(one, inp, h0[rows], c0[rows])
            hs.append(h_l)
            cs.append(c_l)
            if l + 1 < layers:
                seed_k = (drop_seed * 0x9E3779B9 + l) & M32
                y = y * dropout_mask(y.shape, p, seed_k)
            inp = y
        h_n = torch.cat(hs)
        c_n = torch.cat(cs) if lstm else None
    loss = (y * dy).sum() + (h_n * dh_n).sum()
    if lstm:
        loss = loss + (c_n * dc_n).sum()
    loss.backward()

    # Trained layer by layer, the stack's gradients are its layers' modules'.
    grads = {f"grad.{name}": p_.grad for name, p_ in m.named_parameters()}
    for l, one in layer_of.items():
        for name, p_ in one.named_parameters():
            grads[f"grad.{name.replace('_l0', f'_l{l}')}"] = p_.grad
    tensors = recurrent_tensors(m, grads, lens, x, h0, c0, y, h_n, c_n, dy, dh_n, dc_n)
    meta = recurrent_meta(op, i, h, layers, bi)
    meta.update(dropout=str(p), dropout_seed=str(drop_seed), train="1" if train else "0")
    return tensors, meta


# (op, input, hidden, layers, bidirectional, lengths, T, p_h, p_c, zoneout_seed, train)
ZONEOUT = [
    ("lstm", 4, 6, 2, True, [4, 1, 3], 4, 0.3, 0.2, 11, True),
    ("gru", 3, 8, 2, False, [3, 2], 3, 0.25, 0.0, 5, True),
    ("lstm", 4, 8, 2, True, [4, 2, 3], 4, 0.3, 0.2, 0, False),
]

# Recurrent dropout with zoneout: ZONEOUT's fields, then p_r, recurrent_dropout_seed
RECURRENT_DROPOUT = [
    ("lstm", 4, 8, 2, True, [4, 1, 3], 4, 0.2, 0.1, 7, True, 0.3, 21),
]


def threshold(p):
    return min(int(p * 2**32 + 0.5), M32)


def step_by_step(x, h0, c0, lengths, layers, d, h, step):
    """A stack run a step at a time, each sequence over its real steps (direction
    1 from its last): step(l, dr, bb, tt, x_t, h, c) gives the new (h, c).
    Returns y (zero past each length) and h_n, c_n in (layer, direction,
    sequence) order."""
    b, t = len(lengths), x.shape[1]
    inp, h_n, c_n = x, [], []
    for l in range(layers):
        # rows[b][t]: the layer's output at (b, t), its directions in order.
        rows = [[[] for _ in range(t)] for _ in range(b)]
        for dr in range(d):
            for bb in range(b):
                hc, cc = h0[l * d + dr, bb], c0[l * d + dr, bb]
                steps = range(lengths[bb]) if dr == 0 else reversed(range(lengths[bb]))
                for tt in steps:
                    hc, cc = step(l, dr, bb, tt, inp[bb, tt], hc, cc)
                    rows[bb][tt].append(hc)
                h_n.append(hc)
                c_n.append(cc)
        zero = torch.zeros(d * h, dtype=torch.float64)
        inp = torch.stack(
            [torch.stack([torch.cat(r) if r else zero for r in seq]) for seq in rows]
        )
    return inp, torch.stack(h_n).reshape(layers * d, b, h), torch.stack(c_n).reshape(layers * d, b, h)


def layer_seed(s, l):
    return ((s * 0x9E3779B9) & M32) ^ ((l * 0x85EBCA6B) & M32)


def zone_masks(p_h, p_c, zone_seed, train, l, dr, bb, tt, b, t, h):
    """Zoneout's z for h and c of layer l, direction dr, sequence bb, step tt:
    in training drawn from the layer's seed as shaders/zoneout.wgsl draws them,
    else the probabilities (the expectation)."""
    seed = layer_seed(zone_seed, l)
    base = ((dr * t + tt) * b + bb) * h

    def z(p, s, index):
        if not train:
            return p
        return 1.0 if pcg(pcg(index) ^ s) < threshold(p) else 0.0

    return (
        torch.tensor([z(p_h, seed, base + j) for j in range(h)], dtype=torch.float64),
        torch.tensor([z(p_c, seed ^ 0x9E3779B9, base + j) for j in range(h)], dtype=torch.float64),
    )


def zoneout_case(
    seed, op, i, h, layers, bi, lengths, t, p_h, p_c, zone_seed, train, p_r=0.0, r_seed=0
):
    torch.manual_seed(seed)
    m = module(op, i, h, layers, bi).double()
    b, d = len(lengths), 2 if bi else 1
    x, h0, c0, dy, dh_n, dc_n = random_inputs(b, t, i, h, h, layers, bi)
    lstm = op == "lstm"
    assert p_r == 0 or (lstm and train)
    keep = [dropout_mask((d, b, h), p_r, layer_seed(r_seed, l)) for l in range(layers)]

    def step(l, dr, bb, tt, x_t, hc, cc):
        sfx = f"_l{l}" + ("_reverse" if dr else "")
        w = [getattr(m, f"{n}{sfx}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        zh, zc = zone_masks(p_h, p_c, zone_seed, train, l, dr, bb, tt, b, t, h)
        if not lstm:
            hn = torch.gru_cell(x_t.unsqueeze(0), hc.unsqueeze(0), *w)[0]
            return zh * hc + (1 - zh) * hn, cc
        h_read = hc * keep[l][dr, bb]
        hn, cn = torch.lstm_cell(x_t.unsqueeze(0), (h_read.unsqueeze(0), cc.unsqueeze(0)), *w)
        return zh * hc + (1 - zh) * hn[0], zc * cc + (1 - zc) * cn[0]

    y, h_n, c_n = step_by_step(x, h0, c0, lengths, layers, d, h, step)
    c_n = c_n if lstm else None
    loss = (y * dy).sum() + (h_n * dh_n).sum()
    if lstm:
        loss = loss + (c_n * dc_n).sum()
    loss.backward()

    grads = {f"grad.{name}": p_.grad for name, p_ in m.named_parameters()}
    lens = torch.tensor(lengths)
    tensors = recurrent_tensors(m, grads, lens, x, h0, c0, y, h_n, c_n, dy, dh_n, dc_n)
    meta = recurrent_meta(op, i, h, layers, bi)
    meta.update(
        zoneout_h=str(p_h),
        zoneout_c=str(p_c),
        zoneout_seed=str(zone_seed),
        train="1" if train else "0",
    )
    if p_r:
        meta.update(recurrent_dropout=str(p_r), recurrent_dropout_seed=str(r_seed))
    return tensors, meta


# LayerNorm-LSTMs: (input, hidden, layers, bidirectional, lengths, T)
LAYER_NORM = [
    (4, 6, 2, True, [4, 1, 3], 4),
    (3, 70, 1, False, [3, 2], 3),
]

# LayerNorm-LSTMs with zoneout: (input, hidden, layers, bidirectional, lengths,
# T, p_h, p_c, seed, train)
LAYER_NORM_ZONEOUT = [
    (4, 6, 2, True, [4, 1, 3], 4, 0.3, 0.2, 19, True),
    (3, 8, 2, False, [3, 2], 3, 0.25, 0.5, 0, False),
]


def layer_norm_case(seed, i, h, layers, bi, lengths, t, p_h=0.0, p_c=0.0, zone_seed=0, train=False):
    torch.manual_seed(seed)
    m = module("lstm", i, h, layers, bi).double()
    b, d = len(lengths), 2 if bi else 1
    ln = {}
    for l in range(layers):
        for dr in range(d):
            sfx = f"_l{l}" + ("_reverse" if dr else "")
            for name, n, mean in (("ih_weight", 4 * h, 1), ("hh_weight", 4 * h, 1),
                                  ("c_weight", h, 1), ("c_bias", h, 0)):
                v = mean + 0.5 * torch.randn(n, dtype=torch.float64)
                ln[f"layer_norm_{name}{sfx}"] = v.requires_grad_()
    x, h0, c0, dy, dh_n, dc_n = random_inputs(b, t, i, h, h, layers, bi)

    def norm(v):
        return torch.nn.functional.layer_norm(v, v.shape[-1:], eps=1e-5)

    def step(l, dr, bb, tt, x_t, hc, cc):
        sfx = f"_l{l}" + ("_reverse" if dr else "")
        w_ih, w_hh, b_ih, b_hh = (
            getattr(m, f"{n}{sfx}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        p = {n: ln[f"layer_norm_{n}{sfx}"] for n in ("ih_weight", "hh_weight", "c_weight", "c_bias")}
        a = norm(w_ih @ x_t) * p["ih_weight"] + norm(w_hh @ hc) * p["hh_weight"] + b_ih + b_hh
        ig, fg, gg, og = a.chunk(4)
        cn = torch.sigmoid(fg) * cc + torch.sigmoid(ig) * torch.tanh(gg)
        hn = torch.sigmoid(og) * torch.tanh(norm(cn) * p["c_weight"] + p["c_bias"])
        if not (p_h or p_c):
            return hn, cn
        zh, zc = zone_masks(p_h, p_c, zone_seed, train, l, dr, bb, tt, b, t, h)
        return zh * hc + (1 - zh) * hn, zc * cc + (1 - zc) * cn

    y, h_n, c_n = step_by_step(x, h0, c0, lengths, layers, d, h, step)
    loss = (y * dy).sum() + (h_n * dh_n).sum() + (c_n * dc_n).sum()
    loss.backward()

    grads = {f"grad.{name}": p_.grad for name, p_ in m.named_parameters()}
    grads.update({f"grad.{name}": v.grad for name, v in ln.items()})
    lens = torch.tensor(lengths)
    tensors = recurrent_tensors(m, grads, lens, x, h0, c0, y, h_n, c_n, dy, dh_n, dc_n)
    tensors.update({name: v.detach().float().contiguous() for name, v in ln.items()})
    meta = recurrent_meta("lstm", i, h, layers, bi)
    meta["layer_norm"] = "1"
    if p_h or p_c:
        meta.update(
            zoneout_h=str(p_h),
            zoneout_c=str(p_c),
            zoneout_seed=str(zone_seed),
            train="1" if train else "0",
        )
    return tensors, meta


ATTENTION = [
    # (score, B, Tq, S, Dq, Dk, src_lengths)
    ("dot", 3, 1, 7, 6, 6, [7, 1, 4]),
    ("dot", 2, 5, 9, 8, 8, [3, 9]),
    ("general", 3, 1, 6, 5, 7, [1, 6, 2]),
    ("general", 2, 4, 70, 9, 5, [70, 33]),
    ("additive", 3, 1, 6, 5, 7, [6, 1, 3]),
    ("additive", 2, 4, 9, 6, 4, [9, 2]),
]
ADDITIVE_SIZE = 10


def attention_case(seed, score, b, tq, s, dq, dk, lengths):
    torch.manual_seed(seed)
    f64 = dict(dtype=torch.float64)
    q = torch.randn(b, tq, dq, **f64, requires_grad=True)
    k = torch.randn(b, s, dk, **f64, requires_grad=True)
    w = torch.randn(dq, dk, **f64, requires_grad=True) if score == "general" else None
    additive = score == "additive"
    if additive:
        w_q = torch.randn(ADDITIVE_SIZE, dq, **f64, requires_grad=True)
        w_k = torch.randn(ADDITIVE_SIZE, dk, **f64, requires_grad=True)
        v = torch.randn(ADDITIVE_SIZE, **f64, requires_grad=True)
    dcontext = torch.randn(b, tq, dk, **f64)
    dweights = torch.randn(b, tq, s, **f64)
    lens = torch.tensor(lengths)
    if additive:
        e = torch.tanh((q @ w_q.T)[:, :, None, :] + (k @ w_k.T)[:, None, :, :]) @ v
    else:
        qp = q @ w if w is not None else q
        e = qp @ k.transpose(1, 2)
    pad = torch.arange(s)[None, None, :] >= lens[:, None, None]
    weights = torch.softmax(e.masked_fill(pad, float("-inf")), dim=-1)
    context = weights @ k
    ((context * dcontext).sum() + (weights * dweights).sum()).backward()
    tensors = dict(q=q, k=k, weights=weights, context=context, dcontext=dcontext, dweights=dweights)
    tensors.update({"grad.q": q.grad, "grad.k": k.grad})
    if w is not None:
        tensors.update({"W": w, "grad.W": w.grad})
    if additive:
        for name, p in [("W_q", w_q), ("W_k", w_k), ("v", v)]:
            tensors.update({name: p, f"grad.{name}": p.grad})
    tensors = {n: v.detach().float().contiguous() for n, v in tensors.items()}
    tensors["src_lengths"] = lens.to(torch.int32)
    return tensors, dict(op="attention", score=score)


# (B, T, d_model, heads, dim_feedforward, lengths)
TRANSFORMER = [
    (3, 5, 8, 2, 16, [5, 1, 3]),
    (2, 7, 12, 3, 10, [4, 7]),
]


def transformer_case(seed, b, t, d, heads, ff, lengths):
    torch.manual_seed(seed)
    layer = torch.nn.TransformerEncoderLayer(
        d, heads, dim_feedforward=ff, dropout=0.0, batch_first=True
    ).double()
    # Non-trivial norms and biases, so that every gradient path carries weight.
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if "norm" in name or "bias" in name:
                p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(b, t, d, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(b, t, d, dtype=torch.float64)
    lens = torch.tensor(lengths)
    pad = torch.arange(t)[None, :] >= lens[:, None]
    y = layer(x, src_key_padding_mask=pad)
    (y * dy).sum().backward()
    tensors = dict(x=x, dy=dy, y=y)
    tensors["grad.x"] = x.grad
    for name, p in layer.named_parameters():
        tensors[name] = p
        tensors[f"grad.{name}"] = p.grad
    tensors = {n: v.detach().float().contiguous() for n, v in tensors.items()}
    tensors["src_lengths"] = lens.to(torch.int32)
    return tensors, dict(op="transformer_encoder_layer", heads=str(heads))


def masked(x, lengths):
    """[B, ..., S] positions s < lengths[b] of each row under index b."""
    s = x.shape[-1]
    keep = torch.arange(s)[None, :] < torch.tensor(lengths)[:, None]
    return keep.reshape(len(lengths), *([1] * (x.dim() - 2)), s)


def masked_mean(x, lengths):
    keep = (torch.arange(x.shape[1])[None, :] < torch.tensor(lengths)[:, None]).double()
    return (x * keep[:, :, None]).sum(1) / torch.tensor(lengths).double()[:, None]


def masked_softmax(x, lengths, log):
    keep = masked(x, lengths)
    z = x.masked_fill(~keep, float("-inf"))
    y = torch.log_softmax(z, -1) if log else torch.softmax(z, -1)
    return torch.where(keep, y, torch.zeros_like(y))


# (fn, input shapes, metadata, the op on the inputs, i32 tensors)
TAPE = [
    ("mean", [(3, 5, 4)], dict(dim="1"), lambda x: masked_mean(x, [5, 2, 3]),
     dict(lengths=[5, 2, 3])),
    ("sum", [(3, 4)], dict(dim="0"), lambda x: x.sum(0), {}),
    ("softmax", [(3, 2, 6)], {}, lambda x: masked_softmax(x, [6, 3, 1], False),
     dict(lengths=[6, 3, 1])),
    ("log_softmax", [(3, 2, 6)], {}, lambda x: masked_softmax(x, [6, 3, 1], True),
     dict(lengths=[6, 3, 1])),
    ("matmul", [(2, 3, 5), (2, 5, 4)], {}, lambda a, b: a @ b, {}),
    ("matmul_t", [(2, 3, 5), (4, 5)], {}, lambda a, b: a @ b.T, {}),
    ("gather", [(6, 4)], {}, lambda x: x[[5, 0, 5, 2]], dict(ids=[5, 0, 5, 2])),
    ("slice", [(2, 5, 3)], dict(dim="1", start="1", len="3"), lambda x: x[:, 1:4], {}),
    ("concat", [(2, 2, 3), (2, 4, 3)], dict(dim="1"), lambda a, b: torch.cat([a, b], 1), {}),
    ("transpose", [(2, 3, 4, 2)], dict(dim="1"), lambda x: x.transpose(1, 2), {}),
    ("mul", [(3, 7), (3, 7)], {}, lambda a, b: a * b, {}),
    ("add", [(3, 7), (3, 7)], {}, lambda a, b: a + b, {}),
    ("scale", [(3, 7)], dict(alpha="-1.7"), lambda x: -1.7 * x, {}),
    ("tanh", [(3, 7)], {}, torch.tanh, {}),
    ("relu", [(3, 7)], {}, torch.relu, {}),
    ("cross_entropy", [(5, 7)], {},
     lambda x: torch.nn.functional.cross_entropy(x, torch.tensor([1, 6, -100, 0, 3])).reshape(1),
     dict(targets=[1, 6, -1, 0, 3])),
]


# Label-smoothed cross-entropy, few classes (a row per invocation) and more than
# a workgroup's lanes (a workgroup per row); seeds after every other case's.
SMOOTHED = [
    ("cross_entropy_smoothed", [(5, 7)], dict(smoothing="0.1"),
     lambda x: torch.nn.functional.cross_entropy(
         x, torch.tensor([1, 6, -100, 0, 3]), label_smoothing=0.1).reshape(1),
     dict(targets=[1, 6, -1, 0, 3])),
    ("cross_entropy_smoothed_c70", [(4, 70)], dict(smoothing="0.2"),
     lambda x: torch.nn.functional.cross_entropy(
         x, torch.tensor([69, -100, 0, 33]), label_smoothing=0.2).reshape(1),
     dict(targets=[69, -1, 0, 33])),
]


def tape_case(seed, fn, shapes, meta, op, ints):
    return tensor_op_case(seed, fn, shapes, None, meta, op, ints)


def away_from_zero(x):
    return x.sign() * (0.5 + x.abs())


def keep_softmax(x, keep, log):
    z = x.masked_fill(~keep, float("-inf"))
    y = torch.log_softmax(z, -1) if log else torch.softmax(z, -1)
    return torch.where(keep, y, torch.zeros_like(y))


def dims(values):
    return ",".join(str(v) for v in values)


# Tensor ops: (fn, input shapes, how each input is drawn from randn (or None),
# metadata, the op on the inputs, i32 tensors); seeds after every other case's.
SOFTMAX_MASK = [[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]]  # [2, 1, 5]
CE_MASK = [[1, 0, 1, 1, 0, 1, 1], [0, 1, 1, 0, 1, 1, 0], [1, 1, 0, 0, 1, 0, 1],
           [1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 0, 1]]  # [5, 7], targets kept
CE_TARGETS = [0, 5, -100, 2, 6]
C70_MASK = [[int((r * 70 + k) % 3 != 1 or k == t) for k in range(70)]
            for r, t in enumerate([69, 0, 33, 4])]
TENSOR_OPS = [
    ("add_broadcast", [(3, 1, 5), (4, 1)], None, {}, lambda a, b: a + b, {}),
    ("sub_broadcast", [(2, 3), (3,)], None, {}, lambda a, b: a - b, {}),
    ("mul_broadcast", [(2, 1, 4), (2, 3, 1)], None, {}, lambda a, b: a * b, {}),
    ("div_broadcast", [(3, 4), (1, 4)], [None, away_from_zero], {}, lambda a, b: a / b, {}),
    ("sigmoid", [(3, 7)], None, {}, torch.sigmoid, {}),
    ("exp", [(3, 7)], None, {}, torch.exp, {}),
    ("log", [(3, 7)], [lambda x: 0.2 + x.abs()], {}, torch.log, {}),
    ("permute", [(2, 3, 4, 5)], None, dict(dims="2,0,3,1"), lambda x: x.permute(2, 0, 3, 1), {}),
    ("swap_dims", [(2, 3, 4)], None, dict(a="0", b="2"), lambda x: x.transpose(0, 2), {}),
    ("expand", [(3, 1)], None, dict(shape="2,3,4"), lambda x: x.expand(2, 3, 4), {}),
    ("masked_fill", [(2, 3, 5)], None, dict(value="-7.5", mask_shape="2,1,5"),
     lambda x: x.masked_fill(torch.tensor(SOFTMAX_MASK).bool()[:, None, :], -7.5),
     dict(mask=SOFTMAX_MASK)),
    ("softmax_masked", [(2, 3, 5)], None, dict(mask_shape="2,1,5"),
     lambda x: keep_softmax(x, torch.tensor(SOFTMAX_MASK).bool()[:, None, :], False),
     dict(mask=SOFTMAX_MASK)),
    ("log_softmax_masked", [(2, 3, 5)], None, dict(mask_shape="2,1,5"),
     lambda x: keep_softmax(x, torch.tensor(SOFTMAX_MASK).bool()[:, None, :], True),
     dict(mask=SOFTMAX_MASK)),
    ("cross_entropy_masked", [(5, 7)], None, dict(mask_shape="5,7"),
     lambda x: torch.nn.functional.cross_entropy(
         x.masked_fill(~torch.tensor(CE_MASK).bool(), float("-inf")),
         torch.tensor(CE_TARGETS)).reshape(1),
     dict(mask=CE_MASK, targets=[t if t >= 0 else -1 for t in CE_TARGETS])),
    ("cross_entropy_masked_c70", [(4, 70)], None, dict(mask_shape="4,70"),
     lambda x: torch.nn.functional.cross_entropy(
         x.masked_fill(~torch.tensor(C70_MASK).bool(), float("-inf")),
         torch.tensor([69, 0, 33, 4])).reshape(1),
     dict(mask=C70_MASK, targets=[69, 0, 33, 4])),
]


def tensor_op_case(seed, fn, shapes, draws, meta, op, ints):
    torch.manual_seed(seed)
    draws = draws or [None] * len(shapes)
    xs = []
    for s, draw in zip(shapes, draws):
        x = torch.randn(*s, dtype=torch.float64)
        xs.append((draw(x) if draw else x).detach().requires_grad_(True))
    y = op(*xs)
    d = torch.randn_like(y)
    (y * d).sum().backward()
    tensors = dict(y=y, d=d)
    for i, x in enumerate(xs):
        tensors[f"x{i}"] = x
        tensors[f"grad.x{i}"] = x.grad
    tensors = {n: v.detach().float().contiguous() for n, v in tensors.items()}
    for name, values in ints.items():
        tensors[name] = torch.tensor(values, dtype=torch.int32).flatten()
    return tensors, dict(op="tape", fn=fn, **meta)


# (op, input, hidden, layers, bidirectional, lengths, T)
MIN_RNN = [
    ("min_gru", 5, 7, 1, False, [6, 1, 4], 6),
    ("min_gru", 4, 6, 2, True, [2, 7, 5], 7),
    ("min_lstm", 5, 7, 1, False, [6, 1, 4], 6),
    ("min_lstm", 4, 6, 2, True, [2, 7, 5], 7),
]


def min_rnn_case(seed, op, i, h, layers, bi, lengths, t):
    torch.manual_seed(seed)
    d = 2 if bi else 1
    g = 3 if op == "min_lstm" else 2
    params = {}
    for layer in range(layers):
        width = i if layer == 0 else d * h
        for suffix in ["", "_reverse"][:d]:
            lin = torch.nn.Linear(width, g * h).double()
            params[f"weight_ih_l{layer}{suffix}"] = lin.weight.detach().requires_grad_()
            params[f"bias_ih_l{layer}{suffix}"] = lin.bias.detach().requires_grad_()
    b = len(lengths)
    x, h0, _, dy, dh_n, _ = random_inputs(b, t, i, h, h, layers, bi)
    inp = x
    finals = []
    for layer in range(layers):
        outs = []
        for dr, suffix in enumerate(["", "_reverse"][:d]):
            w, bias = params[f"weight_ih_l{layer}{suffix}"], params[f"bias_ih_l{layer}{suffix}"]
            rows = []
            last = []
            for s in range(b):
                n = lengths[s]
                state = h0[layer * d + dr, s]
                ys = [None] * t
                order = range(n) if dr == 0 else range(n - 1, -1, -1)
                for tt in order:
                    p = inp[s, tt] @ w.T + bias
                    if op == "min_gru":
                        z = torch.sigmoid(p[:h])
                        state = (1 - z) * state + z * p[h:]
                    else:
                        f, ig = torch.sigmoid(p[:h]), torch.sigmoid(p[h : 2 * h])
                        state = f / (f + ig) * state + ig / (f + ig) * p[2 * h :]
                    ys[tt] = state
                zero = torch.zeros(h, dtype=torch.float64)
                rows.append(torch.stack([v if v is not None else zero for v in ys]))
                last.append(state)
            outs.append(torch.stack(rows))
            finals.append(torch.stack(last))
        inp = torch.cat(outs, dim=2)
    y, h_n = inp, torch.stack(finals)
    loss = (y * dy).sum() + (h_n * dh_n).sum()
    loss.backward()
    tensors = dict(params)
    tensors.update({f"grad.{n}": p.grad for n, p in params.items()})
    tensors.update(x=x, h0=h0, y=y, h_n=h_n, dy=dy, dh_n=dh_n)
    tensors.update({"grad.x": x.grad, "grad.h0": h0.grad})
    tensors = {k: v.detach().float().contiguous() for k, v in tensors.items()}
    tensors["lengths"] = torch.tensor(lengths, dtype=torch.int32)
    return tensors, recurrent_meta(op, i, h, layers, bi)


# (K tags, T steps, lengths (B = len), forbidden transitions)
CRF = [
    (5, 6, [6, 1, 4], []),
    (4, 5, [5, 3, 2], [(0, 1), (3, 3), (2, 0)]),
    (70, 4, [4, 2], []),
]


def crf_log_z(em, start, end, trans, lengths):
    out = []
    for b, n in enumerate(lengths):
        alpha = start + em[b, 0]
        for t in range(1, n):
            alpha = em[b, t] + torch.logsumexp(alpha[:, None] + trans, dim=0)
        out.append(torch.logsumexp(alpha + end, dim=0))
    return torch.stack(out)


def crf_score(em, start, end, trans, b, path):
    score = start[path[0]] + em[b, 0, path[0]]
    for t in range(1, len(path)):
        score = score + trans[path[t - 1], path[t]] + em[b, t, path[t]]
    return score + end[path[-1]]


def crf_viterbi(em, start, end, trans, b, n):
    delta, back = start + em[b, 0], []
    for t in range(1, n):
        best, arg = (delta[:, None] + trans).max(dim=0)
        delta = em[b, t] + best
        back.append(arg)
    y = int((delta + end).argmax())
    path = [y]
    for arg in reversed(back):
        y = int(arg[y])
        path.append(y)
    return path[::-1]


def crf_case(seed, k, t, lengths, forbidden):
    torch.manual_seed(seed)
    b = len(lengths)
    em = (2 * torch.randn(b, t, k, dtype=torch.float64)).requires_grad_()
    params = {
        "start_transitions": torch.randn(k, dtype=torch.float64).requires_grad_(),
        "end_transitions": torch.randn(k, dtype=torch.float64).requires_grad_(),
        "transitions": torch.randn(k, k, dtype=torch.float64).requires_grad_(),
    }
    allowed = torch.ones(k, k, dtype=torch.bool)
    for i, j in forbidden:
        allowed[i, j] = False
    start, end = params["start_transitions"], params["end_transitions"]
    trans = params["transitions"].masked_fill(~allowed, float("-inf"))
    tags = torch.full((b, t), -1, dtype=torch.int32)
    for s, n in enumerate(lengths):
        y = int(torch.randint(k, ()))
        for step in range(n):
            if step > 0:
                nxt = allowed[y].nonzero().flatten()
                y = int(nxt[torch.randint(len(nxt), ())])
            tags[s, step] = y
    log_z = crf_log_z(em, start, end, trans, lengths)
    gold = torch.stack(
        [crf_score(em, start, end, trans, s, tags[s, :n].tolist()) for s, n in enumerate(lengths)]
    )
    loss = (log_z - gold).sum() / sum(lengths)
    loss.backward()
    path = torch.full((b, t), -1, dtype=torch.int32)
    with torch.no_grad():
        for s, n in enumerate(lengths):
            best = crf_viterbi(em, start, end, trans, s, n)
            path[s, :n] = torch.tensor(best, dtype=torch.int32)
            if k**n <= 20000:
                paths = list(itertools.product(range(k), repeat=n))
                scores = torch.stack([crf_score(em, start, end, trans, s, p) for p in paths])
                assert abs(float(torch.logsumexp(scores, 0) - log_z[s])) < 1e-9, "log Z"
                assert list(paths[int(scores.argmax())]) == best, "Viterbi"
    tensors = dict(params)
    tensors.update({f"grad.{n}": p.grad for n, p in params.items()})
    tensors.update({"emissions": em, "grad.emissions": em.grad, "loss": loss.reshape(1)})
    tensors = {n: v.detach().float().contiguous() for n, v in tensors.items()}
    tensors.update(tags=tags, path=path, lengths=torch.tensor(lengths, dtype=torch.int32))
    meta = {"op": "crf", "tags": str(k), "forbidden": ",".join(f"{i}>{j}" for i, j in forbidden)}
    return tensors, meta


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "golden"
    )
    os.makedirs(out, exist_ok=True)
    for seed, c in enumerate(CASES):
        op, i, h, layers, bi, lengths, t = c
        name = f"{op}_l{layers}_{'bi' if bi else 'uni'}_h{h}.safetensors"
        tensors, meta = case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)
    for seed, c in enumerate(ATTENTION, start=len(CASES)):
        score, b, tq, s = c[:4]
        name = f"attention_{score}_tq{tq}_s{s}.safetensors"
        tensors, meta = attention_case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)
    for seed, c in enumerate(TRANSFORMER, start=len(CASES) + len(ATTENTION)):
        b, t, d, heads = c[:4]
        name = f"transformer_encoder_layer_d{d}_h{heads}.safetensors"
        tensors, meta = transformer_case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)
    first = len(CASES) + len(ATTENTION) + len(TRANSFORMER)
    for seed, c in enumerate(TAPE, start=first):
        name = f"tape_{c[0]}.safetensors"
        tensors, meta = tape_case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)
    for seed, c in enumerate(PROJ, start=first + len(TAPE) + len(DROPOUT)):
        op, i, h, layers, bi = c[:5]
        name = f"{op}_l{layers}_{'bi' if bi else 'uni'}_h{h}_proj{c[7]}.safetensors"
        tensors, meta = case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)
    for seed, c in enumerate(DROPOUT, start=first + len(TAPE)):
        op, layers, p, train = c[0], c[3], c[7], c[9]
        mode = "train" if train else "eval"
        name = f"{op}_l{layers}_dropout{int(p * 100)}_{mode}.safetensors"
        tensors, meta = dropout_case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)
    for seed, c in enumerate(ZONEOUT, start=first + len(TAPE) + len(DROPOUT) + len(PROJ)):
        op, layers, h, train = c[0], c[3], c[2], c[10]
        mode = "train" if train else "eval"
        name = f"{op}_l{layers}_h{h}_zoneout_{mode}.safetensors"
        tensors, meta = zoneout_case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)
    first_rd = first + len(TAPE) + len(DROPOUT) + len(PROJ) + len(ZONEOUT)
    for seed, c in enumerate(LAYER_NORM, start=first_rd + len(RECURRENT_DROPOUT)):
        i, h, layers, bi = c[:4]
        name = f"layer_norm_lstm_l{layers}_{'bi' if bi else 'uni'}_h{h}.safetensors"
        tensors, meta = layer_norm_case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)
    for seed, c in enumerate(RECURRENT_DROPOUT, start=first_rd):
        op, layers, h = c[0], c[3], c[2]
        name = f"{op}_l{layers}_h{h}_recurrent_dropout{int(c[11] * 100)}_train.safetensors"
        tensors, meta = zoneout_case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)
    first_ls = first_rd + len(RECURRENT_DROPOUT) + len(LAYER_NORM)
    for seed, c in enumerate(SMOOTHED, start=first_ls):
        name = f"tape_{c[0]}.safetensors"
        tensors, meta = tape_case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)
    for seed, c in enumerate(LAYER_NORM_ZONEOUT, start=first_ls + len(SMOOTHED)):
        i, h, layers, bi = c[:4]
        mode = "train" if c[9] else "eval"
        name = f"layer_norm_lstm_l{layers}_{'bi' if bi else 'uni'}_h{h}_zoneout_{mode}.safetensors"
        tensors, meta = layer_norm_case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)
    first_ops = first_ls + len(SMOOTHED) + len(LAYER_NORM_ZONEOUT)
    for seed, c in enumerate(TENSOR_OPS, start=first_ops):
        name = f"tape_{c[0]}.safetensors"
        tensors, meta = tensor_op_case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)
    for seed, c in enumerate(MIN_RNN, start=first_ops + len(TENSOR_OPS)):
        op, i, h, layers, bi = c[:5]
        name = f"{op}_l{layers}_{'bi' if bi else 'uni'}_h{h}.safetensors"
        tensors, meta = min_rnn_case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)
    for seed, c in enumerate(CRF, start=first_ops + len(TENSOR_OPS) + len(MIN_RNN)):
        k, t = c[:2]
        name = f"crf_k{k}_t{t}.safetensors"
        tensors, meta = crf_case(seed, *c)
        save_file(tensors, os.path.join(out, name), metadata=meta)
        print(name)


if __name__ == "__main__":
    main()
