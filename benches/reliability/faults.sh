#!/usr/bin/env bash
# Fault trials for docs/RELIABILITY.md: kill -9 at random moments during enroll, training
# and style's saves; two writers at once; a full disk; a read-only folder; every hostile
# input of issue 17 under a 4 GiB address-space limit. Each block prints trials and what was
# lost. Needs root for the tmpfs mounts (the disk-full and read-only blocks are skipped
# otherwise). Usage: benches/reliability/faults.sh [TRIALS]   (default 20; 0 runs only the
# single-shot blocks)
set -uo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p xtask >/dev/null 2>&1 || cargo build --release -p xtask
X="$PWD/target/release/xtask"
ORL="$PWD/crates/faces/assets/orl"
ASSETS="$PWD/crates/style/assets"
trials="${1:-20}"
work="$(mktemp -d)"
trap 'umount "$work/full" "$work/ro" 2>/dev/null; rm -rf "$work"' EXIT
export RUST_BACKTRACE=0
rand_ms() { echo $(( (RANDOM % $1) + $2 )); }
sleep_ms() { sleep "$(awk -v m="$1" 'BEGIN{printf "%.3f", m/1000}')"; }

# People folders: s1..s40 with 5 images each, and s1..s20 with 3 (the "previous" gallery).
mkdir -p "$work/all" "$work/half"
for s in $(seq 1 40); do
  mkdir -p "$work/all/s$s"; cp "$ORL/s$s/"{1,2,3,4,5}.pgm "$work/all/s$s/"
  if [ "$s" -le 20 ]; then mkdir -p "$work/half/s$s"; cp "$ORL/s$s/"{1,2,3}.pgm "$work/half/s$s/"; fi
done
enroll() { "$X" faces enroll --crop none --gallery "$1" --people "$2" >/dev/null 2>&1; }
count_images() { "$X" faces gallery list --gallery "$1" --json 2>/dev/null | grep -o '"images":[0-9]*' | head -1; }

echo "== kill -9 during faces enroll ($trials trials)"
lost=0
for i in $(seq 1 "$trials"); do
  g="$work/enroll-$i.gallery"
  enroll "$g" "$work/half" || { echo "setup failed"; exit 1; }
  before=$("$X" faces gallery list --gallery "$g" 2>/dev/null | head -1)
  "$X" faces enroll --crop none --gallery "$g" --people "$work/all" >/dev/null 2>&1 &
  pid=$!
  sleep_ms "$(rand_ms 3000 50)"
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  after=$("$X" faces gallery list --gallery "$g" 2>/dev/null | head -1)
  # The gallery loads and holds either the previous or the new people; the next enroll works
  # (the dead writer's lock is free) and leaves no temporary file.
  if [ -z "$after" ] || ! enroll "$g" "$work/all" || ls -a "$work" | grep -q "enroll-$i.gallery.tmp-"; then
    lost=$((lost + 1)); echo "trial $i: before [$before] after [$after]"
  fi
done
echo "enroll: $trials trials, $lost lost"

echo "== kill -9 during faces train, then --resume ($((trials / 4)) trials)"
lost=0
for i in $(seq 1 $((trials / 4))); do
  out="$work/train-$i/m.model"
  "$X" faces train --data "$ORL" --train-people 10 --epochs 4 --steps-per-epoch 10 \
    --people-per-batch 5 --images-per-person 4 --seed "$i" --out "$out" >/dev/null 2>&1 &
  pid=$!
  sleep_ms "$(rand_ms 12000 500)"
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  if ! "$X" faces train --data "$ORL" --train-people 10 --epochs 4 --steps-per-epoch 10 \
    --people-per-batch 5 --images-per-person 4 --seed "$i" --out "$out" --resume >/dev/null 2>"$work/resume.err"; then
    lost=$((lost + 1)); echo "trial $i: resume failed: $(tail -2 "$work/resume.err")"
  fi
done
echo "train: $((trials / 4)) trials, $lost lost"

echo "== kill -9 during style saves ($((trials / 2)) trials)"
lost=0
for i in $(seq 1 $((trials / 2))); do
  out="$work/style-$i.png"
  "$X" style --content "$ASSETS/shipwreck.jpg" --style "$ASSETS/wave.jpg" --size 96 --iters 40 \
    --optimizer adam --save-every 1 --out "$out" >/dev/null 2>&1 &
  pid=$!
  sleep_ms "$(rand_ms 6000 1500)"
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  # Every picture there is complete (decodes), whichever moment the kill hit.
  for f in "$work"/style-"$i"*.png; do
    [ -e "$f" ] || continue
    if ! "$X" faces detect "$f" >/dev/null 2>"$work/decode.err" && grep -q "not a readable\|truncated" "$work/decode.err"; then
      lost=$((lost + 1)); echo "trial $i: $f does not decode"
    fi
  done
