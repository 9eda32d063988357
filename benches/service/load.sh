#!/usr/bin/env bash
# Load on `cnn serve`: identify against a gallery of 100,000 encodings (10 real people from the
# bundled ORL faces + synthetic ones), 16 concurrent clients for 60 s (wrk, Debian package),
# against the CLI's own photos per second on the same photo and gallery.
#   bash benches/service/load.sh [ENCODINGS=100000] [SECONDS=60] [CLIENTS=16] [ROUNDS=2]
# Prints the wrk result, the server's memory (RSS) every 10 s, and both rates. This machine's
# neighbours make single runs vary by 30 %: the service and the CLI alternate for ROUNDS rounds
# and each side's best round is compared.
set -euo pipefail
n=${1:-100000}; secs=${2:-60}; clients=${3:-16}; rounds=${4:-2}
root=$(cd "$(dirname "$0")/../.." && pwd)
cargo build --release -p cli -p benches --bin cnn --bin pad_gallery >/dev/null 2>&1
cnn="$root/target/release/cnn"
tmp=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
port=$((18000 + RANDOM % 1000))

# The probe and the enrolment photos: ORL portraits (as the tests make them).
# Importing 100,000 encodings is a 51 MB upload.
"$cnn" serve --data "$tmp/data" --listen "127.0.0.1:$port" --max-upload-mb 200 2>"$tmp/server.log" &
server=$!
for _ in $(seq 100); do grep -q "serving http" "$tmp/server.log" 2>/dev/null && break; sleep 0.2; done
key=$(cat "$tmp/data/admin.key")
api() { curl -sf -H "Authorization: Bearer $key" "$@"; }
api -H 'content-type: application/json' -d '{"name":"load"}' "http://127.0.0.1:$port/v1/galleries" >/dev/null
cargo run -q --release -p cli --example orl_portraits -- "$root/crates/faces/assets/orl" "$tmp/photos" >/dev/null
for p in 1 2 3 4 5 6 7 8 9 10; do
  api -F "photo=@$tmp/photos/s$p-1.png" "http://127.0.0.1:$port/v1/galleries/load/people/s$p/photos" >/dev/null
done
api "http://127.0.0.1:$port/v1/galleries/load/export" -o "$tmp/real.gallery"
"$root/target/release/pad_gallery" "$tmp/real.gallery" "$tmp/load.gallery" $((n - 10)) 7
api -X PUT --data-binary "@$tmp/load.gallery" -H 'content-type: application/octet-stream' \
  "http://127.0.0.1:$port/v1/galleries/load/import?replace=true" >/dev/null
probe="$tmp/photos/s3-5.png"
echo "probe answer: $(api -F "photo=@$probe" "http://127.0.0.1:$port/v1/galleries/load/identify" | head -c 200)"

rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
mkdir -p "$tmp/copies"
k=60
for i in $(seq $((3 * k))); do cp "$probe" "$tmp/copies/$i.png"; done
run_cli() {
  local files=("$tmp"/copies/*.png)
  local t0 t1
  t0=$(date +%s.%N)
  "$cnn" faces identify --gallery "$tmp/load.gallery" --json "${files[@]:0:$1}" >/dev/null 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
best_service=0; best_cli=0
for r in $(seq "$rounds"); do
  echo "== round $r: service, $clients clients for ${secs} s"
  echo "server RSS before: $(rss) KiB"
  ( for t in $(seq 10 10 "$secs"); do sleep 10; echo "server RSS at ${t}s: $(rss) KiB"; done ) &
  sampler=$!
  wrk -t2 -c"$clients" -d"${secs}s" --timeout 30s --latency -s "$root/benches/service/identify.lua" \
    "http://127.0.0.1:$port/v1/galleries/load/identify" -- "$key" "$probe" | tee "$tmp/wrk.txt"
  wait $sampler || true
  echo "server RSS after: $(rss) KiB"
  rate=$(grep RESULT "$tmp/wrk.txt" | sed 's/.*per_second=\([0-9.]*\).*/\1/')
  best_service=$(echo "if ($rate > $best_service) $rate else $best_service" | bc -l)
  # The CLI on the same photo and gallery: the rate from the difference of two runs (K and
  # 3K copies), so loading the models once per run is not counted against it.
  a=$(run_cli $k); b=$(run_cli $((3 * k)))
  cli=$(echo "2 * $k / ($b - $a)" | bc -l)
  best_cli=$(echo "if ($cli > $best_cli) $cli else $best_cli" | bc -l)
  printf 'round %d: service %.2f photos/s, CLI identify %.2f photos/s (%d photos %.2f s, %d photos %.2f s)\n' \
    "$r" "$rate" "$cli" "$k" "$a" $((3 * k)) "$b"
done
printf 'best rounds: service %.2f photos/s, CLI %.2f photos/s: service = %.1f %% of the CLI\n' \
  "$best_service" "$best_cli" "$(echo "100 * $best_service / $best_cli" | bc -l)"
