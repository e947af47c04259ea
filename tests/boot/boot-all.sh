#!/usr/bin/env bash
# The boot proof (issue 5), for `make boot`: builds the demo OS (amd64 and
# armhf) and app, builds the images with kiln, boots each in QEMU (no
# network) and runs the negative checks. Exits non-zero if any check misses.
#
#   tests/boot/boot-all.sh [KILN]     KILN: the kiln binary (default: target/debug/kiln)
#
# Boots: nuc (raw) under SeaBIOS and OVMF, nuc as kiln's qcow2 output
# (issue 6) under OVMF, nuc-gpt under OVMF, nuc-gpt as VHDX under OVMF,
# nuc as monolithicSparse VMDK and as the VMDK inside its OVA under
# SeaBIOS (issue 19), fin-cm3 (armhf) under
# qemu-system-arm -M virt, and the negative checks (nuc without demo/db in
# the store, nuc with swap activation off).
# Base-image mode (issue 7): a nuc image of the OS without the app
# (bob-base.toml) is the "vendor image"; `kiln build --base` preloads the
# app into it (bob-preload.toml) and the result boots under SeaBIOS.
# SMOKE=1 (`make boot-smoke`): only nuc qcow2/OVMF, fin-cm3/virt and the
# swap-off negative check. SMOKE=amd64 (`make test`): only nuc qcow2/OVMF,
# nuc-gpt VHDX/OVMF and the base-mode image (no armhf OS build: it takes
# 15-22 min). SMOKE=vm (`make boot-vm`): the three VM-import boots.
#
# Env: OUT (default out/boot), SWAP_UNIT_WORKAROUND=1 boots copies whose
# swap unit is moved to /etc/systemd/system and linked from
# swap.target.wants/ (tests/boot/variant.sh swap-unit-symlink), for kiln
# versions that write the unit itself into swap.target.wants/ (systemd
# ignores it there). Default 0: boot kiln's images as they are.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
kiln=${1:-$repo/target/debug/kiln}
out=${OUT:-$repo/out/boot}
mkdir -p "$out"
[ -x "$kiln" ] || { echo "boot-all.sh: no kiln binary at $kiln (cargo build -p kiln)" >&2; exit 2; }

smoke=${SMOKE:-0}
set -e
t0=$(date +%s)
"$repo/demo/os/make-os.sh" amd64
t1=$(date +%s)
[ "$smoke" = amd64 ] || [ "$smoke" = vm ] || "$repo/demo/os/make-os.sh" armhf
t2=$(date +%s)
env -u OUT "$repo/demo/app/make-demo-app.sh" # (it reads OUT as its own output dir)
echo "boot-all.sh: demo OS build amd64 $((t1 - t0)) s, armhf $((t2 - t1)) s"
set +e

