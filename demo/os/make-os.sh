#!/usr/bin/env bash
# Builds the demo appliance OS (issue 5) from Debian packages, for kiln's
# `[os.<arch>]` recipe keys (see demo/os/bob-boot.toml), into
# .cache/demo-os/<arch>/:
#
#   rootfs.tar     root filesystem for rootA: kernel (+ initrd in /boot),
#                  systemd, docker.io, jq and the first-boot agent of rootfs/
#   boot/          boot partition files (EFI/BOOT/bootx64.efi, grub/grub.cfg)
#   bios-boot.img  GRUB boot.img + core.img for BIOS boot on MBR boards
#   packages.txt   exact package versions; SHA256SUMS of the outputs
#
# armhf (fin-cm3) instead of boot/ + bios-boot.img: boot/ holds the
# Raspberry Pi boot partition (firmware of Debian's raspi-firmware,
# config.txt, cmdline.txt, the CM3 device tree, the linux-image-armmp
# kernel and its initrd); see demo/os/README.md.
#
# Usage: demo/os/make-os.sh ARCH     (ARCH = amd64 | armhf)
#
# Cached per stage (see the stamps below); downloaded .debs are kept in
# .cache/demo-os/debs-<arch>/ and fed back to the next mmdebstrap run.
# Reproducible: SOURCE_DATE_EPOCH (default 1700000000) fixes every
# timestamp; the same package versions give the same bytes.
# Host packages: mmdebstrap grub-common grub-pc-bin grub-efi-amd64-bin;
# armhf also qemu-user-static (binfmt_misc registration, done here).
set -euo pipefail

arch=${1:?usage: make-os.sh ARCH (amd64)}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KILN_CACHE:-$repo/.cache}/demo-os
out=$cache/$arch
suite=${SUITE:-bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
nice=${NICE:-nice -n 10}

case $arch in
  amd64|armhf) ;;
  *) echo "make-os.sh: arch '$arch' not supported (amd64, armhf)" >&2; exit 2 ;;
esac

need() { # tool package
  command -v "$1" >/dev/null || { echo "make-os.sh: missing $1 (apt-get install -y $2)" >&2; exit 1; }
}
need mmdebstrap mmdebstrap

# Three cached stages, each with a stamp of what decides its output:
#   base.tar      mmdebstrap (slow, 5-8 min): this script, essential/, suite, mirror
#   rootfs.tar    base + the agent overlay rootfs/ (seconds)
#   boot/, bios-boot.img   make-grub.sh (seconds)
base_stamp=$( { sed -n '/^# --- base/,/^# --- end base/p' "$0"; (cd "$here" && find essential -type f | LC_ALL=C sort | xargs sha256sum);
                echo "$suite $mirror $SOURCE_DATE_EPOCH"; } | sha256sum | cut -c1-16)
rootfs_stamp=$( { echo "$base_stamp"; sed -n '/^# --- overlay/,/^# --- end overlay/p' "$0";
                  (cd "$here" && find rootfs -type f | LC_ALL=C sort | xargs sha256sum); } | sha256sum | cut -c1-16)
grub_stamp=$( { cat "$here/make-grub.sh"; (cd "$here" && find grub -type f | LC_ALL=C sort | xargs sha256sum);
                echo "$SOURCE_DATE_EPOCH"; dpkg-query -W grub-pc-bin grub-efi-amd64-bin; } | sha256sum | cut -c1-16)
