#!/usr/bin/env bash
# Photos per second, detect + landmarks + align + encode, ours against face_recognition (dlib),
# on the first N distinct images of LFW's pairs.txt, 1 and 2 threads, alternating, best of R.
#   bash benches/face_recognition/speed.sh /tmp/venv-fr/bin/python LFW_DIR [N=200] [R=2]
# Ours: `faces enroll --largest` of those photos into a fresh gallery (every photo read, its
# faces found, the largest aligned and encoded; the gallery write is included). Theirs:
# lfw_view2.py --limit N (face_locations HOG, 5-point landmarks, face_encodings), one process
# per thread.
set -euo pipefail
py=$1; lfw=$(cd "$2" && pwd); n=${3:-200}; rounds=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
cargo build --release -p xtask >/dev/null 2>&1
bin="$here/../../target/release/xtask"
list=$(cd "$here" && HERE="$here" "$py" -c "
import os, sys
sys.path.insert(0, '$here')
from lfw_view2 import parse_pairs
root = os.path.join('$lfw', 'lfw-deepfunneled')
pairs = parse_pairs(os.path.join('$lfw', 'protocol', 'pairs.txt'), root)
print('\n'.join(sorted({p for q in pairs for p in q[:2]})[:$n]))
")
tmp=$(mktemp -d)
for threads in 1 2; do
  best_ours=0; best_theirs=0
  for r in $(seq "$rounds"); do
    rm -f "$tmp/g.gallery"
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    RAYON_NUM_THREADS=$threads "$bin" faces enroll --gallery "$tmp/g.gallery" --largest --name all $list >/dev/null 2>&1
    t1=$(date +%s.%N)
    ours=$(echo "$n / ($t1 - $t0)" | bc -l)
    theirs=$("$py" "$here/lfw_view2.py" "$lfw" --jobs "$threads" --limit "$n" | "$py" -c "import json,sys; print(json.load(sys.stdin)['photos_per_s'])")
    best_ours=$(echo "if ($ours > $best_ours) $ours else $best_ours" | bc -l)
    best_theirs=$(echo "if ($theirs > $best_theirs) $theirs else $best_theirs" | bc -l)
  done
  printf "threads %d: ours %.2f photos/s, face_recognition %.2f photos/s, ratio %.2fx\n" \
    "$threads" "$best_ours" "$best_theirs" "$(echo "$best_ours / $best_theirs" | bc -l)"
done
rm -rf "$tmp"
