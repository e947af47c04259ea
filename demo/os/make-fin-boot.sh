#!/usr/bin/env bash
# The balenaFin (Raspberry Pi CM3) boot partition of the demo OS, as the
# real board's firmware reads it: bootcode.bin -> start*.elf (+ fixup*.dat)
# -> config.txt -> kernel, initrd and device tree -> cmdline.txt.
#
#   demo/os/make-fin-boot.sh OUTDIR KERNELDIR
#       KERNELDIR has vmlinuz, initrd.img and bcm2837-rpi-cm3-io3.dtb
#       (make-os.sh armhf takes them from the armhf rootfs)
#   demo/os/make-fin-boot.sh OUTDIR --from-debs
#       kernel and device tree straight from Debian's linux-image-armmp
#       package (dpkg-deb -x), no initrd (config.txt then names none): the
#       fixture of tests/e2e/fin_boot_files.rs, without the slow armhf
#       rootfs build
#
# Firmware: Debian's raspi-firmware (non-free-firmware), downloaded through
# demo/apt-download.sh's private apt configuration into
# $KILN_CACHE/debs-armhf-boot. Only the Pi 0-3 files (start4*/fixup4* are
# the Pi 4's). The kernel is Debian's 32-bit armmp (arm_64bit=0); the
# device tree is the kernel's own CM3 one (bcm2837-rpi-cm3-io3.dtb; the
# Raspberry Pi kernel's name for it would be bcm2710-rpi-cm3.dtb), named by
# device_tree=. UART console on ttyAMA0 (the CM3 has no Bluetooth on the
# PL011). Timestamps are SOURCE_DATE_EPOCH (default 1700000000).
set -euo pipefail
outdir=${1:?usage: make-fin-boot.sh OUTDIR KERNELDIR|--from-debs}
kdir=${2:?usage: make-fin-boot.sh OUTDIR KERNELDIR|--from-debs}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export KILN_CACHE=${KILN_CACHE:-$repo/.cache}
debs=$KILN_CACHE/debs-armhf-boot
sde=${SOURCE_DATE_EPOCH:-1700000000}
command -v dpkg-deb >/dev/null || { echo "make-fin-boot.sh: dpkg-deb missing (apt-get install -y dpkg)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-fin-boot.XXXXXX")
trap 'rm -rf "$work"' EXIT
newest() { ls "$debs"/"$1"_*_"$2".deb 2>/dev/null | LC_ALL=C sort -V | tail -n1; }

"$repo/demo/apt-download.sh" armhf "$debs" raspi-firmware
fwdeb=$(newest raspi-firmware all)
[ -n "$fwdeb" ] || { echo "make-fin-boot.sh: raspi-firmware download failed" >&2; exit 1; }
dpkg-deb -x "$fwdeb" "$work/fw"

if [ "$kdir" = --from-debs ]; then
  # linux-image-armmp is the metapackage; its Depends names the kernel.
  "$repo/demo/apt-download.sh" armhf "$debs" linux-image-armmp
  meta=$(newest linux-image-armmp armhf)
  kpkg=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*-armmp\).*/\1/p' | head -n1)
  [ -n "$kpkg" ] || { echo "make-fin-boot.sh: no kernel in linux-image-armmp's Depends" >&2; exit 1; }
  "$repo/demo/apt-download.sh" armhf "$debs" "$kpkg"
  kdeb=$(newest "$kpkg" armhf)
  dpkg-deb -x "$kdeb" "$work/k"
  mkdir -p "$work/kernel"
  cp "$work"/k/boot/vmlinuz-* "$work/kernel/vmlinuz"
  cp "$work"/k/usr/lib/linux-image-*/broadcom/bcm2837-rpi-cm3-io3.dtb "$work/kernel/" 2>/dev/null \
    || cp "$work"/k/usr/lib/linux-image-*/bcm2837-rpi-cm3-io3.dtb "$work/kernel/"
  kdir=$work/kernel
fi
for f in vmlinuz bcm2837-rpi-cm3-io3.dtb; do
  [ -s "$kdir/$f" ] || { echo "make-fin-boot.sh: $kdir/$f missing" >&2; exit 1; }
done

b=$work/boot
mkdir -p "$b"
for f in bootcode.bin start.elf start_cd.elf start_db.elf start_x.elf \
         fixup.dat fixup_cd.dat fixup_db.dat fixup_x.dat; do
  cp "$work/fw/usr/lib/raspi-firmware/$f" "$b/$f"
done
# The firmware's licence (Broadcom's redistribution terms) goes with it.
cp "$work/fw/usr/share/doc/raspi-firmware/copyright" "$b/LICENCE.raspi-firmware"
cp "$kdir/vmlinuz" "$kdir/bcm2837-rpi-cm3-io3.dtb" "$b/"
initramfs=''
if [ -s "$kdir/initrd.img" ]; then
  cp "$kdir/initrd.img" "$b/"
  initramfs='initramfs initrd.img followkernel'
fi
{
  echo "# kiln demo OS on the balenaFin (Raspberry Pi CM3 Lite): Debian's 32-bit armmp kernel"
  echo "arm_64bit=0"
  echo "kernel=vmlinuz"
  [ -z "$initramfs" ] || echo "$initramfs"
  echo "device_tree=bcm2837-rpi-cm3-io3.dtb"
  echo "enable_uart=1"
  echo "disable_splash=1"
} > "$b/config.txt"
# apparmor=0 as on the NUC (demo/os/grub/grub.cfg): the lean image has no
# apparmor_parser, without which dockerd refuses to start containers.
echo "console=ttyAMA0,115200 root=LABEL=resin-rootA rootfstype=ext4 rootwait ro quiet apparmor=0" > "$b/cmdline.txt"
{ dpkg-deb -W --showformat='${Package} ${Version}\n' "$fwdeb"
  [ -z "${kdeb:-}" ] || dpkg-deb -W --showformat='${Package} ${Version}\n' "$kdeb"; } > "$b/.versions"
chmod 0644 "$b"/* "$b/.versions"
touch -h -d "@$sde" "$b"/* "$b"
mkdir -p "$(dirname "$outdir")"
rm -rf "$outdir"
mv "$b" "$outdir"
mv "$outdir/.versions" "$outdir.versions"
echo "Fin boot files in $outdir:"; ls -l "$outdir" | tail -n +2
