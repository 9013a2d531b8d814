#!/usr/bin/env python3
"""Writes the PyTorch BiLSTM tagger fixtures to tests/fixtures/:

  bilstm_tagger.safetensors     the model's state_dict, exactly as a user saves it
                                (safetensors.torch.save_file(model.state_dict(), ...))
  bilstm_tagger_io.safetensors  a padded batch (i32 `ids` [B, T], `lengths` [B]) and
                                the model's f32 `logits` [B, T, tags] for it

  char_tagger.safetensors       the character-aware, two-layer tagger's state_dict
  char_tagger_io.safetensors    its batch: word `ids` [B, T], `lengths` [B], `targets`
                                [B, T] (-1 past each length), the batch's distinct
                                words as characters `char_ids` [W, L], `char_lengths`
                                [W], `index` [B, T] (each position's word); the
                                `logits`, the mean cross-entropy `loss` over real
                                tokens, and `grad.NAME` for every parameter

The model is embedding (padding_idx 0) -> bidirectional LSTM (batch_first,
packed sequences) -> linear, the tagger of the library's models::tagger; the
character-aware one puts beside each word's embedding its characters' BiLSTM
states (the forward direction's after the last character, the backward's after
the first) and stacks two BiLSTM layers.

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
    def __init__(self, vocab, emb, hidden, tags, pad, layers=1):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb, padding_idx=pad)
        self.lstm = nn.LSTM(
            emb, hidden, num_layers=layers, batch_first=True, bidirectional=True
        )
        self.fc = nn.Linear(2 * hidden, tags)

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(
            self.embedding(ids), lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        return self.fc(out)


CHARS, CHAR_EMB, CHAR_HIDDEN = 20, 5, 4


class CharTagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMB, padding_idx=PAD)
        self.chars = nn.Module()
        self.chars.embedding = nn.Embedding(CHARS, CHAR_EMB, padding_idx=PAD)
        self.chars.lstm = nn.LSTM(CHAR_EMB, CHAR_HIDDEN, batch_first=True, bidirectional=True)
        self.lstm = nn.LSTM(
            EMB + 2 * CHAR_HIDDEN, HIDDEN, num_layers=2, batch_first=True, bidirectional=True
        )
        self.fc = nn.Linear(2 * HIDDEN, TAGS)

    def forward(self, ids, lengths, char_ids, char_lengths, index):
        packed = pack_padded_sequence(
            self.chars.embedding(char_ids), char_lengths, batch_first=True, enforce_sorted=False
        )
        _, (h_n, _) = self.chars.lstm(packed)
        words = h_n.transpose(0, 1).reshape(len(char_lengths), 2 * CHAR_HIDDEN)
        spelled = words[index]
        x = torch.cat([self.embedding(ids), spelled], dim=2)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        return self.fc(out)


def char_case(out):
    torch.manual_seed(1)
    model = CharTagger()
    lengths = torch.tensor([6, 2, 4])
    ids = torch.randint(1, VOCAB, (len(lengths), int(lengths.max())))
    targets = torch.randint(0, TAGS, ids.shape)
    # Words 0..W-1 by their spelling, some used twice, as in a real batch; most
    # short and two long, so that the library runs them in two length groups.
    char_lengths = torch.cat([torch.randint(1, 4, (38,)), torch.tensor([12, 13])])
    char_lengths = char_lengths[torch.randperm(len(char_lengths))]
    char_ids = torch.randint(2, CHARS, (len(char_lengths), int(char_lengths.max())))
    for w, n in enumerate(char_lengths):
        char_ids[w, n:] = PAD
    index = torch.randint(0, len(char_lengths), ids.shape)
    index[0, :2] = torch.nonzero(char_lengths >= 12).flatten()
    for b, n in enumerate(lengths):
        ids[b, n:] = PAD
        targets[b, n:] = -1
        index[b, n:] = 0
    logits = model(ids, lengths, char_ids, char_lengths, index)
    loss = nn.functional.cross_entropy(
        logits.reshape(-1, TAGS), targets.reshape(-1), ignore_index=-1
    )
    loss.backward()
    save_file(model.state_dict(), os.path.join(out, "char_tagger.safetensors"))
    tensors = {
        "ids": ids.to(torch.int32),
        "lengths": lengths.to(torch.int32),
        "targets": targets.to(torch.int32),
        "char_ids": char_ids.to(torch.int32),
        "char_lengths": char_lengths.to(torch.int32),
        "index": index.to(torch.int32),
        "logits": logits.detach(),
        "loss": loss.detach().reshape(1),
    }
    for name, p in model.named_parameters():
        tensors["grad." + name] = p.grad
    meta = {"vocab": VOCAB, "emb": EMB, "hidden": HIDDEN, "tags": TAGS}
    meta.update({"chars": CHARS, "char_emb": CHAR_EMB, "char_hidden": CHAR_HIDDEN})
    save_file(
        tensors,
        os.path.join(out, "char_tagger_io.safetensors"),
        metadata={k: str(v) for k, v in meta.items()},
    )


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
    char_case(out)


if __name__ == "__main__":
    main()
