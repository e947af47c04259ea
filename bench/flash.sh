#!/usr/bin/env bash
# Flashing benchmark (make bench, issue 20): one image, same machine, warm
# page cache, targets are files on BENCH_TMP (--force), release binary.
#   kiln flash (bmap, read-back verify of every mapped range against the
#       bmap's digests; no whole-image hash)  vs  kiln flash --no-verify
#       (target <= 1.2x: verify overlapped with the write costs little),
#       and kiln flash --sha256 (also the whole image's sha256, the old
#       default) for what that hash costs,
#       vs bmaptool copy (checks the image against the bmap while reading
#       it, fsync, no read-back of the medium; target: kiln faster),
#       vs dd bs=4M conv=fsync + cmp (writes the holes too, then a
#       read-back compare through the page cache);
#   kiln flash to 4 targets at once  vs  4 sequential kiln flashes
#       (target <= 0.5x).
# The image: 2 GiB with 512 MiB of incompressible data in 8 ranges and
# holes between them, bmap from bmaptool create. Each job runs three
# times; the median is reported. Env: KILN (binary; default
# $CARGO_TARGET_DIR/release/kiln, built if missing), BENCH_TMP (scratch
# parent, default /var/tmp; ~10 GB free).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
kiln=${KILN:-$target/release/kiln}
[ -x "$kiln" ] || (cd "$repo" && cargo build --release -p kiln)
for t in bmaptool dd cmp /usr/bin/time python3; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y bmap-tools coreutils diffutils time python3" >&2; exit 1; }
done
w=$(mktemp -d "${BENCH_TMP:-/var/tmp}/kiln-flash.XXXXXX")
trap 'rm -rf "$w"' EXIT
img=$w/disk.img
truncate -s 2G "$img"
head -c 64M /dev/urandom > "$w/block"
for i in 0 3 6 9 12 15 18 21; do
  dd if="$w/block" of="$img" bs=64M seek="$i" conv=notrunc status=none
done
rm "$w/block"
bmaptool create -o "$img.bmap" "$img"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); image $(stat -c %s "$img") bytes, $(du -B1 "$img" | cut -f1) mapped"
: > "$w/results"
t3() { # name, command...: three runs (targets removed after each), median wall time
  local name=$1; shift
  : > "$w/runs"
  for _ in 1 2 3; do
    sync; /usr/bin/time -f "%e %M" -o "$w/time" "$@" >/dev/null 2>"$w/err" || { echo "$name failed:"; cat "$w/err"; exit 1; }
    cat "$w/time" >> "$w/runs"; rm -f "$w"/t?.img
  done
  local secs rss; read -r secs rss < <(sort -n -k1,1 "$w/runs" | sed -n 2p)
  printf '%-44s %8.2f s %9d KiB\n' "$name (median of 3)" "$secs" "$rss"
  printf '%s\t%s\n' "$name" "$secs" >> "$w/results"
}
t3 "kiln flash (bmap, verify)" "$kiln" flash -q --force "$img" "$w/t1.img"
t3 "kiln flash --no-verify" "$kiln" flash -q --force --no-verify "$img" "$w/t1.img"
t3 "kiln flash --sha256 (whole-image hash)" "$kiln" flash -q --force --sha256 "$img" "$w/t1.img"
t3 "bmaptool copy" bmaptool -q copy --bmap "$img.bmap" "$img" "$w/t1.img"
t3 "dd conv=fsync + cmp" sh -c 'dd if="$1" of="$2" bs=4M conv=fsync status=none && cmp "$1" "$2"' sh "$img" "$w/t1.img"
t3 "kiln flash, 4 targets at once" "$kiln" flash -q --force "$img" "$w/t1.img" "$w/t2.img" "$w/t3.img" "$w/t4.img"
t3 "kiln flash, 4 targets one after another" sh -c 'for i in 1 2 3 4; do "$1" flash -q --force "$2" "$3/t$i.img" || exit 1; done' sh "$kiln" "$img" "$w"
echo
python3 - "$w/results" <<'EOP'
import sys
r = {}
for line in open(sys.argv[1]):
    n, s = line.rstrip("\n").split("\t")
    r[n] = max(float(s), 0.01)
k = r["kiln flash (bmap, verify)"]
rows = [
    ("kiln flash+verify / kiln flash --no-verify", k / r["kiln flash --no-verify"], "<= 1.2", lambda v: v <= 1.2),
    ("kiln flash+verify / bmaptool copy", k / r["bmaptool copy"], "< 1", lambda v: v < 1),
    ("kiln flash --sha256 / kiln flash+verify", r["kiln flash --sha256 (whole-image hash)"] / k, "", None),
    ("kiln flash+verify / (dd conv=fsync + cmp)", k / r["dd conv=fsync + cmp"], "", None),
    ("4 targets at once / 4 sequential flashes", r["kiln flash, 4 targets at once"] / r["kiln flash, 4 targets one after another"], "<= 0.5", lambda v: v <= 0.5),
]
print("%-44s %8s  %-8s %s" % ("ratio", "value", "target", ""))
for name, v, tgt, ok in rows:
    print("%-44s %7.2fx  %-8s %s" % (name, v, tgt, "" if ok is None else ("met" if ok(v) else "MISSED")))
EOP
