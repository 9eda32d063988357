#!/usr/bin/env bash
# Runs every fuzz target (or the ones named after the seconds) for SECONDS each, two at a
# time, and prints one line per target: executions, coverage, peak memory, crash files.
# Usage: fuzz/run.sh SECONDS [TARGET...]     (needs cargo-fuzz: `cargo install cargo-fuzz`)
# Stable Rust is enough: no sanitizer (-s none); Rust checks bounds itself, and libFuzzer
# catches panics, aborts, timeouts and RSS above the limit.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:?usage: fuzz/run.sh SECONDS [TARGET...]}"
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -s none -O >/dev/null 2>&1 || cargo fuzz build -s none -O
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p logs
run_one() {
  local t="$1" seconds="$2" bin="$3"
  mkdir -p "corpus/$t" "artifacts/$t"
  # 4 GiB RSS at most, 10 s per input; the committed seeds are a second, read-only corpus.
  "$bin/$t" "corpus/$t" "seeds/$t" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1 || true
  local execs cov rss crashes
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | awk '{print $2}' || true)
  cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | awk '{print $2}' || true)
  rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "logs/$t.log" | awk '{print $2}' || true)
  crashes=$(find "artifacts/$t" -type f | wc -l)
  printf '%-18s %12s execs %8s s  cov %6s  peak %5s MiB  crash files %s\n' \
    "$t" "${execs:-?}" "$seconds" "${cov:-?}" "${rss:-?}" "$crashes"
}
export -f run_one
printf '%s\n' "${targets[@]}" | xargs -P 2 -I{} bash -c 'run_one "$@"' _ {} "$seconds" "$bin"
# Any crash file fails the run: each becomes a committed regression input (fuzz/regressions).
if [ -n "$(find artifacts -type f 2>/dev/null)" ]; then
  echo "crash inputs:"; find artifacts -type f
  exit 1
fi