done
echo "style: $((trials / 2)) trials, $lost lost"

echo "== two writers enrolling into one gallery at once ($trials trials)"
lost=0
for i in $(seq 1 "$trials"); do
  g="$work/two-$i.gallery"
  enroll "$g" "$work/half" &
  enroll "$g" "$work/all" &
  wait
  # One may be refused (locked); the gallery must load, and a last enroll completes it.
  if ! "$X" faces gallery list --gallery "$g" >/dev/null 2>&1 || ! enroll "$g" "$work/all"; then
    lost=$((lost + 1)); echo "trial $i: gallery unusable"
  fi
done
echo "two writers: $trials trials, $lost lost"

if [ "$(id -u)" = 0 ]; then
  echo "== a full disk (a 2 MiB tmpfs)"
  mkdir -p "$work/full"; mount -t tmpfs -o size=2m tmpfs "$work/full"
  enroll "$work/full/g.gallery" "$work/half"
  sum_before=$(sha256sum "$work/full/g.gallery" | cut -c1-16)
  # Leave 40 kB: less than the new gallery (200 encodings) needs.
  avail=$(df --output=avail -B1 "$work/full" | tail -1)
  head -c $((avail - 40000)) /dev/zero > "$work/full/filler" 2>/dev/null
  "$X" faces enroll --crop none --gallery "$work/full/g.gallery" --people "$work/all" >/dev/null 2>"$work/full.err"
  code=$?
  sum_after=$(sha256sum "$work/full/g.gallery" | cut -c1-16)
  left=$(ls -a "$work/full" | grep -c "tmp-" || true)
  echo "exit $code: $(tail -1 "$work/full.err"); gallery unchanged: $([ "$sum_before" = "$sum_after" ] && echo yes || echo NO); temporary files left: $left"
  umount "$work/full"

  echo "== a read-only folder"
  mkdir -p "$work/ro"; mount -t tmpfs -o size=8m tmpfs "$work/ro"
  enroll "$work/ro/g.gallery" "$work/half"
  sum_before=$(sha256sum "$work/ro/g.gallery" | cut -c1-16)
  mount -o remount,ro "$work/ro"
  "$X" faces enroll --crop none --gallery "$work/ro/g.gallery" --people "$work/all" >/dev/null 2>"$work/ro.err"
  code=$?
  echo "exit $code: $(tail -1 "$work/ro.err"); gallery unchanged: $([ "$sum_before" = "$(sha256sum "$work/ro/g.gallery" | cut -c1-16)" ] && echo yes || echo NO)"
  umount "$work/ro"
fi