fresh() { [ "$(cat "$out/$1.stamp" 2>/dev/null)" = "$2" ] && [ -s "$out/$3" ]; }
mkdir -p "$out" "$cache/debs-$arch"
work=$(mktemp -d "$cache/.work-$arch.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"

# --- base: Debian packages ---------------------------------------------------
base() {
# Only what the appliance needs. Recommends off (mmdebstrap default for
# --variant=apt), docs/man/locales excluded by dpkg (copyright files kept).
pkgs=linux-image-amd64,initramfs-tools,systemd,systemd-sysv,udev,kmod
pkgs+=,docker.io,jq,iproute2,ca-certificates,e2fsprogs,util-linux
# Modules dropped from the image: hardware and filesystems an appliance NUC
# does not use (wireless, sound, media, non-Intel GPUs, datacenter NICs and
# HBAs, cluster/network filesystems). Saves ~100 MiB of the ~240 MiB.
prune="drivers/gpu/drm/amd drivers/gpu/drm/nouveau drivers/gpu/drm/radeon drivers/media
  drivers/net/wireless drivers/infiniband drivers/staging drivers/iio drivers/isdn drivers/bluetooth
  drivers/comedi drivers/mtd drivers/target sound net/wireless net/mac80211 net/bluetooth
  drivers/net/ethernet/mellanox drivers/net/ethernet/chelsio drivers/net/ethernet/qlogic
  drivers/net/ethernet/cavium drivers/net/ethernet/huawei drivers/net/ethernet/sfc
  drivers/net/ethernet/netronome drivers/net/ethernet/pensando drivers/net/ethernet/emulex
  drivers/net/ethernet/brocade drivers/net/ethernet/amazon drivers/net/ethernet/cisco
  drivers/scsi/lpfc drivers/scsi/qla2xxx drivers/scsi/qla4xxx drivers/scsi/mpt3sas drivers/scsi/megaraid
  drivers/scsi/be2iscsi drivers/scsi/bfa drivers/scsi/qedi drivers/scsi/qedf drivers/scsi/fnic
  drivers/scsi/csiostor drivers/scsi/aacraid drivers/scsi/bnx2fc drivers/scsi/bnx2i drivers/scsi/cxgbi
  drivers/scsi/smartpqi drivers/scsi/mpi3mr drivers/scsi/pm8001 drivers/scsi/isci drivers/scsi/elx
  fs/xfs fs/btrfs fs/ocfs2 fs/nfs fs/nfsd fs/smb fs/f2fs fs/gfs2 fs/jfs fs/nilfs2 fs/ceph fs/afs
  fs/ubifs fs/orangefs fs/reiserfs net/sunrpc net/ceph lib/test_bpf.ko"
prune=$(echo $prune)
log=$work/mmdebstrap.log
echo "building demo OS $arch with mmdebstrap ($suite), log: $out/mmdebstrap.log"
# shellcheck disable=SC2016 # hooks are expanded by mmdebstrap, $1 = root
$nice mmdebstrap --variant=apt --arch="$arch" --mode=root --format=tar \
  --include="$pkgs" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --skip=download/empty \
  --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
  --setup-hook="sync-in $cache/debs-$arch /var/cache/apt/archives" \
  --essential-hook="cp -a $here/essential/. \"\$1/\"" \
  --customize-hook="sync-out /var/cache/apt/archives $cache/debs-$arch" \
  --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
  --customize-hook="for d in $prune; do rm -rf \"\$1\"/lib/modules/*/kernel/\$d; done; for k in \"\$1\"/lib/modules/*; do chroot \"\$1\" depmod \"\${k##*/}\"; done" \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-networkd-wait-online.service' \
  --customize-hook='echo kiln-demo > "$1/etc/hostname"; mkdir -p "$1/mnt/data" "$1/mnt/boot"' \
  --customize-hook='chroot "$1" dpkg-query -W -f "\${Package} \${Version} \${Architecture}\n" > "$1/etc/kiln-packages.txt"' \
  --customize-hook="cp \"\$1/etc/kiln-packages.txt\" $work/packages.txt" \
  --customize-hook="ls \"\$1\"/boot > $work/boot-files.txt" \
  "$suite" "$work/base.tar" "$mirror" >"$log" 2>&1 || {
    tail -n 30 "$log" >&2; cp "$log" "$out/mmdebstrap.log"; exit 1; }
grep -q '^vmlinuz$' "$work/boot-files.txt" && grep -q '^initrd.img$' "$work/boot-files.txt" \
  || { echo "make-os.sh: /boot/vmlinuz or /boot/initrd.img missing in the rootfs" >&2; cat "$work/boot-files.txt" >&2; exit 1; }

  mv "$work/base.tar" "$work/packages.txt" "$out/"
  cp "$log" "$out/mmdebstrap.log"
  echo "$base_stamp" > "$out/base.stamp"
}
# --- end base

