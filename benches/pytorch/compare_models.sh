#!/usr/bin/env bash
# Training throughput (ORL classifier network, batch 64) and VGG19 to relu5_1 (1x3x256x256),
# ours vs PyTorch, on 1 and 2 threads; three alternating rounds, best of each kept.
#
#   bash benches/pytorch/compare_models.sh /path/to/venv-torch/bin/python
set -euo pipefail
py="${1:?usage: compare_models.sh PATH/TO/venv/bin/python}"
cd "$(dirname "$0")/../.."
cargo build --release -q -p xtask
for t in 1 2; do
  best() { sort -g | head -1; }
  bestmax() { sort -g | tail -1; }
  o_ips=(); p_ips=(); o_f=(); p_f=(); o_fb=(); p_fb=()
  for r in 1 2 3; do
    o_ips+=("$(RAYON_NUM_THREADS=$t ./target/release/xtask train-bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_second"])')")
    p_ips+=("$("$py" benches/pytorch/train_bench.py --threads "$t" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_second"])')")
    read -r f fb < <(RAYON_NUM_THREADS=$t ./target/release/xtask vgg-bench --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["fwd_s"], d["fwdbwd_s"])')
    o_f+=("$f"); o_fb+=("$fb")
    read -r f fb < <("$py" benches/pytorch/vgg_bench.py --threads "$t" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["fwd_s"], d["fwdbwd_s"])')
    p_f+=("$f"); p_fb+=("$fb")
  done
  oi=$(printf '%s\n' "${o_ips[@]}" | bestmax); pi=$(printf '%s\n' "${p_ips[@]}" | bestmax)
  of=$(printf '%s\n' "${o_f[@]}" | best); pf=$(printf '%s\n' "${p_f[@]}" | best)
  ofb=$(printf '%s\n' "${o_fb[@]}" | best); pfb=$(printf '%s\n' "${p_fb[@]}" | best)
  python3 - "$t" "$oi" "$pi" "$of" "$pf" "$ofb" "$pfb" <<'PY'
import sys
t, oi, pi, of, pf, ofb, pfb = sys.argv[1], *map(float, sys.argv[2:])
print(f"| {t} | {oi:.0f} | {pi:.0f} | {oi / pi:.2f}x | {of:.3f} | {pf:.3f} | {pf / of:.2f}x | {ofb:.3f} | {pfb:.3f} | {pfb / ofb:.2f}x |")
PY
done
