#!/usr/bin/env bash
# Benchmarks of kiln-artifact (and kiln-flash) against the standard tools, same inputs:
#   - xz   : ours (liblzma MT) vs `xz -T0` at the same preset
#   - gzip : ours (flate2 + zlib-rs) vs `gzip` (and `pigz` if installed)
#   - zstd : ours (zstdmt) vs `zstd -T0` at the same level
#   - flash: ours (bmap, fsync, read-back verify) vs `bmaptool copy` to a file
# Prints a table: wall seconds, peak RSS, throughput ratio (tool time / ours;
# > 1 means kiln is faster). Warm page cache for both sides.
#
# Env: BENCH_MB (payload MiB, default 256), XZ_MB (xz input MiB, default 64),
#      XZ_PRESET (6), GZ_LEVEL (6), ZST_LEVEL (3), FLASH_GB (sparse image GiB, 2),
#      BENCH_DIR (scratch dir, default a fresh mktemp -d), KEEP=1 keeps it.
# Needs: xz-utils gzip zstd bmap-tools time (Debian packages).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH_MB="${BENCH_MB:-256}"
XZ_MB="${XZ_MB:-64}"
XZ_PRESET="${XZ_PRESET:-6}"
GZ_LEVEL="${GZ_LEVEL:-6}"
ZST_LEVEL="${ZST_LEVEL:-3}"
FLASH_GB="${FLASH_GB:-2}"
THREADS="$(nproc)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

for t in xz gzip zstd bmaptool /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y xz-utils gzip zstd bmap-tools time" >&2; exit 1; }
done

# liblzma-sys compiles xz without the fast paths that xz's configure
# enables on x86-64 (unaligned word access for match lengths, byte-swap
# builtins, SSE2). Same output bytes, ~15-20 % less CPU for xz -6.
# Recommended for the whole workspace in .cargo/config.toml [env].
if [ "$(uname -m)" = x86_64 ]; then
  XZ_CFLAGS="-DTUKLIB_FAST_UNALIGNED_ACCESS=1 -DHAVE___BUILTIN_BSWAPXX=1 -DHAVE___BUILTIN_ASSUME_ALIGNED=1 -DHAVE_IMMINTRIN_H=1 -DHAVE__MM_MOVEMASK_EPI8=1"
  export CFLAGS="${CFLAGS:+$CFLAGS }$XZ_CFLAGS"
fi
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -q -p kiln-artifact -p kiln-flash --examples --manifest-path "$ROOT/Cargo.toml"
EX="$CARGO_TARGET_DIR/release/examples"

DIR="${BENCH_DIR:-$(mktemp -d /var/tmp/kiln-artifact-bench.XXXXXX)}"
mkdir -p "$DIR"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$DIR"' EXIT

# Realistic payload: system files (binaries, libraries, text) as a tar,
# cut to size; deterministic order.
if [ ! -s "$DIR/payload" ]; then
  tar -C / --sort=name -cf - usr/lib usr/share usr/bin 2>/dev/null \
    | head -c "$((BENCH_MB << 20))" > "$DIR/payload" || true
fi
head -c "$((XZ_MB << 20))" "$DIR/payload" > "$DIR/xzin"

declare -a ROWS
measure() { # cmd... ; sets SECS (wall), CPU (user+sys) and RSS_MB
  local out
  /usr/bin/time -o "$DIR/time.out" -f '%e %U %S %M' "$@" >/dev/null 2>"$DIR/cmd.err" \
    || { echo "failed: $*" >&2; cat "$DIR/cmd.err" >&2; exit 1; }
  out="$(tail -1 "$DIR/time.out")"
  read -r SECS u s k <<<"$out"
  CPU="$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')"
  RSS_MB="$(( k / 1024 ))"
}
row() { ROWS+=("$(printf '%-40s %8s %8s %8s %8s' "$1" "$2" "$3" "$4" "$5")"); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }'; }

# xz
measure "$EX/compress" "$DIR/xzin" "$DIR/ours.xz" xz "$XZ_PRESET" "$THREADS"; OS=$SECS; OR=$RSS_MB; OC=$CPU
measure sh -c "xz -T0 -$XZ_PRESET -c '$DIR/xzin' > '$DIR/cli.xz'"; CS=$SECS; CR=$RSS_MB; CC=$CPU
xz -t "$DIR/ours.xz"
same=$(cmp -s "$DIR/ours.xz" "$DIR/cli.xz" && echo "identical bytes" || echo "bytes differ")
row "xz -$XZ_PRESET, ${XZ_MB} MiB: kiln (+2 sha256)" "$OS" "$OC" "$OR" "$(ratio "$OS" "$CS")"
row "xz -$XZ_PRESET: xz -T0 ($same)" "$CS" "$CC" "$CR" "1.00"