# --- overlay: the first-boot agent and its units ------------------------------
overlay() {
  local r=$work/root
  mkdir "$r"
  tar -C "$r" --xattrs --xattrs-include='*' --numeric-owner -xpf "$out/base.tar"
  cp -a "$here/rootfs/." "$r/"
  mkdir -p "$r/etc/systemd/system/multi-user.target.wants"
  for u in kiln-config kiln-apps kiln-check; do
    ln -sfn "/etc/systemd/system/$u.service" "$r/etc/systemd/system/multi-user.target.wants/$u.service"
  done
  # Sorted, numeric owners, mtimes clamped, no atime/ctime: same input, same bytes.
  tar -C "$r" --sort=name --format=pax --numeric-owner --xattrs --xattrs-include='*' \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime -cf "$work/rootfs.tar" .
  rm -rf "$r"
  mv "$work/rootfs.tar" "$out/rootfs.tar"
  echo "$rootfs_stamp" > "$out/rootfs.stamp"
}
# --- end overlay

# --- armhf base: Debian packages for the Fin (armv7) -------------------------
# Foreign-architecture mmdebstrap: dpkg and the maintainer scripts run under
# qemu-user (qemu-user-static, registered in binfmt_misc below). rootA is
# 320 MiB on the fin profiles, so the tree is trimmed: kernel modules the
# Fin and QEMU -M virt do not use, device trees of other boards, the
# engine's debug/test tools (ctr, dnet, ovrouter, legacy shims) and the
# udev hwdb sources (hwdb.bin stays).
base_armhf() {
binfmt_arm
pkgs=linux-image-armmp,initramfs-tools,systemd,systemd-sysv,udev,kmod
pkgs+=,docker.io,jq,iproute2,ca-certificates,e2fsprogs,util-linux
prune="drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet drivers/net/can
  drivers/net/dsa drivers/net/phy drivers/net/ieee802154 drivers/infiniband drivers/staging drivers/iio
  drivers/isdn drivers/bluetooth drivers/mtd drivers/crypto drivers/video drivers/hwmon drivers/input
  drivers/hid drivers/leds drivers/remoteproc drivers/rpmsg drivers/soc drivers/clk drivers/phy
  drivers/power drivers/regulator drivers/pinctrl drivers/thermal drivers/mfd drivers/gnss drivers/nfc
  drivers/atm drivers/usb/gadget drivers/usb/serial drivers/usb/misc drivers/net/usb/qmi_wwan.ko
  sound net/wireless net/mac80211 net/bluetooth net/6lowpan net/ieee802154 net/nfc net/can net/sunrpc
  net/ceph net/rxrpc net/tipc net/sctp net/batman-adv net/mpls net/openvswitch
  fs/xfs fs/btrfs fs/ocfs2 fs/nfs fs/nfsd fs/smb fs/f2fs fs/gfs2 fs/jfs fs/nilfs2 fs/ceph
  fs/afs fs/ubifs fs/orangefs fs/reiserfs fs/jffs2 fs/udf fs/ntfs3 fs/dlm"
prune=$(echo $prune)
log=$work/mmdebstrap.log
echo "building demo OS $arch with mmdebstrap ($suite, under qemu-user), log: $out/mmdebstrap.log"
mkdir -p "$work/kernel"
# shellcheck disable=SC2016 # hooks are expanded by mmdebstrap, $1 = root
$nice mmdebstrap --variant=apt --arch="$arch" --mode=root --format=tar \
  --include="$pkgs" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --skip=download/empty \
  --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
  --setup-hook="sync-in $cache/debs-$arch /var/cache/apt/archives" \
  --essential-hook="cp -a $here/essential/. $here/essential-armhf/. \"\$1/\"" \
  --customize-hook="sync-out /var/cache/apt/archives $cache/debs-$arch" \
  --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
  --customize-hook="for d in $prune; do rm -rf \"\$1\"/lib/modules/*/kernel/\$d; done; for k in \"\$1\"/lib/modules/*; do chroot \"\$1\" depmod \"\${k##*/}\"; done" \
  --customize-hook='find "$1"/usr/lib/linux-image-* -name "*.dtb" ! -name "bcm283*" -delete' \
  --customize-hook='rm -f "$1"/usr/bin/ctr "$1"/usr/bin/dnet "$1"/usr/sbin/ovrouter "$1"/usr/bin/containerd-shim "$1"/usr/bin/containerd-shim-runc-v1 "$1"/usr/lib/udev/hwdb.d/*.hwdb' \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-networkd-wait-online.service' \
  --customize-hook='echo kiln-demo > "$1/etc/hostname"; mkdir -p "$1/mnt/data" "$1/mnt/boot"' \
  --customize-hook='chroot "$1" dpkg-query -W -f "\${Package} \${Version} \${Architecture}\n" > "$1/etc/kiln-packages.txt"' \
  --customize-hook="cp \"\$1/etc/kiln-packages.txt\" $work/packages.txt" \
  --customize-hook="cp -L \"\$1\"/boot/vmlinuz \"\$1\"/boot/initrd.img $work/kernel/ && cp \"\$1\"/usr/lib/linux-image-*/bcm2837-rpi-cm3-io3.dtb $work/kernel/" \
  "$suite" "$work/base.tar" "$mirror" >"$log" 2>&1 || {
    tail -n 30 "$log" >&2; cp "$log" "$out/mmdebstrap.log"; exit 1; }
