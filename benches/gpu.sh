#!/usr/bin/env bash
# The measurements to take whenever a real GPU is at hand, in one file to paste
# into BENCHMARKS.md: the adapter, the golden and recurrent tests (every kernel
# path, fused steps included), and the bench table three times — the adapter's
# choices, every recurrent step fused, every step unfused — with the PyTorch
# peer column when tools/peers_torch.py can run. Usage: benches/gpu.sh [OUT]
# (default runs/gpu-<date>.md). WGPU_BACKEND and WGPU_ADAPTER_NAME pick the device.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/gpu-$(date +%Y-%m-%d).md}"
mkdir -p "$(dirname "$out")"
cargo build --release --locked --example bench --example devices
peers=()
if python3 tools/peers_torch.py --out runs/peers_torch.csv >/dev/null 2>&1; then
    peers=(--peers runs/peers_torch.csv)
fi
{
    echo "# GPU run, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo '```'
    cargo run --release --locked --example devices 2>/dev/null
    echo '```'
    echo
    echo "## Golden, recurrent and stream tests"
    echo
    echo '```'
    cargo test --release --locked --test golden --test recurrent --test language_model 2>&1 \
        | grep -E "^test |test result"
    echo '```'
    for steps in auto fused unfused; do
        echo
        echo "## bench --steps $steps"
        echo
        echo '```'
        cargo run --release --locked --example bench -- --runs 11 --steps "$steps" "${peers[@]}" 2>/dev/null
        echo '```'
    done
} > "$out"
echo "wrote $out"
