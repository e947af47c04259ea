#!/usr/bin/env bash
# Boots a kiln image in QEMU with no network device and checks the report
# line the demo OS (demo/os) prints on the serial console:
#
#   KILN-BOOT-REPORT result=PASS|FAIL swap=... hostname=... services=...
#     pulled=N engine=... uptime=...s problems=... KILN-END
#
# Usage: tests/boot/boot.sh [options] IMAGE MODE
#   MODE: bios  (qemu-system-x86_64 -M q35, SeaBIOS)
#         uefi  (qemu-system-x86_64 -M q35, OVMF from the `ovmf` package)
#         virt  (qemu-system-arm -M virt, cortex-a15: the Fin image's own
#                armmp kernel, initrd and cmdline.txt from its boot
#                partition, the image as a virtio disk)
#         raspi2b (qemu-system-arm -M raspi2b: the same, with the image's
#                CM3 device tree and the image as the SD card)
#         QEMU's raspi machines cannot run the Pi GPU firmware (start.elf),
#         so both arm modes load config.txt's kernel=/initramfs itself.
# IMAGE: raw, or kiln's qcow2 / vmdk / vhd output (format from qemu-img info).
# Options:
#   --expect-problem P  negative check: pass only if the report is FAIL and
#                       lists problem P (e.g. no-swapfile, api-missing-image)
#   --allow-problem P   tolerate problem P in a FAIL report (repeatable),
#                       e.g. no-apps.json for an image without an app
#   --expect-hostname H the report's hostname must be H
#   --timeout S         seconds to wait for the report (default 900)
#   --log FILE          serial log (default IMAGE.MODE.serial.log)
# Env: SMP (default 2), MEM (MiB, default 1024), KVM=auto|0|1 (default
# auto: KVM only when /dev/kvm exists and a short probe boot reaches the
# kernel; nested virtualization here hangs in the firmware, so TCG).
# The image is never modified (QEMU snapshot=on: writes go to a temp file).
# Prints the report line and the boot time (QEMU start to report, seconds);
# exit 0 on pass, 1 on any miss, 2 on usage or missing tools.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
expect_problem='' expect_host='' timeout=900 log='' allow=()
while [ $# -gt 0 ]; do
  case $1 in
    --expect-problem) expect_problem=$2; shift 2 ;;
    --allow-problem) allow+=("$2"); shift 2 ;;
    --expect-hostname) expect_host=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    -h|--help) usage ;;
    --*) echo "boot.sh: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# = 2 ] || usage
image=$1 mode=$2
[ -r "$image" ] || { echo "boot.sh: cannot read image $image" >&2; exit 2; }
log=${log:-$image.$mode.serial.log}
smp=${SMP:-2} mem=${MEM:-1024}

need() { # tool package
  command -v "$1" >/dev/null || { echo "boot.sh: FAIL: $1 missing (apt-get install -y -t bookworm-backports $2)" >&2; exit 2; }
}

tmp=$(mktemp -d /var/tmp/kiln-boot.XXXXXX)
qpid=''
cleanup() {
  if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then kill "$qpid" 2>/dev/null || true; wait "$qpid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# raw, or what kiln --format wrote (qcow2, vmdk, vpc): as a VM would import it.
need qemu-img qemu-utils
fmt=$(qemu-img info "$image" 2>/dev/null | sed -n 's/^file format: //p')
[ -n "$fmt" ] || { echo "boot.sh: qemu-img cannot read $image" >&2; exit 2; }

case $mode in
  bios|uefi)
    need qemu-system-x86_64 qemu-system-x86
    qemu=(qemu-system-x86_64 -M q35 -m "$mem" -smp "$smp" -nic none -display none -no-reboot
          -monitor none -drive "file=$image,format=$fmt,if=virtio,snapshot=on")
    if [ "$mode" = uefi ]; then
      code=/usr/share/OVMF/OVMF_CODE_4M.fd vars=/usr/share/OVMF/OVMF_VARS_4M.fd
      [ -r "$code" ] && [ -r "$vars" ] || { echo "boot.sh: FAIL: $code missing (apt-get install -y ovmf)" >&2; exit 2; }
      cp "$vars" "$tmp/vars.fd"
      qemu+=(-drive "if=pflash,format=raw,readonly=on,file=$code" -drive "if=pflash,format=raw,file=$tmp/vars.fd")
    fi
    ;;
  raspi2b|virt)
    # What the Pi firmware would load, read from the image's boot
    # partition (p1): config.txt's kernel= and initramfs, cmdline.txt.
    need qemu-system-arm qemu-system-arm
    need mcopy mtools
    need sfdisk fdisk
    disk=$image
    if [ "$fmt" != raw ]; then
      qemu-img convert -O raw "$image" "$tmp/disk.raw"; disk=$tmp/disk.raw
    fi
    p1=$(sfdisk -d "$disk" | awk -F'[=,]' '/^[^ ].* : start=/ { gsub(/ /, "", $2); print $2; exit }')
    [ -n "$p1" ] || { echo "boot.sh: no partition 1 in $image" >&2; exit 2; }
    bootfile() { MTOOLS_SKIP_CHECK=1 mcopy -n -i "$disk@@$((p1 * 512))" "::$1" "$tmp/$1" \
      || { echo "boot.sh: FAIL: $1 missing on the boot partition" >&2; exit 1; }; }
    bootfile config.txt; bootfile cmdline.txt
    cfg() { sed -n "s/^$1[= ]\([^ ]*\).*/\1/p" "$tmp/config.txt" | tail -n1; }
    kernel=$(cfg kernel) initrd=$(cfg initramfs) dtb=$(cfg device_tree)
    [ -n "$kernel" ] || { echo "boot.sh: FAIL: config.txt names no kernel" >&2; exit 1; }
    bootfile "$kernel"
    qemu=(qemu-system-arm -m "$mem" -nic none -display none -no-reboot -monitor none
          -kernel "$tmp/$kernel" -append "$(tr -d '\n' < "$tmp/cmdline.txt")")
    if [ -n "$initrd" ]; then bootfile "$initrd"; qemu+=(-initrd "$tmp/$initrd"); fi
    if [ "$mode" = virt ]; then
      qemu+=(-M virt -cpu cortex-a15 -smp "$smp"
             -drive "file=$image,format=$fmt,if=none,id=disk,snapshot=on" -device virtio-blk-device,drive=disk)
    else
      # The SD card must be a power of two in size: a qcow2 overlay of that
      # size on top of the image (which stays untouched).
      [ -n "$dtb" ] || { echo "boot.sh: FAIL: config.txt names no device_tree" >&2; exit 1; }
      bootfile "$dtb"
      size=$(qemu-img info --output=json "$image" | sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p' | head -n1)
      sd=1; while [ "$sd" -lt "$size" ]; do sd=$((sd * 2)); done
      qemu-img create -q -f qcow2 -b "$(realpath "$image")" -F "$fmt" "$tmp/sd.qcow2" "$sd"
      qemu+=(-M raspi2b -dtb "$tmp/$dtb" -drive "file=$tmp/sd.qcow2,format=qcow2,if=sd")
    fi
    ;;
  *) echo "boot.sh: unknown mode $mode" >&2; usage ;;
