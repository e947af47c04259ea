#!/usr/bin/env bash
# VM import formats benchmark (make bench, issue 19): whole `kiln build`
# runs, warm page cache, median of three, on
#   - the demo image: recipes/bob-onprem.toml, board nuc-gpt (the UEFI
#     board Hyper-V Gen 2 and the OVA's EFI firmware are for);
#   - the bootable demo appliance (demo/os/bob-boot.toml: a Debian root
#     filesystem and the demo app, what `make image` builds), board
#     nuc (its recipe carries BIOS boot code), when demo/os/make-os.sh has cached its OS;
#   - the realistic payload of bench/make-payload.sh (bench/fin-bench.toml,
#     board fin-cm3, as bench/e2e.sh).
# For each: kiln build raw, --format vhdx, --format ova, and `qemu-img
# convert -O vhdx -o subformat=dynamic` of the raw image; prints wall time,
# peak RSS and CPU seconds, then the ratios (target: VHDX and OVA builds
# <= 1.1x the raw build). Outputs are checked: the VHDX by `qemu-img
# compare` with the raw image, the OVA's VMDK (extracted) too.
# Env: KILN (binary; default $CARGO_TARGET_DIR/release/kiln, built if
# missing), BENCH_TMP (scratch parent, default /var/tmp), PAYLOAD=0 skips
# the realistic payload.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
kiln=${KILN:-$target/release/kiln}
[ -x "$kiln" ] || (cd "$repo" && cargo build --release -p kiln)
for t in qemu-img tar /usr/bin/time python3; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y qemu-utils tar time python3" >&2; exit 1; }
done
bash "$repo/demo/make-inputs.sh" >/dev/null
w=$(mktemp -d "${BENCH_TMP:-/var/tmp}/kiln-vm.XXXXXX")
trap 'rm -rf "$w"' EXIT
export SOURCE_DATE_EPOCH=1700000000
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); scratch $w"

t3() { # name, after, command...: three runs (`after` runs after each),
  # records the median wall time (with that run's CPU) and the largest RSS.
  local name=$1 after=$2; shift 2
  : > "$w/runs"
  for _ in 1 2 3; do
    sync; /usr/bin/time -f "%e %M %U %S" -o "$w/time" "$@" >/dev/null 2>"$w/err" || { echo "$name failed:"; cat "$w/err"; exit 1; }
    cat "$w/time" >> "$w/runs"; eval "$after"
  done
  local rss; rss=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$w/runs")
  sort -n -k1,1 "$w/runs" | sed -n 2p > "$w/time"
  local secs _ usr sys; read -r secs _ usr sys < "$w/time"
  local cpu; cpu=$(awk -v a="$usr" -v b="$sys" 'BEGIN {print a + b}')
  printf '%-44s %8.2f s %9d KiB %8.2f s CPU\n' "$name (median of 3)" "$secs" "$rss" "$cpu"
  printf '%s\t%s\t%s\t%s\n' "$name" "$secs" "$rss" "$cpu" >> "$w/results"
}

case_run() { # label, board, recipe
  local label=$1 board=$2 recipe=$3 k="$w/$1"
  mkdir -p "$k"
  t3 "$label: kiln build raw" 'rm -rf "$k"/*' \
    "$kiln" build -q --board "$board" --recipe "$recipe" -o "$k/vm.img"
  t3 "$label: kiln build vhdx" 'rm -rf "$k"/*' \
    "$kiln" build -q --board "$board" --recipe "$recipe" --format vhdx -o "$k/vm.img"
  t3 "$label: kiln build ova" 'rm -rf "$k"/*' \
    "$kiln" build -q --board "$board" --recipe "$recipe" --format ova -o "$k/vm.img"
  # The outputs, checked against the raw image of one build of all three.
  "$kiln" build -q --board "$board" --recipe "$recipe" --format raw,vhdx,ova -o "$k/vm.img"
  qemu-img compare -q -f raw -F vhdx "$k/vm.img" "$k/vm.vhdx"
  local disk; disk=$(tar -tf "$k/vm.ova" | grep -- '-disk1\.vmdk$')
  tar -xOf "$k/vm.ova" "$disk" > "$k/ova.vmdk"
  qemu-img compare -q -f raw -F vmdk "$k/vm.img" "$k/ova.vmdk"
  echo "$label: image $(stat -c %s "$k/vm.img") bytes ($(du -B1 "$k/vm.img" | cut -f1) allocated), vhdx $(stat -c %s "$k/vm.vhdx"), ova $(stat -c %s "$k/vm.ova") bytes; qemu-img compare: identical"
  rm -f "$k/vm.vhdx" "$k/vm.ova" "$k/ova.vmdk"
  t3 "$label: qemu-img convert raw -> vhdx" 'rm -f "$w/q.vhdx"' \
    qemu-img convert -f raw -O vhdx -o subformat=dynamic "$k/vm.img" "$w/q.vhdx"
  rm -rf "$k"
}

sed -e "s|\"\.\./|\"$repo/|g" -e "s|\"bob-onprem/|\"$repo/recipes/bob-onprem/|g" \
  "$repo/recipes/bob-onprem.toml" > "$w/demo.toml"
case_run demo nuc-gpt "$w/demo.toml"
if [ -f "$repo/.cache/demo-os/amd64/rootfs.tar" ]; then
  case_run appliance nuc "$repo/demo/os/bob-boot.toml"
else
  echo "appliance: .cache/demo-os not built (bash demo/os/make-os.sh amd64): left out"
fi
if [ "${PAYLOAD:-1}" != 0 ]; then
  bash "$repo/bench/make-payload.sh"
  case_run payload fin-cm3 "$repo/bench/fin-bench.toml"
fi

echo
python3 - "$w/results" <<'EOP'
import sys
r = {}
for line in open(sys.argv[1]):
    n, s, m, c = line.rstrip("\n").split("\t")
    r[n] = (max(float(s), 0.01), int(m), float(c))
print("%-48s %8s  %-8s %s" % ("ratio", "value", "target", ""))
order = {"demo": 0, "appliance": 1, "payload": 2}
for label in sorted({n.split(":")[0] for n in r}, key=lambda l: order.get(l, 3)):
    s = lambda n: r["%s: %s" % (label, n)][0]
    raw, vhdx, ova = s("kiln build raw"), s("kiln build vhdx"), s("kiln build ova")
    conv = s("qemu-img convert raw -> vhdx")
    for name, v, tgt in [
        ("kiln vhdx build / kiln raw build", vhdx / raw, 1.1),
        ("kiln ova build / kiln raw build", ova / raw, 1.1),
        ("(kiln raw + qemu-img convert vhdx) / kiln vhdx", (raw + conv) / vhdx, None),
        ("qemu-img convert vhdx alone / kiln vhdx build", conv / vhdx, None),
    ]:
        verdict = "" if tgt is None else ("met" if v <= tgt else "MISSED")
        print("%-48s %7.2fx  %-8s %s" % ("%s: %s" % (label, name), v, "" if tgt is None else "<= %s" % tgt, verdict))
EOP