echo "== issue 17's hostile inputs under prlimit --as=4GiB (exit codes; 101 = panic, 134/137 = abort)"
[ -e "$work/enroll-1.gallery" ] || enroll "$work/enroll-1.gallery" "$work/half"   # with TRIALS 0
lim() { prlimit --as=4294967296 "$X" "$@" >/dev/null 2>"$work/lim.err"; echo "$? $(grep -m1 '^error' "$work/lim.err" || head -1 "$work/lim.err")"; }
printf 'P5 0 0 255\n' > "$work/zero.pgm"
python3 - "$work" "$ASSETS/shipwreck.jpg" <<'PY'
import struct, sys, zlib
w = sys.argv[1]
# An .npy whose shape product overflows; an empty and a non-ASCII descr.
def npy(descr, shape):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    h += " " * (63 - (10 + len(h)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + b"\0" * 8
open(f"{w}/overflow.npy", "wb").write(npy("<f4", "(4294967296, 4294967296, 4294967296)"))
# A checkpoint whose first string claims 2^61 bytes, with a valid CRC.
payload = b"\xfd" + struct.pack("<Q", 1 << 61) + b"x" * 32
open(f"{w}/huge.ckpt", "wb").write(b"CNNCKPT\0" + struct.pack("<IQI", 1, len(payload), zlib.crc32(payload)) + payload)
# WFDB records, one per folder: sampling frequency 1e-6, 0, and an .atr starting with a
# negative SKIP.
import os
for name, fs, atr in [("slow", "1e-6", b"\x05\x04\x00\x00"), ("zero", "0", b"\x05\x04\x00\x00"),
                      ("skip", "360", b"\x00\xec" + struct.pack("<hH", -1, 0xffff) + b"\x05\x04\x00\x00")]:
    os.makedirs(f"{w}/ecg-{name}", exist_ok=True)
    open(f"{w}/ecg-{name}/{name}.hea", "w").write(f"{name} 1 {fs} 2\n{name}.dat 212 200 11 0 1 1 0 MLII\n")
    open(f"{w}/ecg-{name}/{name}.dat", "wb").write(b"\x01\x00\x00")
    open(f"{w}/ecg-{name}/{name}.atr", "wb").write(atr)
# .npz archives: a member whose declared size is 3.75 GiB, and train_images with an
# overflowing shape.
import zipfile, io
def npz(path, member, declared=None):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        z.writestr("train_images.npy", member)
    data = bytearray(b.getvalue())
    if declared is not None:
        cd = data.find(b"PK\x01\x02")
        data[cd + 24:cd + 28] = struct.pack("<I", declared)
        data[22:26] = struct.pack("<I", declared)
    open(path, "wb").write(data)
npz(f"{w}/huge.npz", npy("|u1", "(4,)"), 0xF0000000)
npz(f"{w}/overflow.npz", npy("|u1", "(4294967296, 4294967296, 4294967296)"))
# A truncated JPEG (the first half of a real one).
jpg = open(sys.argv[2], "rb").read()
open(f"{w}/cut.jpg", "wb").write(jpg[: len(jpg) // 2])
PY
# One 16000 x 16000 photo as the first image of a classifier's folder.
mkdir -p "$work/big/a" "$work/big/b"
python3 -c "import zlib,struct,sys
w,h=16000,16000
raw=zlib.compress(b''.join(b'\0'+bytes(w) for _ in range(h)),9)
c=lambda t,d: struct.pack('>I',len(d))+t+d+struct.pack('>I',zlib.crc32(t+d))
open(sys.argv[1],'wb').write(b'\x89PNG\r\n\x1a\n'+c(b'IHDR',struct.pack('>IIBBBBB',w,h,8,0,0,0,0))+c(b'IDAT',raw)+c(b'IEND',b''))" "$work/big/a/0.png"
cp "$ORL/s1/"*.pgm "$work/big/a/"; cp "$ORL/s2/"*.pgm "$work/big/b/"
echo "verify zero.pgm:           $(lim faces verify --crop none "$work/zero.pgm" "$ORL/s1/1.pgm")"
echo "--crop 4294967295,0,1,1:   $(lim faces verify --crop 4294967295,0,1,1 "$ORL/s1/1.pgm" "$ORL/s1/2.pgm")"
echo "model file 2^61 string:    $(lim faces verify --model "$work/huge.ckpt" "$ORL/s1/1.pgm" "$ORL/s1/2.pgm")"
echo "identify --top-k 1e11:     $(lim faces identify --gallery "$work/enroll-1.gallery" --crop none --top-k 100000000000 "$ORL/s1/1.pgm")"
echo "style --size 0:            $(lim style --content "$ASSETS/shipwreck.jpg" --style "$ASSETS/wave.jpg" --out "$work/o.png" --size 0)"
echo "style --size 100000:       $(lim style --content "$ASSETS/shipwreck.jpg" --style "$ASSETS/wave.jpg" --out "$work/o.png" --size 100000 --memory-limit-mb 1000)"
echo "style --size 8192:         $(lim style --content "$ASSETS/shipwreck.jpg" --style "$ASSETS/wave.jpg" --out "$work/o.png" --size 8192)"
echo "style --size 24:           $(lim style --content "$ASSETS/shipwreck.jpg" --style "$ASSETS/wave.jpg" --out "$work/o.png" --size 24)"
echo "train classifier 0x0:      $(lim train classifier --data "$work/all" --out "$work/cls" --size 0x0)"
echo "ecg fs 1e-6:               $(lim ecg train --records "$work/ecg-slow" --out "$work/ecg")"
echo "ecg fs 0:                  $(lim ecg train --records "$work/ecg-zero" --out "$work/ecg")"
echo "ecg .atr negative SKIP:    $(lim ecg train --records "$work/ecg-skip" --out "$work/ecg")"
echo "npz member of 3.75 GiB:    $(lim volumes train --data "$work/huge.npz" --out "$work/vol")"
echo "npy shape overflow:        $(lim volumes train --data "$work/overflow.npz" --out "$work/vol")"
echo "verify truncated JPEG:     $(lim faces verify --crop none "$work/cut.jpg" "$ORL/s1/1.pgm")"
echo "16000x16000 photo first:   $(lim train classifier --data "$work/big" --out "$work/cls")"
"$X" faces gallery list --gallery "$work/enroll-1.gallery" --json 2>"$work/pipe.err" | head -2 >/dev/null
echo "gallery list --json | head -2: ${PIPESTATUS[0]} $(tail -1 "$work/pipe.err")"
echo "calibrate --target-far=-1: $(lim faces calibrate --gallery "$work/enroll-1.gallery" --people "$work/half" --target-far=-1)"
echo "faces train --lr 1e6:      $(lim faces train --data "$ORL" --out "$work/m.model" --lr 1e6)"
