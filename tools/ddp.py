#!/usr/bin/env python3
"""Trains a tagger that rnn-wgpu saved under PyTorch's DistributedDataParallel
(gloo, one process per rank) and writes it back for the library to load:

  DIR/model.safetensors        the library's model (PyTorch's names; the
                               configuration in the metadata)
  DIR/batch.safetensors        its batch: `ids`, `targets` (-1: padding), `lengths`
  DIR/trained.safetensors      written here: the state_dict after training
  DIR/trained_io.safetensors   written here: its `logits` for the whole batch

Each rank trains on every world-th sentence; DDP averages the gradients, so the
ranks end with the same weights (checked). `examples/pytorch_ddp.rs` writes the
input and checks the output.

    pip install torch safetensors numpy
    torchrun --standalone --nproc_per_node 2 tools/ddp.py DIR
"""

import os
import sys

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tagger import BiLSTMTagger  # noqa: E402

STEPS, LR = 20, 1e-2


def main():
    out = sys.argv[1]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    path = os.path.join(out, "model.safetensors")
    with safe_open(path, "pt") as f:
        cfg = {k: int(v) for k, v in f.metadata().items()}
    model = BiLSTMTagger(
        cfg["vocab"], cfg["emb"], cfg["hidden"], cfg["tags"], cfg["pad"], cfg["layers"]
    )
    model.load_state_dict(load_file(path))  # strict: every name and shape
    batch = load_file(os.path.join(out, "batch.safetensors"))
    ids, targets = batch["ids"].long(), batch["targets"].long()
    lengths = batch["lengths"].long()
    mine = slice(rank, None, world)
    ddp = DistributedDataParallel(model)
    opt = torch.optim.Adam(ddp.parameters(), lr=LR)
    for step in range(1, STEPS + 1):
        opt.zero_grad()
        logits = ddp(ids[mine], lengths[mine])
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, cfg["tags"]), targets[mine].reshape(-1), ignore_index=-1
        )
        loss.backward()
        opt.step()
        if rank == 0 and step % 10 == 0:
            print(f"PyTorch DDP ({world} ranks), step {step}: rank 0 loss {loss.item():.4f}")
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    first = flat.clone()
    dist.broadcast(first, 0)
    assert torch.equal(flat, first), f"rank {rank} ended with other weights than rank 0"
    if rank == 0:
        save_file(model.state_dict(), os.path.join(out, "trained.safetensors"))
        with torch.no_grad():
            logits = model(ids, lengths)
        save_file({"logits": logits}, os.path.join(out, "trained_io.safetensors"))
    # Leave together, with DDP's reducer (and the gloo work it holds) gone
    # before the group: a rank that tore down alone, or left that work to the
    # interpreter's exit, could abort in gloo's threads.
    dist.barrier()
    del ddp, opt
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
