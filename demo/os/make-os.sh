#!/usr/bin/env bash
# Builds the demo appliance OS (issue 5) from Debian packages, for kiln's
# `[os.<arch>]` recipe keys (see demo/os/bob-boot.toml):
#
#   .cache/demo-os/<arch>/rootfs.tar.zst  root filesystem for rootA (mmdebstrap:
#                                         kernel, systemd, docker.io, jq, the
#                                         first-boot agent of demo/os/rootfs/)
#   .cache/demo-os/<arch>/boot/           boot partition files
#   .cache/demo-os/<arch>/bios-boot.img   amd64: GRUB boot.img + core.img (BIOS)
#   .cache/demo-os/<arch>/packages.txt    exact package versions in the rootfs
#
# Usage: demo/os/make-os.sh ARCH     (ARCH = amd64; armhf not done yet)
#
# Cached: outputs are reused while the stamp (hash of this script, the
# overlay files, the suite and the mirror) matches; downloaded .debs are kept
# in .cache/demo-os/debs-<arch>/ and fed back to the next build.
# Reproducible: SOURCE_DATE_EPOCH (default 1700000000) fixes every timestamp;
# the same package versions give the same bytes (checked by `REBUILD_CHECK=1`).
# Host packages: mmdebstrap zstd grub-common grub-pc-bin grub-efi-amd64-bin.
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
  amd64) ;;
  *) echo "make-os.sh: arch '$arch' not supported yet (amd64 only)" >&2; exit 2 ;;
esac

need() { # tool package
  command -v "$1" >/dev/null || { echo "make-os.sh: missing $1 (apt-get install -y $2)" >&2; exit 1; }
}
need mmdebstrap mmdebstrap
need zstd zstd
need grub-mkimage grub-common
[ -d /usr/lib/grub/i386-pc ] || { echo "make-os.sh: missing /usr/lib/grub/i386-pc (apt-get install -y grub-pc-bin)" >&2; exit 1; }
[ -d /usr/lib/grub/x86_64-efi ] || { echo "make-os.sh: missing /usr/lib/grub/x86_64-efi (apt-get install -y grub-efi-amd64-bin)" >&2; exit 1; }

# Everything that decides the output goes into the stamp.
stamp=$( { cat "$0"; (cd "$here" && find essential rootfs grub -type f | LC_ALL=C sort | xargs sha256sum);
           echo "$suite $mirror $SOURCE_DATE_EPOCH"; dpkg-query -W grub-pc-bin grub-efi-amd64-bin; } \
         | sha256sum | cut -c1-16)
if [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ] && [ -s "$out/rootfs.tar.zst" ] \
   && [ -s "$out/bios-boot.img" ] && [ -s "$out/boot/EFI/BOOT/bootx64.efi" ]; then
  echo "demo OS $arch up to date in $out"
  exit 0
fi

mkdir -p "$cache/debs-$arch"
work=$(mktemp -d "$cache/.work-$arch.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"

# --- root filesystem ------------------------------------------------------
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
  --customize-hook="cp -a $here/rootfs/. \"\$1/\"" \
  --customize-hook='chroot "$1" systemctl enable kiln-config.service kiln-apps.service kiln-check.service' \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-networkd-wait-online.service' \
  --customize-hook='echo kiln-demo > "$1/etc/hostname"; mkdir -p "$1/mnt/data" "$1/mnt/boot"' \
  --customize-hook='chroot "$1" dpkg-query -W -f "\${Package} \${Version} \${Architecture}\n" > "$1/etc/kiln-packages.txt"' \
  --customize-hook="cp \"\$1/etc/kiln-packages.txt\" $work/packages.txt" \
  --customize-hook="ls \"\$1\"/boot > $work/boot-files.txt" \
  "$suite" "$work/rootfs.tar" "$mirror" >"$log" 2>&1 || {
    tail -n 30 "$log" >&2; mkdir -p "$out"; cp "$log" "$out/mmdebstrap.log"; exit 1; }
grep -q '^vmlinuz$' "$work/boot-files.txt" && grep -q '^initrd.img$' "$work/boot-files.txt" \
  || { echo "make-os.sh: /boot/vmlinuz or /boot/initrd.img missing in the rootfs" >&2; cat "$work/boot-files.txt" >&2; exit 1; }
$nice zstd -q -T2 -9 --no-progress "$work/rootfs.tar" -o "$work/rootfs.tar.zst"
rm -f "$work/rootfs.tar"

# --- GRUB: UEFI and BIOS images, both with the same embedded config --------
# The embedded config finds the boot partition by label and runs its
# grub/grub.cfg (editable on the FAT partition); if that is missing it boots
# rootA directly. All modules are built in: nothing is loaded from disk.
mods_common="part_msdos part_gpt fat ext2 search search_label normal configfile linux echo test serial terminal gzio"
mkdir -p "$work/boot/EFI/BOOT" "$work/boot/grub"
cp "$here/grub/embedded.cfg" "$work/embedded.cfg"
cp "$here/grub/grub.cfg" "$work/boot/grub/grub.cfg"
grub-mkimage -O x86_64-efi -p /grub -c "$work/embedded.cfg" \
  -o "$work/boot/EFI/BOOT/bootx64.efi" $mods_common efi_gop efi_uga
grub-mkimage -O i386-pc -p /grub -c "$work/embedded.cfg" \
  -o "$work/core.img" biosdisk $mods_common
cat /usr/lib/grub/i386-pc/boot.img "$work/core.img" > "$work/bios-boot.img"
# core.img must fit between the MBR and the first partition (4 MiB).
size=$(stat -c %s "$work/bios-boot.img")
[ "$size" -lt $((4 * 1024 * 1024)) ] || { echo "make-os.sh: bios-boot.img is $size bytes, more than 4 MiB" >&2; exit 1; }
find "$work/boot" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# --- publish ----------------------------------------------------------------
rm -rf "$out.new"; mkdir -p "$out.new"
mv "$work/rootfs.tar.zst" "$work/boot" "$work/bios-boot.img" "$work/packages.txt" "$out.new/"
cp "$log" "$out.new/mmdebstrap.log"
(cd "$out.new" && sha256sum rootfs.tar.zst bios-boot.img boot/EFI/BOOT/bootx64.efi boot/grub/grub.cfg > SHA256SUMS)
echo "$stamp" > "$out.new/stamp"
rm -rf "$out"; mv "$out.new" "$out"
echo "demo OS $arch ready in $out:"; cat "$out/SHA256SUMS"
du -sh "$out/rootfs.tar.zst" | sed 's/^/  rootfs.tar.zst /'
