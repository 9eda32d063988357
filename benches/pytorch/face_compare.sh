#!/usr/bin/env bash
# Face ResNet-29 embedding throughput, ours vs PyTorch (same network and weights, affine layers
# folded into the convolutions on both sides; PyTorch's unfolded port is printed too): faces
# per second at batch 1 and 64 on 1 and 2 threads.
# Usage: bash benches/pytorch/face_compare.sh PYTHON WEIGHTS.safetensors [ROUNDS]
# The VM's speed drifts between minutes, so the two sides alternate and each keeps its best round.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${1:?python with torch and safetensors}
weights=${2:?face_resnet29.safetensors (PyTorch names)}
rounds=${3:-3}
echo "| threads | batch | ours faces/s | PyTorch faces/s (folded) | PyTorch (affine apart) | ours / PyTorch best |"
echo "|---:|---:|---:|---:|---:|---:|"
for threads in 1 2; do
  declare -A ours=() torch_f=() torch_a=()
  for r in $(seq "$rounds"); do
    while read -r batch rate; do
      ours[$batch]=$("$py" -c "print(max(${ours[$batch]:-0}, $rate))")
    done < <(RAYON_NUM_THREADS=$threads cargo bench -q -p benches --bench faces -- embed 2>/dev/null |
      awk '/face_resnet29\/embed_batch/ {sub(/.*batch/, ""); b=$0} /thrpt:.*elem/ {print b, $4}')
    while read -r batch kind rate; do
      if [ "$kind" = folded ]; then torch_f[$batch]=$("$py" -c "print(max(${torch_f[$batch]:-0}, $rate))")
      else torch_a[$batch]=$("$py" -c "print(max(${torch_a[$batch]:-0}, $rate))"); fi
    done < <("$py" benches/pytorch/face_resnet29_bench.py "$weights" "$threads" 1 |
      sed -E 's/.*batch ([0-9]+) (folded|affine): ([0-9.]+).*/\1 \2 \3/')
  done
  for batch in 1 64; do
    "$py" -c "
o, f, a = ${ours[$batch]}, ${torch_f[$batch]}, ${torch_a[$batch]}
print(f'| $threads | $batch | {o:.1f} | {f:.1f} | {a:.1f} | {o / max(f, a):.2f}x |')"
  done
  unset ours torch_f torch_a
done
