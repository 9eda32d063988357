#!/usr/bin/env bash
# Before/after timings of two builds of `xtask conv-bench`, interleaved round by round (the VM's
# speed drifts between minutes, so each build keeps its best round per shape and column).
#
#   git worktree add /tmp/before OLD_COMMIT && (cd /tmp/before && cargo build --release -p xtask)
#   cargo build --release -p xtask
#   bash benches/conv_ab.sh /tmp/before/target/release/xtask target/release/xtask 4 1 [ONLY]
#
# Prints one line per build and shape: best fwd, fwd+bwd, dX and dW in ms.
set -euo pipefail
before=${1:?usage: conv_ab.sh BEFORE_XTASK AFTER_XTASK [ROUNDS] [THREADS] [ONLY]}
after=${2:?usage: conv_ab.sh BEFORE_XTASK AFTER_XTASK [ROUNDS] [THREADS] [ONLY]}
rounds=${3:-4}
threads=${4:-1}
only=${5:-}
cpus=$(seq -s, 0 $((threads - 1)))
out=$(mktemp -d)
for r in $(seq "$rounds"); do
  for side in before after; do
    bin=$before; [ "$side" = after ] && bin=$after
    RAYON_NUM_THREADS=$threads taskset -c "$cpus" "$bin" conv-bench --reps 3 --only "$only" \
      > "$out/${side}_$r.txt"
  done
done
python3 - "$out" <<'PY'
import glob, re, sys
d = sys.argv[1]
pattern = re.compile(r"(\S+)\s+fwd\s+([\d.]+) ms.*fwd\+bwd\s+([\d.]+) ms.*dx\s+([\d.]+) ms, dw\s+([\d.]+) ms")
best = {}
for side in ("before", "after"):
    for path in sorted(glob.glob(f"{d}/{side}_*.txt")):
        for line in open(path):
            m = pattern.match(line)
            if m:
                key = (m.group(1), side)
                vals = [float(x) for x in m.groups()[1:]]
                best[key] = [min(a, b) for a, b in zip(best.get(key, vals), vals)]
print(f"{'shape':26} {'build':6} {'fwd':>9} {'fwd+bwd':>9} {'dX':>9} {'dW':>9}")
for (shape, side), v in sorted(best.items()):
    print(f"{shape:26} {side:6} " + " ".join(f"{x:9.3f}" for x in v))
PY