for f in vmlinuz initrd.img bcm2837-rpi-cm3-io3.dtb; do
  [ -s "$work/kernel/$f" ] || { echo "make-os.sh: $f missing in the armhf rootfs" >&2; exit 1; }
done
  rm -rf "$out/kernel"
  mv "$work/base.tar" "$work/packages.txt" "$work/kernel" "$out/"
  cp "$log" "$out/mmdebstrap.log"
  echo "$base_stamp" > "$out/base.stamp"
}

# --- end armhf

# --- armhf slim: fit rootA (320 MiB on the fin profiles) --------------------
# mmdebstrap.tar -> base.tar (a minute; dpkg --purge and depmod run under
# qemu-user). Drops perl
# (only usrmerge needs it, after the install), the udev hwdb (hwdb.bin:
# device names only), /boot's kernel and initrd (the Pi firmware loads them
# from the boot partition, make-fin-boot.sh), and modules for hardware
# neither the Fin nor QEMU has (SATA, NVMe, SCSI HBAs, MD/DM, targets).
slim_armhf() {
  local r=$work/slim
  binfmt_arm
  mkdir "$r"
  tar -C "$r" --xattrs --xattrs-include='*' --numeric-owner -xpf "$out/mmdebstrap.tar"
  chroot "$r" dpkg --purge --force-depends usrmerge libfile-find-rule-perl libnumber-compare-perl \
    libtext-glob-perl perl libperl5.36 perl-modules-5.36 >/dev/null
  rm -f "$r"/usr/lib/udev/hwdb.bin "$r"/boot/vmlinuz* "$r"/boot/initrd.img*
  for k in "$r"/usr/lib/modules/*; do
    rm -rf "$k"/kernel/lib/test_bpf.ko "$k"/kernel/drivers/target "$k"/kernel/drivers/md \
      "$k"/kernel/drivers/ata "$k"/kernel/drivers/nvme
    find "$k"/kernel/drivers/scsi -mindepth 1 -type d -prune -exec rm -rf {} +
    chroot "$r" depmod "${k##*/}"
  done
  tar -C "$r" --sort=name --format=pax --numeric-owner --xattrs --xattrs-include='*' \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime -cf "$work/base.tar" .
  rm -rf "$r"
  mv "$work/base.tar" "$out/base.tar"
  echo "$1" > "$out/base.stamp"
}
# --- end armhf slim

