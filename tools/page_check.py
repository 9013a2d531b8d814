#!/usr/bin/env python3
"""Loads a model the web page saved into the equal torch.nn model and compares
its logits for a prompt with the page's:

  DIR/page.safetensors     the page's Save (PyTorch's names; `optim.` tensors
                           are the optimizer's; the metadata holds the
                           characters in id order, the cell and the sizes)
  DIR/page_logits.json     {"prompt": ..., "logits": [T * vocab floats]}

The model: nn.Embedding -> nn.LSTM / nn.GRU / nn.RNN (batch_first), or minGRU /
minLSTM (Feng et al. 2024, run step by step here: the sequential form) ->
nn.Linear, the library's LanguageModel. Exits 1 when the largest difference passes 1e-4
(relative above 1). The page writes both files in its ?check mode when the
browser driver serves it with --save DIR.

    pip install torch safetensors numpy
    python3 tools/page_check.py DIR
"""

import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

class MinRnn(nn.Module):
    """A unidirectional minGRU (gates z, h~) or minLSTM (f, i, h~) stack with
    torch.nn.GRU's names: weight_ih_l{k} [G*H, I], bias_ih_l{k} [G*H]."""

    def __init__(self, gates, input_size, hidden, num_layers, batch_first):
        super().__init__()
        assert batch_first
        self.gates, self.hidden, self.layers = gates, hidden, num_layers
        for k in range(num_layers):
            inp = input_size if k == 0 else hidden
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(gates * hidden, inp)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(gates * hidden)))

    def forward(self, x):
        for k in range(self.layers):
            pre = x @ getattr(self, f"weight_ih_l{k}").T + getattr(self, f"bias_ih_l{k}")
            gates = pre.split(self.hidden, dim=-1)
            if self.gates == 2:
                z = torch.sigmoid(gates[0])
                a, b = 1 - z, z * gates[1]
            else:
                f, i = torch.sigmoid(gates[0]), torch.sigmoid(gates[1])
                a, b = f / (f + i), i / (f + i) * gates[2]
            h = torch.zeros(x.shape[0], self.hidden)
            out = []
            for t in range(x.shape[1]):
                h = a[:, t] * h + b[:, t]
                out.append(h)
            x = torch.stack(out, dim=1)
        return x, None


CELLS = {
    "lstm": nn.LSTM,
    "gru": nn.GRU,
    "rnn": nn.RNN,
    "mingru": lambda *a, **k: MinRnn(2, *a, **k),
    "minlstm": lambda *a, **k: MinRnn(3, *a, **k),
}


class CharLM(nn.Module):
    def __init__(self, cell, vocab, emb, hidden, layers):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.rnn = CELLS[cell](emb, hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, vocab)

    def forward(self, ids):
        out, _ = self.rnn(self.embedding(ids))
        return self.fc(out)


def main():
    out = sys.argv[1]
    path = os.path.join(out, "page.safetensors")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    if meta["cell"] not in CELLS:
        sys.exit(f"a {meta['cell']} model has no torch.nn counterpart to compare with")
    chars = meta["chars"]
    model = CharLM(meta["cell"], len(chars), int(meta["emb"]), int(meta["hidden"]), int(meta["layers"]))
    state = {k: v for k, v in load_file(path).items() if not k.startswith("optim.")}
    model.load_state_dict(state)  # strict: every name and shape
    page = json.load(open(os.path.join(out, "page_logits.json")))
    ids = torch.tensor([[chars.index(c) for c in page["prompt"] if c in chars]])
    with torch.no_grad():
        want = model(ids).flatten()
    got = torch.tensor(page["logits"])
    if got.shape != want.shape:
        sys.exit(f"the page gave {got.numel()} logits, PyTorch {want.numel()}")
    worst = ((got - want).abs() / want.abs().clamp(min=1.0)).max().item()
    print(f"page vs PyTorch: {len(state)} tensors loaded by their names; logits of "
          f"{page['prompt']!r} ({ids.shape[1]} steps x {len(chars)}) within {worst:.2e}")
    if worst > 1e-4:
        sys.exit("the page's model does not give PyTorch's logits")


if __name__ == "__main__":
    main()