fails=0
build() { # board recipe image [has-swap-unit: 1|0] [kiln build options...]
  local board=$1 recipe=$2 img=$3 unit=${4:-1}
  shift $(( $# < 4 ? $# : 4 ))
  nice -n 10 "$kiln" -q build --board "$board" --recipe "$repo/demo/os/$recipe" -o "$out/$img" "$@" \
    || { echo "boot-all.sh: FAIL: kiln build --board $board --recipe $recipe" >&2; fails=$((fails + 1)); return 1; }
  if [ "${SWAP_UNIT_WORKAROUND:-0}" = 1 ] && [ "$unit" = 1 ]; then
    { "$here/variant.sh" "$out/$img" "$out/$img.fixed" swap-unit-symlink && mv "$out/$img.fixed" "$out/$img"; } \
      || { echo "boot-all.sh: FAIL: swap unit workaround on $img" >&2; fails=$((fails + 1)); return 1; }
  fi
}
check() { # boot.sh arguments...
  echo "=== boot.sh $*"
  "$here/boot.sh" "$@" || fails=$((fails + 1))
}

# The qcow2 a VM imports: with --format qcow2 alone kiln writes it in place
# (no raw file on the way). (The swap-unit workaround edits raw images only:
# no qcow2 boots then.)
if [ "${SWAP_UNIT_WORKAROUND:-0}" != 1 ] && [ "$smoke" != vm ]; then
  build nuc bob-boot.toml nuc-vm.img 0 --format qcow2 \
    && check --expect-hostname bob-boot "$out/nuc-vm.qcow2" uefi
fi
if [ "$smoke" = 0 ]; then
  # raw and qcow2 in one kiln pass (this qcow2 is made from the raw image).
  build nuc bob-boot.toml nuc.img 1 --format raw,qcow2 && {
    if [ "${SWAP_UNIT_WORKAROUND:-0}" != 1 ]; then
      check --expect-hostname bob-boot "$out/nuc.qcow2" uefi
    fi
    check --expect-hostname bob-boot "$out/nuc.img" bios
    check --expect-hostname bob-boot "$out/nuc.img" uefi
    "$here/variant.sh" "$out/nuc.img" "$out/nuc-nodb.img" drop-image demo/db \
      && check --expect-problem db-missing-image "$out/nuc-nodb.img" bios \
      || fails=$((fails + 1))
  }
fi
[ "$smoke" != 0 ] || { build nuc-gpt bob-boot-gpt.toml nuc-gpt.img && check --expect-hostname bob-boot "$out/nuc-gpt.img" uefi; }
# VM import (issue 19), each built alone so it is written straight from
# the disk stream: the Hyper-V generation 2 VHDX under OVMF, the
# monolithicSparse VMDK under SeaBIOS, and the VMDK an OVA holds (what an
# appliance import attaches) under SeaBIOS. (Not raw: no swap workaround.)
# `make test` (SMOKE=amd64) boots the VHDX; SMOKE=vm boots the three.
if [ "$smoke" != 1 ] && [ "${SWAP_UNIT_WORKAROUND:-0}" != 1 ]; then
  build nuc-gpt bob-boot-gpt.toml nuc-gpt-hv.img 0 --format vhdx \
    && check --expect-hostname bob-boot "$out/nuc-gpt-hv.vhdx" uefi
fi
if { [ "$smoke" = 0 ] || [ "$smoke" = vm ]; } && [ "${SWAP_UNIT_WORKAROUND:-0}" != 1 ]; then
  build nuc bob-boot.toml nuc-sparse.img 0 --format vmdk-sparse \
    && check --expect-hostname bob-boot "$out/nuc-sparse.sparse.vmdk" bios
  build nuc bob-boot.toml nuc-app.img 0 --format ova && {
    tar -xOf "$out/nuc-app.ova" bob-boot-disk1.vmdk >"$out/nuc-app-disk1.vmdk" \
      && check --expect-hostname bob-boot "$out/nuc-app-disk1.vmdk" bios \
      || fails=$((fails + 1))
  }
fi
if [ "$smoke" != amd64 ] && [ "$smoke" != vm ]; then
  build fin-cm3 bob-boot-fin.toml fin-cm3.img && check --expect-hostname bob-boot "$out/fin-cm3.img" virt
  build nuc bob-boot-noswap.toml nuc-noswap.img 0 && check --expect-problem no-swapfile "$out/nuc-noswap.img" bios
fi
if [ "$smoke" != 1 ] && [ "$smoke" != vm ]; then
  # The vendor image, then the app preloaded into it (the base's own swap
  # unit in rootA activates the swapfile kiln writes at the same path).
  build nuc bob-base.toml nuc-base.img 1 \
    && build nuc bob-preload.toml nuc-preloaded.img 0 --base "$out/nuc-base.img" \
    && check --expect-hostname bob-preloaded "$out/nuc-preloaded.img" bios
fi

if [ $fails = 0 ]; then echo "boot-all.sh: all boot checks passed"; else echo "boot-all.sh: $fails check(s) failed" >&2; fi
[ $fails = 0 ]