# gzip
measure "$EX/compress" "$DIR/payload" "$DIR/ours.gz" gz "$GZ_LEVEL"; OS=$SECS; OR=$RSS_MB; OC=$CPU
measure sh -c "gzip -$GZ_LEVEL -c '$DIR/payload' > '$DIR/cli.gz'"; CS=$SECS; CR=$RSS_MB; CC=$CPU
gzip -t "$DIR/ours.gz"
row "gzip -$GZ_LEVEL, ${BENCH_MB} MiB: kiln (+2 sha256)" "$OS" "$OC" "$OR" "$(ratio "$OS" "$CS")"
measure "$EX/compress" "$DIR/payload" "$DIR/ours2.gz" gz "$GZ_LEVEL" 1 nodigest
row "gzip: kiln codec only" "$SECS" "$CPU" "$RSS_MB" "$(ratio "$SECS" "$CS")"
row "gzip -$GZ_LEVEL: gzip" "$CS" "$CC" "$CR" "1.00"
if command -v pigz >/dev/null; then
  measure sh -c "pigz -$GZ_LEVEL -c '$DIR/payload' > '$DIR/pigz.gz'"
  row "gzip -$GZ_LEVEL: pigz (kiln ratio)" "$SECS" "$CPU" "$RSS_MB" "$(ratio "$OS" "$SECS")"
fi

# zstd
measure "$EX/compress" "$DIR/payload" "$DIR/ours.zst" zst "$ZST_LEVEL" "$THREADS"; OS=$SECS; OR=$RSS_MB; OC=$CPU
measure sh -c "zstd -q -T0 -$ZST_LEVEL -c '$DIR/payload' > '$DIR/cli.zst'"; CS=$SECS; CR=$RSS_MB; CC=$CPU
zstd -q -t "$DIR/ours.zst"
row "zstd -$ZST_LEVEL, ${BENCH_MB} MiB: kiln (+2 sha256)" "$OS" "$OC" "$OR" "$(ratio "$OS" "$CS")"
measure "$EX/compress" "$DIR/payload" "$DIR/ours2.zst" zst "$ZST_LEVEL" "$THREADS" nodigest
row "zstd: kiln codec only" "$SECS" "$CPU" "$RSS_MB" "$(ratio "$SECS" "$CS")"
row "zstd -$ZST_LEVEL: zstd -T0" "$CS" "$CC" "$CR" "1.00"

# flash: sparse image with the payload in four extents, bmap, to a file.
IMG="$DIR/disk.img"
rm -f "$IMG"; truncate -s "${FLASH_GB}G" "$IMG"
q=$((BENCH_MB / 4))
for i in 0 1 2 3; do
  dd if="$DIR/payload" of="$IMG" bs=1M skip=$((i * q)) seek=$((i * (FLASH_GB * 1024 / 4))) count=$q conv=notrunc,sparse status=none
done
"$EX/bmap" "$IMG" "$DIR/disk.bmap" >/dev/null
rm -f "$DIR/t1.img" "$DIR/t2.img" "$DIR/t3.img"
measure "$EX/flash" "$IMG" "$DIR/t1.img" --bmap "$DIR/disk.bmap" --force; OS=$SECS; OR=$RSS_MB; OC=$CPU
measure "$EX/flash" "$IMG" "$DIR/t3.img" --bmap "$DIR/disk.bmap" --force --no-verify; NS=$SECS; NR=$RSS_MB; NC=$CPU
measure bmaptool -q copy --bmap "$DIR/disk.bmap" "$IMG" "$DIR/t2.img"; CS=$SECS; CR=$RSS_MB; CC=$CPU
cmp "$IMG" "$DIR/t1.img"; cmp "$IMG" "$DIR/t2.img"
row "flash ${FLASH_GB} GiB/${BENCH_MB} MiB mapped: kiln" "$OS" "$OC" "$OR" "$(ratio "$OS" "$CS")"
row "flash: kiln without read-back" "$NS" "$NC" "$NR" "$(ratio "$NS" "$CS")"
row "flash: bmaptool copy" "$CS" "$CC" "$CR" "1.00"

echo
echo "kiln-artifact bench ($(nproc) cores, $(date -u +%F))"
printf '%-40s %8s %8s %8s %8s\n' "job" "wall s" "cpu s" "RSS MiB" "speedup"
printf '%s\n' "${ROWS[@]}"
echo "(speedup = tool wall seconds / kiln wall seconds; > 1: kiln faster. cpu s = user+sys of the row."
echo " The machine is shared: compare cpu s too when the load is high.)"