# qemu-user for armhf binaries, registered once (idempotent); the F flag
# keeps the interpreter open, so it works inside the chroot.
binfmt_arm() {
  local conf=/usr/lib/binfmt.d/qemu-arm.conf bm=/proc/sys/fs/binfmt_misc
  [ -r "$conf" ] || { echo "make-os.sh: $conf missing (apt-get install -y -t bookworm-backports qemu-user-static)" >&2; exit 1; }
  [ -e "$bm/register" ] || mount -t binfmt_misc binfmt_misc "$bm"
  [ -e "$bm/qemu-arm" ] || cat "$conf" > "$bm/register"
  grep -qx enabled "$bm/qemu-arm" || { echo "make-os.sh: binfmt_misc qemu-arm not enabled" >&2; exit 1; }
}

# The Fin's boot partition (Pi firmware, config.txt, cmdline.txt, CM3
# device tree, kernel and initrd of the rootfs): demo/os/make-fin-boot.sh.
boot_armhf() {
  "$here/make-fin-boot.sh" "$out/boot" "$out/kernel"
  mv "$out/boot.versions" "$out/firmware.txt"
  echo "$1" > "$out/fwboot.stamp"
}


if [ "$arch" = armhf ]; then
  # The armhf stages have their own stamps: the armhf section, both essential trees.
  base_stamp=$( { sed -n '/^# --- armhf base/,/^# --- end armhf/p' "$0";
                  (cd "$here" && find essential essential-armhf -type f | LC_ALL=C sort | xargs sha256sum);
                  echo "$suite $mirror $SOURCE_DATE_EPOCH armhf"; } | sha256sum | cut -c1-16)
  # mmdebstrap.tar: base_armhf's output (it writes base.tar and base.stamp).
  mm_stamp=$base_stamp
  if ! fresh mmdebstrap "$mm_stamp" mmdebstrap.tar; then
    base_armhf
    mv "$out/base.tar" "$out/mmdebstrap.tar"; mv "$out/base.stamp" "$out/mmdebstrap.stamp"
  fi
  base_stamp=$( { echo "$mm_stamp"; sed -n '/^# --- armhf slim/,/^# --- end armhf slim/p' "$0"; } | sha256sum | cut -c1-16)
  rootfs_stamp=$( { echo "$base_stamp"; sed -n '/^# --- overlay/,/^# --- end overlay/p' "$0";
                    (cd "$here" && find rootfs -type f | LC_ALL=C sort | xargs sha256sum); } | sha256sum | cut -c1-16)
  fresh base "$base_stamp" base.tar || slim_armhf "$base_stamp"
  fresh rootfs "$rootfs_stamp" rootfs.tar || overlay
  fwboot_stamp=$( { echo "$base_stamp"; cat "$here/make-fin-boot.sh"; } | sha256sum | cut -c1-16)
  fresh fwboot "$fwboot_stamp" boot/config.txt || boot_armhf "$fwboot_stamp"
  (cd "$out" && { sha256sum rootfs.tar; find boot -type f | LC_ALL=C sort | xargs sha256sum; } > SHA256SUMS)
  echo "demo OS $arch ready in $out:"; cat "$out/firmware.txt" "$out/SHA256SUMS"
  du -sh "$out/rootfs.tar" | sed 's/^/  /'
  exit 0
fi
fresh base "$base_stamp" base.tar || base
fresh rootfs "$rootfs_stamp" rootfs.tar || overlay
if ! fresh grub "$grub_stamp" bios-boot.img; then
  rm -rf "$out/boot" "$out/bios-boot.img"
  "$here/make-grub.sh" "$out"
  echo "$grub_stamp" > "$out/grub.stamp"
fi
(cd "$out" && sha256sum rootfs.tar bios-boot.img boot/EFI/BOOT/bootx64.efi boot/grub/grub.cfg > SHA256SUMS)
echo "demo OS $arch ready in $out:"; cat "$out/SHA256SUMS"
du -sh "$out/rootfs.tar" | sed 's/^/  /'
