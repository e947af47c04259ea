#!/usr/bin/env bash
# End-to-end benchmark (make bench): the default fin-cm3 image (demo OS,
# demo app preloaded, 1 GiB swapfile), image + sha256 + bmap, built
#   (a) by kiln (release build), and
#   (b) by the standard-tool pipeline on the same content: sfdisk,
#       mkfs.vfat + mcopy, mke2fs -d for every ext4 partition, dd assembly,
#       sha256sum, bmaptool create,
# plus cp --sparse=always of the finished image (the disk's own limit),
# kiln qcow2 vs qemu-img convert, kiln xz vs xz -T0, kiln flash vs
# bmaptool copy. Prints wall time, peak RSS and ratios, one run each.
# Needs root (loop mount to take the data partition's content for (b)).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
kiln=$repo/target/release/kiln
[ -x "$kiln" ] || (cd "$repo" && cargo build --release -p kiln)
bash "$repo/demo/make-inputs.sh" >/dev/null
w=$(mktemp -d /var/tmp/kiln-bench.XXXXXX)
trap 'umount "$w/mnt" 2>/dev/null || true; rm -rf "$w"' EXIT
export SOURCE_DATE_EPOCH=1700000000
t() { # name, command...: runs it, records "name seconds rss_kib"
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$w/time" "$@" >/dev/null 2>"$w/err" || { cat "$w/err"; exit 1; }
  read -r secs rss < "$w/time"
  printf '%-34s %8.2f s %8d KiB\n' "$name" "$secs" "$rss"
  printf '%s\t%s\t%s\n' "$name" "$secs" "$rss" >> "$w/results"
}
sec() { awk -F'\t' -v n="$1" '$1==n {print $2}' "$w/results"; }
mkdir -p "$w/k"
t "kiln build (raw+sha256+bmap)" "$kiln" build -q --board fin-cm3 --recipe bob-onprem -o "$w/k/fin.img"
img=$w/k/fin.img
t "cp --sparse=always" cp --sparse=always "$img" "$w/copy.img"

# (b) the standard pipeline on the same content.
mkdir -p "$w/rootfs" "$w/mnt" "$w/data" "$w/std"
tar -xzf "$repo/.cache/demo/rootfs-armhf.tar.gz" -C "$w/rootfs"
start=$(sfdisk -d "$img" | awk '/fin.img6/ {gsub(",","",$4); print $4}')
size=$(sfdisk -d "$img" | awk '/fin.img6/ {gsub(",","",$6); print $6}')
mount -o ro,loop,offset=$((start*512)),sizelimit=$((size*512)) "$img" "$w/mnt"
cp -a "$w/mnt/." "$w/data/"; umount "$w/mnt"
# mke2fs -d cannot make a swapfile: a zero-filled one becomes holes.
rm -f "$w/data/swapfile"; dd if=/dev/zero of="$w/data/swapfile" bs=1M count=1024 status=none; chmod 600 "$w/data/swapfile"
boot=$w/k-boot; mkdir -p "$boot"; cp -a "$repo/.cache/demo/boot-armhf/." "$boot/"
"$kiln" inspect --json "$img" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["config"], indent=2, sort_keys=True))' > "$boot/config.json"
cat > "$w/std.sh" <<EOS
set -e
cd "$w/std"
truncate -s $(stat -c %s "$img") img
sfdisk -q img < <(sfdisk -d "$img")
mkfs.vfat -F 32 -n resin-boot -C boot.vfat 40960 >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -s -i boot.vfat "$boot"/* ::
mke2fs -q -t ext4 -L resin-rootA -d "$w/rootfs" rootA.ext4 320M
mke2fs -q -t ext4 -L resin-rootB rootB.ext4 320M
mke2fs -q -t ext4 -L resin-state state.ext4 20M
mke2fs -q -t ext4 -i 8192 -L resin-data -d "$w/data" data.ext4 $((size/2))k
for p in boot.vfat:1 rootA.ext4:2 rootB.ext4:3 state.ext4:5 data.ext4:6; do
  f=\${p%%:*}; n=\${p##*:}
  s=\$(sfdisk -d img | awk -v n="img\$n" '\$1==n {gsub(",","",\$4); print \$4}')
  dd if=\$f of=img bs=4M seek=\$((s*512)) oflag=seek_bytes conv=notrunc,sparse status=none
done
sha256sum img > img.sha256
bmaptool -q create -o img.bmap img
EOS
t "standard pipeline (raw+sha256+bmap)" bash "$w/std.sh"
if command -v genimage >/dev/null; then
  mkdir -p "$w/gi/root" "$w/gi/tmp" "$w/gi/in" "$w/gi/out"
  # genimage takes one root tree; the data partition is the subtree at its
  # mountpoint (/mnt/data), which the rootA image then leaves out.
  cp -a "$w/rootfs" "$w/gi/in/rootfs"; mkdir -p "$w/gi/in/rootfs/mnt/data"
  cp -a "$w/data/." "$w/gi/in/rootfs/mnt/data/"; cp -a "$boot" "$w/gi/in/boot"
  cat > "$w/gi/genimage.cfg" <<EOS
image boot.vfat { vfat { label = "resin-boot" extraargs = "-F 32" files = { $(cd "$w/gi/in/boot" && ls | sed 's/.*/"boot\/&"/' | paste -sd, -) } } size = 40M }
image rootA.ext4 { ext4 { label = "resin-rootA" use-mke2fs = true } mountpoint = "" size = 320M }
image data.ext4 { ext4 { label = "resin-data" use-mke2fs = true extraargs = "-i 8192" } mountpoint = "/mnt/data" size = $((size/2))K }
image fin.img { hdimage { partition-table-type = "mbr" align = 4M extended-partition = 4 }
  partition boot { partition-type = 0xc bootable = true image = "boot.vfat" offset = 4M }
  partition rootA { partition-type = 0x83 image = "rootA.ext4" }
  partition rootB { partition-type = 0x83 size = 320M }
  partition state { partition-type = 0x83 size = 20M }
  partition data { partition-type = 0x83 image = "data.ext4" } }
