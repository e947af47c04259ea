#!/usr/bin/env bash
# Fleet stamping benchmark (issue 7): N per-device images cut from one build
# with `kiln stamp` vs N full `kiln build`s with the per-device settings
# (--set uuid=... --set hostname=...), release binary, warm page cache.
# Both produce a sparse raw image per device with its sha256 (stamp:
# SHA256SUMS + a manifest per device; build: SHA256SUMS, bmap, manifest).
# Also times --format qcow2-overlay. Prints wall times, per-device times and the ratio.
# Env: KILN (binary; default $CARGO_TARGET_DIR/release/kiln, built if
# missing), N (devices, default 100), BOARD (default nuc), BENCH_TMP
# (scratch parent, default /var/tmp; stamp outputs are sparse).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
kiln=${KILN:-$target/release/kiln}
[ -x "$kiln" ] || (cd "$repo" && cargo build --release -p kiln)
n=${N:-100}
board=${BOARD:-nuc}
bash "$repo/demo/make-inputs.sh" >/dev/null
w=$(mktemp -d "${BENCH_TMP:-/var/tmp}/kiln-stamp.XXXXXX")
trap 'rm -rf "$w"' EXIT
export SOURCE_DATE_EPOCH=1700000000
export KILN_PROFILES_DIR=$repo/board-profiles KILN_RECIPES_DIR=$repo/recipes
now() { date +%s.%N; }
uuid() { printf '%032x' $((0x5eed0000 + $1)); }

# Devices file.
{
  echo "uuid,hostname,deviceApiKey"
  for i in $(seq 1 "$n"); do echo "$(uuid "$i"),dev-$i,key-$i"; done
} > "$w/devices.csv"

# One build to stamp from (not counted: it is also what the N builds repeat).
"$kiln" build -q --board "$board" --recipe bob-onprem -o "$w/base.img"
size=$(stat -c %s "$w/base.img")

sync; t0=$(now)
"$kiln" stamp -q "$w/base.img" --devices "$w/devices.csv" -o "$w/stamped"
t1=$(now)
"$kiln" stamp -q "$w/base.img" --devices "$w/devices.csv" -o "$w/overlays" --format qcow2-overlay
t2=$(now)
rm -rf "$w/stamped" "$w/overlays"

sync; t3=$(now)
for i in $(seq 1 "$n"); do
  mkdir "$w/b"
  "$kiln" build -q --board "$board" --recipe bob-onprem \
    --set "uuid=$(uuid "$i")" --set "hostname=dev-$i" -o "$w/b/dev-$i.img"
  rm -rf "$w/b"
done
t4=$(now)

python3 - "$n" "$board" "$size" "$t0" "$t1" "$t2" "$t3" "$t4" <<'PY'
import sys
n, board, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
t0, t1, t2, t3, t4 = map(float, sys.argv[4:])
stamp, ov, build = t1 - t0, t2 - t1, t4 - t3
print(f"board {board}, image {size / 2**20:.0f} MiB (sparse), {n} devices")
print(f"kiln stamp (raw)                {stamp:8.1f} s  {stamp / n:6.2f} s/device")
print(f"kiln stamp --format qcow2-overlay {ov:5.1f} s  {ov / n:6.2f} s/device")
print(f"{n} x kiln build               {build:8.1f} s  {build / n:6.2f} s/device")
print(f"ratio build/stamp raw: {build / stamp:.1f}x, build/stamp overlay: {build / ov:.1f}x")
PY
