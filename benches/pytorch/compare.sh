#!/usr/bin/env bash
# Side-by-side convolution timings, ours vs PyTorch, on 1 and 2 threads.
#
#   python3 -m venv /path/to/venv-torch && /path/to/venv-torch/bin/pip install torch numpy
#   bash benches/pytorch/compare.sh /path/to/venv-torch/bin/python [REPS]
#
# Prints one Markdown table per thread count (the tables in docs/PERFORMANCE.md).
set -euo pipefail
py="${1:?usage: compare.sh PATH/TO/venv/bin/python [REPS] [ROUNDS]}"
reps="${2:-7}"
rounds="${3:-3}"
cd "$(dirname "$0")/../.."
cargo build --release -q -p xtask
out="$(mktemp -d)"
for t in 1 2; do
  # Alternate the two implementations so that drift in machine speed hits both alike.
  for r in $(seq "$rounds"); do
    RAYON_NUM_THREADS=$t ./target/release/xtask conv-bench --json --reps "$reps" > "$out/ours_${t}_$r.json"
    "$py" benches/pytorch/conv_bench.py --threads "$t" --reps "$reps" --json > "$out/torch_${t}_$r.json"
  done
  python3 benches/pytorch/compare.py "$out"/ours_"$t"_*.json -- "$out"/torch_"$t"_*.json
  echo
done
