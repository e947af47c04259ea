#!/usr/bin/env bash
# How many times a build reads each input (issue 20: every input should be
# read and decompressed once per build). Runs two builds under strace
# (untimed): a raw image (positional: written in place) and a raw.xz only
# (streamed: a dry run, then the real run), and for every input file under
# INPUT_ROOT prints its size, the bytes the build read from it (read and
# pread64 return values, strace -y naming each descriptor's file) and
# bytes read / size, i.e. how many times it was read. Counted from outside
# the process, so the libraries need no hooks.
# Usage: bench/reads.sh [BOARD [RECIPE]] (default: fin-cm3 and
# bench/e2e.sh's realistic payload, bench/fin-bench.toml, when
# bench/make-payload.sh has made it, else the demo recipe bob-onprem). Env: KILN (binary; default
# $CARGO_TARGET_DIR/release/kiln, built if missing), INPUT_ROOT (default
# the repo's .cache), BENCH_TMP (scratch parent, default /var/tmp).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
kiln=${KILN:-$target/release/kiln}
[ -x "$kiln" ] || (cd "$repo" && cargo build --release -p kiln)
command -v strace >/dev/null || { echo "missing strace: apt-get install -y strace" >&2; exit 1; }
board=${1:-fin-cm3}
default=$repo/recipes/bob-onprem.toml
[ -f "$repo/.cache/bench/rootfs.tar" ] && default=$repo/bench/fin-bench.toml
recipe=${2:-$default}
root=$(realpath "${INPUT_ROOT:-$repo/.cache}")
[ -f "$recipe" ] && [ "$recipe" = "$repo/recipes/bob-onprem.toml" ] && bash "$repo/demo/make-inputs.sh" >/dev/null
w=$(mktemp -d "${BENCH_TMP:-/var/tmp}/kiln-reads.XXXXXX")
trap 'rm -rf "$w"' EXIT
export SOURCE_DATE_EPOCH=1700000000 KILN_PROFILES_DIR=$repo/board-profiles KILN_RECIPES_DIR=$repo/recipes
for job in raw xz; do
  mkdir -p "$w/$job"
  extra=(); [ "$job" = xz ] && extra=(--format raw --compress xz)
  strace -f -qq -y -e trace=read,pread64 -e signal=none -o "$w/$job.trace" \
    "$kiln" build -q --board "$board" --recipe "$recipe" "${extra[@]}" -o "$w/$job/img" >/dev/null
  rm -rf "${w:?}/$job"
done
python3 - "$root" "$w/raw.trace" "$w/xz.trace" <<'EOP'
import os, re, sys
root = sys.argv[1] + "/"
# A call another thread interrupts is split in two lines: "<unfinished
# ...>" (with the file) and "<... read resumed> ... = N" (with the count).
call = re.compile(r'^(\d+)\s+(?:read|pread64)\(\d+<([^>]*)>,')
done = re.compile(r'\)\s+=\s+(\d+)\s*$')
resumed = re.compile(r'^(\d+)\s+<\.\.\. (?:read|pread64) resumed>')
counts = []
for path in sys.argv[2:]:
    c, pending = {}, {}
    for l in open(path, errors="replace"):
        m, r, d = call.match(l), resumed.match(l), done.search(l)
        if m and l.rstrip().endswith("<unfinished ...>"):
            pending[m.group(1)] = m.group(2)
            continue
        f = m.group(2) if m else (pending.pop(r.group(1), None) if r else None)
        if f and d and f.startswith(root):
            c[f] = c.get(f, 0) + int(d.group(1))
    counts.append(c)
files = sorted(set(counts[0]) | set(counts[1]))
print("%-60s %12s  %-9s %-9s" % ("input (under %s)" % root, "bytes", "raw", "raw.xz"))
worst = [0.0, 0.0]
for f in files:
    size = os.path.getsize(f)
    if size == 0:
        continue
    times = [c.get(f, 0) / size for c in counts]
    worst = [max(a, b) for a, b in zip(worst, times)]
    name = re.sub(r"([0-9a-f]{12})[0-9a-f]{52}", r"\1...", f[len(root):])[-60:]
    print("%-60s %12d  %7.2fx  %7.2fx" % (name, size, times[0], times[1]))
print("%-60s %12s  %7.2fx  %7.2fx  (target: 1x)" % ("most times any input is read", "", worst[0], worst[1]))
EOP