EOS
  cat > "$w/gi.sh" <<EOS
set -e
genimage --rootpath "$w/gi/in/rootfs" --tmppath "$w/gi/tmp" --inputpath "$w/gi/in" --outputpath "$w/gi/out" --config "$w/gi/genimage.cfg"
sha256sum "$w/gi/out/fin.img" > "$w/gi/out/fin.img.sha256"
bmaptool -q create -o "$w/gi/out/fin.img.bmap" "$w/gi/out/fin.img"
EOS
  if /usr/bin/time -f "%e %M" -o "$w/time" bash "$w/gi.sh" >/dev/null 2>"$w/err"; then
    read -r secs rss < "$w/time"
    # Count it only if it produced the whole partitioned image.
    if sfdisk -d "$w/gi/out/fin.img" 2>/dev/null | grep -q "fin.img6"; then
      printf '%-34s %8.2f s %8d KiB\n' "genimage 16 (+sha256+bmap)" "$secs" "$rss"; printf 'genimage 16\t%s\t%s\n' "$secs" "$rss" >> "$w/results"
    else
      echo "genimage 16: no complete image produced ($(ls "$w/gi/out" 2>/dev/null | tr '\n' ' '))"
    fi
  else
    echo "genimage 16: failed ($(tail -n1 "$w/err"))"
  fi
fi

t "kiln build qcow2 only" "$kiln" build -q --board fin-cm3 --recipe bob-onprem --format qcow2 -o "$w/k/q.img"
t "qemu-img convert -O qcow2" qemu-img convert -O qcow2 "$img" "$w/q.qcow2"
t "kiln build vmdk only" "$kiln" build -q --board fin-cm3 --recipe bob-onprem --format vmdk -o "$w/k/v.img"
t "qemu-img convert -O vmdk (stream)" qemu-img convert -O vmdk -o subformat=streamOptimized "$img" "$w/v.vmdk"
t "kiln build raw.xz (-6)" "$kiln" build -q --board fin-cm3 --recipe bob-onprem --compress xz --level 6 -o "$w/k/x.img"
t "xz -T0 -6 of the raw image" xz -T0 -6 -k -c "$img"
t "kiln flash (bmap) to a file" "$kiln" flash -q --force "$img" "$w/flash.img"
t "bmaptool copy to a file" bmaptool -q copy --bmap "$img.bmap" "$img" "$w/bmap.img"

echo
awk -v a="$(sec 'standard pipeline (raw+sha256+bmap)')" -v k="$(sec 'kiln build (raw+sha256+bmap)')" -v c="$(sec 'cp --sparse=always')" \
    -v q="$(sec 'kiln build qcow2 only')" -v qi="$(sec 'qemu-img convert -O qcow2')" -v x="$(sec 'kiln build raw.xz (-6)')" -v xi="$(sec 'xz -T0 -6 of the raw image')" \
    -v g="$(sec 'genimage 16')" -v f="$(sec 'kiln flash (bmap) to a file')" -v b="$(sec 'bmaptool copy to a file')" 'BEGIN {
  d = 0.005
  printf "ratio standard pipeline / kiln          %6.1fx\n", a / (k + d)
  if (g != "") printf "ratio genimage / kiln                   %6.1fx\n", g / (k + d)
  printf "ratio kiln / cp --sparse=always         %6.1fx\n", k / (c + d)
  printf "ratio kiln qcow2 build / kiln raw build %6.2fx\n", q / (k + d)
  printf "ratio qemu-img convert / kiln qcow2     %6.2fx (convert alone, image already built)\n", qi / (q + d)
  printf "ratio xz -T0 / kiln raw.xz build        %6.2fx\n", xi / (x + d)
  printf "ratio bmaptool copy / kiln flash        %6.2fx\n", b / (f + d)
}'
