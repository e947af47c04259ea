#!/usr/bin/env bash
# Cost of provenance (issue 18): the raw build signed (`[sign] key`, an
# unencrypted key from `kiln keygen`) with both SBOMs (the default) vs the
# same build with neither (`[output] sbom = false`, no key), on the
# realistic payload of bench/make-payload.sh (recipe bench/fin-bench.toml,
# fin-cm3 layout), warm page cache. The two builds alternate, RUNS times
# each; the medians of wall time and CPU (user+sys) are compared. Target:
# <= 1.05x.
# Env: KILN (binary; default $CARGO_TARGET_DIR/release/kiln, built if
# missing), RECIPE and BOARD (another recipe and board, e.g. RECIPE=
# recipes/bob-onprem.toml BOARD=fin-cm3 where the payload cannot be made),
# RUNS (default 5), BENCH_TMP (scratch parent, default /var/tmp).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
kiln=${KILN:-$target/release/kiln}
[ -x "$kiln" ] || (cd "$repo" && cargo build --release -p kiln)
recipe=$(realpath "${RECIPE:-$repo/bench/fin-bench.toml}")
board=${BOARD:-fin-cm3}
runs=${RUNS:-5}
command -v /usr/bin/time >/dev/null || { echo "missing /usr/bin/time: apt-get install -y time" >&2; exit 1; }
bash "$repo/demo/make-inputs.sh" >/dev/null
[ -n "${RECIPE:-}" ] || bash "$repo/bench/make-payload.sh"
w=$(mktemp -d "${BENCH_TMP:-/var/tmp}/kiln-provenance.XXXXXX")
# The recipe copies sit beside the recipe: its relative input paths are
# anchored at its directory.
rdir=$(dirname "$recipe")
signed=$rdir/.kiln-bench-provenance-signed.toml
plain=$rdir/.kiln-bench-provenance-plain.toml
trap 'rm -rf "$w" "$signed" "$plain"' EXIT
export SOURCE_DATE_EPOCH=1700000000
"$kiln" keygen -q --unencrypted -o "$w/release.key"
{ cat "$recipe"; printf '\n[sign]\nkey = { from-file = "%s" }\n' "$w/release.key"; } > "$signed"
if grep -q '^\[output\]$' "$recipe"; then
  sed '/^\[output\]$/a sbom = false' "$recipe" > "$plain"
else
  { cat "$recipe"; printf '\n[output]\nsbom = false\n'; } > "$plain"
fi
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); recipe $recipe, board $board, $runs runs each"
: > "$w/runs"
one() { # label, recipe, dir
  mkdir -p "$3"
  sync
  /usr/bin/time -f "%e %U %S" -o "$w/time" "$kiln" build -q --board "$board" --recipe "$2" -o "$3/fin.img" >/dev/null 2>"$w/err" \
    || { echo "$1 failed:"; cat "$w/err"; exit 1; }
  read -r secs usr sys < "$w/time"
  printf '%s\t%s\t%s\n' "$1" "$secs" "$(awk -v a="$usr" -v b="$sys" 'BEGIN {print a + b}')" >> "$w/runs"
}
for _ in $(seq 1 "$runs"); do
  one signed "$signed" "$w/s"
  [ -s "$w/s/SHA256SUMS.minisig" ] && [ -s "$w/s/fin.cdx.json" ] || { echo "the signed build wrote no signature or SBOM" >&2; exit 1; }
  rm -rf "$w/s"
  one plain "$plain" "$w/p"
  [ ! -e "$w/p/fin.cdx.json" ] && [ ! -e "$w/p/SHA256SUMS.minisig" ] || { echo "the plain build wrote an SBOM or a signature" >&2; exit 1; }
  rm -rf "$w/p"
done
python3 - "$w/runs" <<'EOP'
import statistics, sys
r = {"signed": ([], []), "plain": ([], [])}
for line in open(sys.argv[1]):
    name, secs, cpu = line.split("\t")
    r[name][0].append(float(secs))
    r[name][1].append(float(cpu))
m = {n: (statistics.median(w), statistics.median(c)) for n, (w, c) in r.items()}
print("%-44s %8.2f s %8.2f s CPU" % ("kiln build raw, signed + SBOMs (median)", *m["signed"]))
print("%-44s %8.2f s %8.2f s CPU" % ("kiln build raw, no key, sbom = false (median)", *m["plain"]))
wall = m["signed"][0] / max(m["plain"][0], 0.01)
cpu = m["signed"][1] / max(m["plain"][1], 0.01)
print("%-44s %7.3fx  %-8s %s" % ("signed + SBOMs / neither (wall)", wall, "<= 1.05", "met" if wall <= 1.05 else "MISSED"))
print("%-44s %7.3fx" % ("  same in CPU seconds (user+sys)", cpu))
EOP
