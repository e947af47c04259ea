#!/usr/bin/env bash
# GRUB images for the demo OS on the nuc boards, from the host's
# grub-efi-amd64-bin and grub-pc-bin (called by make-os.sh):
#   OUT/boot/EFI/BOOT/bootx64.efi  UEFI (x86_64-efi)
#   OUT/boot/grub/grub.cfg         menu: kernel and initrd from resin-rootA
#   OUT/bios-boot.img              BIOS: boot.img (512 bytes) + core.img
# Both images carry grub/embedded.cfg: it finds resin-boot by label and
# sets prefix=($root)/grub, then GRUB's normal mode reads grub/grub.cfg
# there. GRUB runs the embedded file with its rescue parser: plain commands
# only, no comments or if/fi. Every module is built in, so nothing is read
# from a module directory. core.img goes at LBA 1: boot.img's kernel sector (1)
# and diskboot's blocklist (start 2) are grub-mkimage's defaults, so no
# grub-bios-setup patching is needed.
set -euo pipefail
out=${1:?usage: make-grub.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
: "${SOURCE_DATE_EPOCH:=1700000000}"
for d in i386-pc x86_64-efi; do
  [ -d /usr/lib/grub/$d ] || { echo "make-grub.sh: missing /usr/lib/grub/$d (apt-get install -y grub-pc-bin grub-efi-amd64-bin)" >&2; exit 1; }
done
command -v grub-mkimage >/dev/null || { echo "make-grub.sh: missing grub-mkimage (apt-get install -y grub-common)" >&2; exit 1; }
mods="part_msdos part_gpt fat ext2 search search_label normal configfile linux echo test serial terminal gzio"
mkdir -p "$out/boot/EFI/BOOT" "$out/boot/grub"
cp "$here/grub/grub.cfg" "$out/boot/grub/grub.cfg"
grub-mkimage -O x86_64-efi -p /grub -c "$here/grub/embedded.cfg" \
  -o "$out/boot/EFI/BOOT/bootx64.efi" $mods efi_gop efi_uga
grub-mkimage -O i386-pc -p /grub -c "$here/grub/embedded.cfg" \
  -o "$out/core.img" biosdisk $mods
cat /usr/lib/grub/i386-pc/boot.img "$out/core.img" > "$out/bios-boot.img"
rm "$out/core.img"
size=$(stat -c %s "$out/bios-boot.img")
[ "$size" -lt $((4 * 1024 * 1024)) ] || { echo "make-grub.sh: bios-boot.img is $size bytes, more than the 4 MiB before p1" >&2; exit 1; }
find "$out/boot" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
