#!/usr/bin/env bash
# Style transfer, ours vs PyTorch, same inputs / network / layers / optimiser / iterations:
# seconds per iteration at 256 and 512 px on 1 and 2 threads, and the final losses.
# Usage: bash benches/pytorch/style_compare.sh PYTHON [ITERS] [ROUNDS]
# The VM's speed drifts between minutes, so the two sides alternate and each keeps its best round.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${1:?python with torch, numpy, safetensors}
iters=${2:-50}
rounds=${3:-2}
cargo build --release -p xtask >/dev/null 2>&1
content=crates/nn/assets/images/coffee.png
painting=crates/style/assets/starry_night.jpg
tmp=$(mktemp -d)
echo "| size | threads | ours s/iter | PyTorch s/iter | speed-up | our final loss | PyTorch final loss | difference |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for size in 256 512; do
  for threads in 1 2; do
    best_o=1e9; best_p=1e9; loss_o=; loss_p=
    for r in $(seq "$rounds"); do
      o=$(RAYON_NUM_THREADS=$threads ./target/release/xtask style --content $content --style $painting \
          --out "$tmp/o.png" --size $size --iters "$iters" --dump-inputs "$tmp/in" --json 2>/dev/null | tail -1)
      p=$("$py" benches/pytorch/style_bench.py --inputs "$tmp/in" --iters "$iters" --threads $threads)
      so=$(echo "$o" | "$py" -c "import json,sys; print(json.load(sys.stdin)['seconds_per_iteration'])")
      sp=$(echo "$p" | "$py" -c "import json,sys; print(json.load(sys.stdin)['seconds_per_iteration'])")
      loss_o=$(echo "$o" | "$py" -c "import json,sys; print(json.load(sys.stdin)['final_loss'])")
      loss_p=$(echo "$p" | "$py" -c "import json,sys; print(json.load(sys.stdin)['final_loss'])")
      best_o=$("$py" -c "print(min($best_o, $so))"); best_p=$("$py" -c "print(min($best_p, $sp))")
    done
    "$py" -c "
o, p, lo, lp = $best_o, $best_p, $loss_o, $loss_p
print(f'| {$size} | {$threads} | {o:.4f} | {p:.4f} | {p / o:.2f}x | {lo:.4e} | {lp:.4e} | {100 * (lo - lp) / lp:+.2f} % |')"
  done
done
rm -rf "$tmp"