esac

# KVM only where a probe boot gets past the firmware into GRUB/Linux.
accel=(-accel tcg)
kvm=${KVM:-auto}
case $mode in raspi2b|virt) kvm=0 ;; esac # an x86 host cannot run armv7 guests with KVM
if [ "$kvm" != 0 ] && [ -w /dev/kvm ]; then
  if [ "$kvm" = 1 ]; then
    accel=(-accel kvm -cpu host)
  else
    : > "$tmp/probe.log"
    nice -n 10 "${qemu[@]}" -accel kvm -cpu host -serial "file:$tmp/probe.log" &
    ppid=$!
    for _ in $(seq 20); do
      sleep 1
      if grep -aq -e 'kiln: booting' -e 'Linux version' "$tmp/probe.log"; then accel=(-accel kvm -cpu host); break; fi
    done
    kill "$ppid" 2>/dev/null || true; wait "$ppid" 2>/dev/null || true
  fi
fi
cpus=$smp; [ "$mode" != raspi2b ] || cpus=1 # the CM3 tree's CPUs 1-3 are not started by a 32-bit kernel
echo "boot.sh: $mode boot of $image ($fmt) with ${accel[1]}, $cpus CPU(s), $mem MiB, no network; serial log $log"

: > "$log"
start=$(date +%s.%N)
nice -n 10 "${qemu[@]}" "${accel[@]}" -serial "file:$log" &
qpid=$!
line=''
while :; do
  # Only a complete line counts: the guest ends it with KILN-END.
  line=$(grep -a -m1 -o 'KILN-BOOT-REPORT .* KILN-END' "$log" | tr -d '\r' || true)
  [ -z "$line" ] || break
  if ! kill -0 "$qpid" 2>/dev/null; then echo "boot.sh: FAIL: QEMU exited before the report" >&2; break; fi
  if awk -v n="$(date +%s.%N)" -v s="$start" -v t="$timeout" 'BEGIN { exit !(n - s > t) }'; then
    echo "boot.sh: FAIL: no report within ${timeout}s" >&2; break
  fi
  sleep 1
done
end=$(date +%s.%N)
secs=$(awk -v e="$end" -v s="$start" 'BEGIN { printf "%.1f", e - s }')
if [ -z "$line" ]; then
  echo "--- last lines of $log:" >&2; tail -n 40 "$log" | tr -d '\r' >&2
  exit 1
fi
echo "$line"
echo "boot time: ${secs}s to report (${accel[1]}, mode $mode)"

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
result=$(field result) problems=$(field problems) host=$(field hostname)
fail=0
if [ -n "$expect_host" ] && [ "$host" != "$expect_host" ]; then
  echo "boot.sh: FAIL: hostname $host, expected $expect_host" >&2; fail=1
fi
if [ -n "$expect_problem" ]; then
  case ",$problems," in
    *",$expect_problem,"*) echo "boot.sh: negative check passed: problem $expect_problem reported" ;;
    *) echo "boot.sh: FAIL: expected problem $expect_problem, report says problems=$problems" >&2; fail=1 ;;
  esac
elif [ "$result" != PASS ]; then
  IFS=, read -r -a probs <<<"$problems"
  for p in "${probs[@]}"; do
    ok=0
    for a in "${allow[@]}"; do [ "$p" != "$a" ] || ok=1; done
    [ $ok = 1 ] || { echo "boot.sh: FAIL: problem $p" >&2; fail=1; }
  done
  [ $fail = 1 ] || echo "boot.sh: report FAIL only for allowed problems (${allow[*]})"
fi
exit $fail
