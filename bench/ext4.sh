#!/usr/bin/env bash
# Benchmark of the kiln-ext4 writer against `mke2fs -t ext4 -d` on the
# same input, side by side in one run (warm page cache for both):
#   1. rootfs : a real Debian rootfs (mmdebstrap tar, cached in
#               .cache/ext4/) plus a generated ~30k-file, ~500 MiB tree,
#               extracted to one directory; mke2fs -d from the directory,
#               kiln from the same directory and kiln straight from a tar.
#   2. bigdir : one directory with 50,000 entries.
# Images are written to BENCH_OUT (default /dev/shm when it has room, so
# the comparison measures the writers, not this machine's disk writeback,
# which makes both take 10-100 s here with huge run-to-run noise).
# Every output is checked with `e2fsck -fn` (not timed).
# Prints wall seconds, peak RSS (MiB) and ratio = mke2fs time / kiln time
# (> 1 means kiln is faster).
# Env: BENCH_DIR (default .cache/ext4/bench), EXTRA_FILES (30000),
#      EXTRA_MB (500), SKIP_BUILD=1.
# Needs: e2fsprogs, time, mmdebstrap (first run only), tar, python3.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CACHE="$ROOT/.cache/ext4"
DIR="${BENCH_DIR:-$CACHE/bench}"
EXTRA_FILES="${EXTRA_FILES:-30000}"
EXTRA_MB="${EXTRA_MB:-500}"

for t in mke2fs e2fsck /usr/bin/time tar python3; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y e2fsprogs time tar python3" >&2; exit 1; }
done

[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -q -p kiln-ext4 --example mkfs --manifest-path "$ROOT/Cargo.toml"
BIN="$CARGO_TARGET_DIR/release/examples/mkfs"

mkdir -p "$CACHE" "$DIR"
if [ -z "${BENCH_OUT:-}" ] && [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)" -gt $((8 << 20)) ] 2>/dev/null; then
  BENCH_OUT=/dev/shm/kiln-ext4-bench
fi
OUT="${BENCH_OUT:-$DIR}"
mkdir -p "$OUT"
trap 'rm -f "$OUT/m.img" "$OUT/k.img" "$OUT/kt.img"' EXIT
TAR="$CACHE/debian-rootfs.tar"
if [ ! -f "$TAR" ]; then
  command -v mmdebstrap >/dev/null || { echo "missing mmdebstrap: apt-get install -y mmdebstrap" >&2; exit 1; }
  echo "building Debian rootfs tar with mmdebstrap (once) ..." >&2
  mmdebstrap --variant=minbase --format=tar \
    --include=systemd,udev,perl,python3,python3-pip,iproute2,openssh-server,curl,vim-tiny,less,kmod,procps,git,gcc,g++,make,locales,manpages,bash-completion,python3-numpy \
    bookworm "$TAR.tmp" http://deb.debian.org/debian >&2
  mv "$TAR.tmp" "$TAR"
fi

SRC="$DIR/rootfs"
if [ ! -f "$DIR/rootfs.done" ]; then
  echo "extracting rootfs and generating ${EXTRA_FILES} extra files (${EXTRA_MB} MiB) ..." >&2
  rm -rf "$SRC"; mkdir -p "$SRC"
  tar --numeric-owner --xattrs --xattrs-include='*' -xpf "$TAR" -C "$SRC"
  python3 - "$SRC/srv/extra" "$EXTRA_FILES" "$EXTRA_MB" <<'PY'
import os, random, sys
root, n, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)
blob = rng.randbytes(1 << 20)
avg = mb * (1 << 20) // n
for i in range(n):
    d = os.path.join(root, "d%03d" % (i % 300))
    os.makedirs(d, exist_ok=True)
    size = rng.randint(0, 2 * avg)
    with open(os.path.join(d, "f%05d.bin" % i), "wb") as f:
        while size > 0:
            off = rng.randint(0, len(blob) - 1)
            chunk = blob[off:off + size]
            f.write(chunk)
            size -= len(chunk)
PY
  tar --numeric-owner --xattrs --xattrs-include='*' --sort=name -cf "$DIR/rootfs.tar" -C "$SRC" .
  touch "$DIR/rootfs.done"
fi
BIG="$DIR/bigdir"
if [ ! -f "$DIR/bigdir.done" ]; then
  rm -rf "$BIG"; mkdir -p "$BIG/big"
  python3 -c "
import os
for i in range(50000):
    open(os.path.join('$BIG/big', 'entry-with-a-typical-name-%06d' % i), 'w').close()
"
  touch "$DIR/bigdir.done"
fi

# Same size for both writers: used bytes * 1.3 + 256 MiB, in whole MiB.
size_for() { echo $(( ( $(du -sk --apparent-size "$1" | cut -f1) * 13 / 10 / 1024 + 256 ) )); }

# run NAME CMD... -> prints "NAME secs rss_mib"
run() {
  local name="$1"; shift
  local tf; tf="$(mktemp)"
  /usr/bin/time -f "%e %M" -o "$tf" "$@" >/dev/null 2>"$tf.err" || { cat "$tf.err" >&2; exit 1; }
  read -r secs kb < "$tf"
  rm -f "$tf" "$tf.err"
  echo "$name $secs $((kb / 1024))"
}

check() { e2fsck -fn "$1" >/dev/null 2>&1 || { echo "e2fsck -fn $1 FAILED" >&2; e2fsck -fn "$1" | head -20 >&2; exit 1; }; }

printf '%-8s %-22s %8s %9s %7s\n' input writer seconds peak_MiB ratio
for case in rootfs bigdir; do
  if [ $case = rootfs ]; then
    in="$SRC"; mib=$(size_for "$in"); m_ratio=(); k_ratio=()
  else
    # 50k inodes: one inode per 8 KiB, 1 GiB.
    in="$BIG"; mib=1024; m_ratio=(-i 8192); k_ratio=(--inode-ratio 8192)
  fi
  files=$(find "$in" | wc -l)
  tar -cf - -C "$in" . > /dev/null 2>&1 || true  # warm the page cache
  rm -f "$OUT/m.img" "$OUT/k.img" "$OUT/kt.img"
  truncate -s "${mib}M" "$OUT/m.img"
  read -r _ m_s m_r < <(run mke2fs mke2fs -q -F -t ext4 -b 4096 "${m_ratio[@]}" -d "$in" "$OUT/m.img")
  check "$OUT/m.img"; rm -f "$OUT/m.img"
  read -r _ k_s k_r < <(run kiln "$BIN" --source "$in" --size $((mib << 20)) "${k_ratio[@]}" "$OUT/k.img")
  check "$OUT/k.img"; rm -f "$OUT/k.img"
  printf '%-8s %-22s %8s %9s %7s\n' "$case" "mke2fs -d (dir)" "$m_s" "$m_r" "1.00"
  printf '%-8s %-22s %8s %9s %7s\n' "$case" "kiln (dir)" "$k_s" "$k_r" "$(python3 -c "print(f'{$m_s/max($k_s,0.01):.2f}')")"
  if [ $case = rootfs ]; then
    read -r _ t_s t_r < <(run kiln-tar "$BIN" --source "$DIR/rootfs.tar" --size $((mib << 20)) "$OUT/kt.img")
    check "$OUT/kt.img"; rm -f "$OUT/kt.img"
    printf '%-8s %-22s %8s %9s %7s\n' "$case" "kiln (tar)" "$t_s" "$t_r" "$(python3 -c "print(f'{$m_s/max($t_s,0.01):.2f}')")"
  fi
  echo "# $case: $files entries, ${mib} MiB filesystem" >&2
done
