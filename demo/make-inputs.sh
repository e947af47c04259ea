#!/usr/bin/env bash
# Makes the demo OS inputs the default recipe (recipes/bob-onprem.toml)
# names, from Debian packages, into $KILN_CACHE/demo (default .cache/demo):
#   rootfs-<arch>.tar.gz  a busybox-static based root filesystem
#   boot-<arch>/          boot files for the board family
# and, when demo/app/make-demo-app.sh exists, the demo application.
# Idempotent: outputs are reused when present. Reproducible: fixed
# SOURCE_DATE_EPOCH, sorted tar members, numeric root ownership.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export KILN_CACHE=${KILN_CACHE:-$(cd "$here/.." && pwd)/.cache}
out=$KILN_CACHE/demo
sde=${SOURCE_DATE_EPOCH:-1700000000}
mkdir -p "$out"

rootfs() {
  local arch=$1 tarball=$out/rootfs-$arch.tar.gz
  [ -s "$tarball" ] && return 0
  local debs=$KILN_CACHE/debs-$arch stage
  "$here/apt-download.sh" "$arch" "$debs" busybox-static
  stage=$(mktemp -d); trap 'rm -rf "$stage"' RETURN
  dpkg-deb -x "$(ls "$debs"/busybox-static_*_"$arch".deb | head -n1)" "$stage/pkg"
  local r=$stage/root
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,dev,proc,sys,tmp,run,root,var/log,mnt/data,mnt/boot,lib/systemd/system}
  cp "$stage/pkg/bin/busybox" "$r/bin/busybox"
  chmod 0755 "$r/bin/busybox"
  # Applet links as busybox --install would make them (list from the package's own docs is not shipped; use a fixed set).
  for a in sh ash cat ls mkdir mount umount ps echo sleep ln cp mv rm grep sed awk df du free head tail vi ip ifconfig hostname dmesg uname date chmod chown swapon swapoff login getty; do
    ln -sf busybox "$r/bin/$a"
  done
  ln -sf ../bin/busybox "$r/sbin/init"
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$r/etc/passwd"
  printf 'root:x:0:\n' > "$r/etc/group"
  printf 'PRETTY_NAME="kiln demo OS (busybox)"\nID=kiln-demo\nVERSION_ID=1\n' > "$r/etc/os-release"
  printf '::sysinit:/etc/init.d/rcS\n::askfirst:-/bin/sh\n::ctrlaltdel:/sbin/reboot\n' > "$r/etc/inittab"
  printf '#!/bin/sh\nmount -t proc proc /proc\nmount -t sysfs sys /sys\nmount -L resin-data /mnt/data && swapon /mnt/data/swapfile\n' > "$r/etc/init.d/rcS"
  chmod 0755 "$r/etc/init.d/rcS"
  chmod 1777 "$r/tmp"; chmod 0700 "$r/root"
  tar --sort=name --mtime="@$sde" --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$r" -cf - . | gzip -n9 > "$tarball.tmp"
  mv "$tarball.tmp" "$tarball"
}

boot() {
  local arch=$1 d=$out/boot-$arch
  [ -d "$d" ] && return 0
  local t; t=$(mktemp -d); chmod 0755 "$t"
  case $arch in
    amd64)
      mkdir -p "$t/EFI/BOOT" "$t/grub"
      printf 'set default=0\nset timeout=3\nsearch --no-floppy --label --set=root resin-rootA\nlinux /boot/vmlinuz root=LABEL=resin-rootA rootwait\ninitrd /boot/initrd.img\nboot\n' > "$t/grub/grub.cfg"
      printf 'default_kernel=A\n' > "$t/bootenv"
      ;;
    armhf)
      printf 'arm_control=0x200\nenable_uart=1\nkernel=kernel7.img\ndtoverlay=balena-fin\n' > "$t/config.txt"
      printf 'console=serial0,115200 root=LABEL=resin-rootA rootfstype=ext4 rootwait\n' > "$t/cmdline.txt"
      ;;
  esac
  mkdir -p "$t/splash"
  printf 'kiln demo\n' > "$t/splash/README.txt"
  find "$t" -exec touch -h -d "@$sde" {} +
  mv "$t" "$d"
}

for arch in amd64 armhf; do
  rootfs "$arch"
  boot "$arch"
done
if [ -x "$here/app/make-demo-app.sh" ]; then
  "$here/app/make-demo-app.sh"
fi
echo "demo inputs ready in $out"
