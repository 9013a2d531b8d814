"""The benchmark workloads W1-W5 (benches/common/workloads.rs) with PyTorch on the
CPU, for the peer columns of `cargo run --release --example bench -- --peers FILE`.

    pip install torch
    python3 tools/peers_torch.py --out runs/peers_torch.csv

Writes `name,ms` lines (median ms per step over --runs steps, after a warm-up)
under a header naming the peer; uses torch's default thread count (the machine's
cores) unless --threads is given.
"""

import argparse
import statistics
import time

import torch

B, T, I, H = 32, 64, 128, 256


def timed(step, runs):
    step()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def fill(*shape):
    n = 1
    for s in shape:
        n *= s
    x = torch.arange(n, dtype=torch.float64)
    return (((x * 7919) % 1000) * 1e-3 - 0.5).float().reshape(shape)


def w1_w2(runs):
    lstm = torch.nn.LSTM(I, H, batch_first=True)
    opt = torch.optim.SGD(lstm.parameters(), lr=0.01)
    x, dy = fill(B, T, I), fill(B, T, H)

    def train():
        opt.zero_grad()
        y, _ = lstm(x)
        y.backward(dy)
        opt.step()

    def forward():
        with torch.no_grad():
            lstm(x)

    return timed(train, runs), timed(forward, runs)


def w3(runs):
    a, b = fill(1024, 1024), fill(1024, 1024)
    return timed(lambda: torch.mm(a, b), runs)


def w4(runs):
    vocab, tags, b, t = 5000, 9, 32, 40
    emb = torch.nn.Embedding(vocab, 64, padding_idx=0)
    lstm = torch.nn.LSTM(64, 64, batch_first=True, bidirectional=True)
    out = torch.nn.Linear(128, tags)
    params = list(emb.parameters()) + list(lstm.parameters()) + list(out.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    i = torch.arange(b * t)
    ids = (1 + (i * 7919) % (vocab - 1)).reshape(b, t)
    targets = ((i * 31) % tags).reshape(b, t)

    def step():
        opt.zero_grad()
        y, _ = lstm(emb(ids))
        loss = torch.nn.functional.cross_entropy(out(y).reshape(-1, tags), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        loss.item()

    return timed(step, runs)


def w5(runs):
    lstm = torch.nn.LSTM(I, H, batch_first=True)
    x = fill(1, 1, I)
    state = [None]

    def token():
        with torch.no_grad():
            y, state[0] = lstm(x, state[0])
            y.numpy()

    return timed(token, runs * 20)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    w1, w2 = w1_w2(args.runs)
    rows = {"W1": w1, "W2": w2, "W3": w3(args.runs), "W4": w4(args.runs), "W5": w5(args.runs)}
    with open(args.out, "w") as f:
        f.write(f"# PyTorch {torch.__version__} CPU, {torch.get_num_threads()} threads\n")
        for name, ms in rows.items():
            f.write(f"{name},{ms:.4f}\n")
    for name, ms in rows.items():
        print(f"{name} {ms:.3f} ms")


if __name__ == "__main__":
    main()
