#!/usr/bin/env python3
"""Writes the PyTorch BiLSTM tagger fixtures to tests/fixtures/:

  bilstm_tagger.safetensors     the model's state_dict, exactly as a user saves it
                                (safetensors.torch.save_file(model.state_dict(), ...))
  bilstm_tagger_io.safetensors  a padded batch (i32 `ids` [B, T], `lengths` [B]) and
                                the model's f32 `logits` [B, T, tags] for it

The model is embedding (padding_idx 0) -> bidirectional LSTM (batch_first,
packed sequences) -> linear, the tagger of the library's nn::tagger.

    pip install torch safetensors numpy
    python3 tools/tagger.py [OUT_DIR]      # default: tests/fixtures
"""

import os
import sys

import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

VOCAB, EMB, HIDDEN, TAGS, PAD = 50, 12, 8, 9, 0


class BiLSTMTagger(nn.Module):
    def __init__(self, vocab, emb, hidden, tags, pad):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb, padding_idx=pad)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, tags)

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(
            self.embedding(ids), lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        return self.fc(out)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "fixtures"
    )
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = BiLSTMTagger(VOCAB, EMB, HIDDEN, TAGS, PAD)
    lengths = torch.tensor([7, 3, 1, 5])
    ids = torch.randint(1, VOCAB, (len(lengths), int(lengths.max())))
    for b, n in enumerate(lengths):
        ids[b, n:] = PAD
    with torch.no_grad():
        logits = model(ids, lengths)
    save_file(model.state_dict(), os.path.join(out, "bilstm_tagger.safetensors"))
    save_file(
        {"ids": ids.to(torch.int32), "lengths": lengths.to(torch.int32), "logits": logits},
        os.path.join(out, "bilstm_tagger_io.safetensors"),
        metadata={"vocab": str(VOCAB), "emb": str(EMB), "hidden": str(HIDDEN), "tags": str(TAGS)},
    )


if __name__ == "__main__":
    main()
