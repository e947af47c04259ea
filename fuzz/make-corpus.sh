#!/usr/bin/env bash
# Regenerates the seed corpora in fuzz/corpus/TARGET/ from real tools
# (mkfs.vfat + mtools, mke2fs -d, sfdisk, sgdisk, qemu-img/qemu-io, tar,
# gzip/xz/zstd, bmaptool, skopeo) and kiln's own writers
# (target/debug/kiln mkfs/convert). Every command that makes a seed is
# here; run from anywhere: bash fuzz/make-corpus.sh
# Inputs over 64 KiB are stored zstd-compressed (*.zst, the harness
# decompresses them); the whole corpus stays well under 5 MB.
set -euo pipefail
export LC_ALL=C TZ=UTC SOURCE_DATE_EPOCH=1700000000
# Fewer spurious diffs on regeneration: fixed times for e2fsprogs.
export E2FSPROGS_FAKE_TIME=1700000000
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
C="${KILN_FUZZ_CORPUS:-$here/corpus}" # where to write (default: fuzz/corpus)
KILN="$repo/target/debug/kiln"
FUZZ="$repo/target/debug/kiln-fuzz"
[ -x "$KILN" ] && [ -x "$FUZZ" ] || (cd "$repo" && cargo build -p kiln -p kiln-fuzz)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
rm -rf "$C"
mkdir -p "$C"

# put TARGET NAME FILE: store FILE as a seed, compressed when over 64 KiB.
put() {
  mkdir -p "$C/$1"
  if [ "$(stat -c %s "$3")" -gt 65536 ]; then
    zstd -q -19 --no-progress -o "$C/$1/$2.zst" "$3"
  else
    cp "$3" "$C/$1/$2"
  fi
}

# A small tree the filesystem and tar seeds share.
T="$W/tree"
mkdir -p "$T/etc" "$T/dir/sub/deeper" "$T/empty"
printf 'ID=balena-os\nNAME="balenaOS"\nVERSION_ID=5.1.0\n' > "$T/etc/os-release"
printf 'hello\n' > "$T/hello.txt"
# 20,000 bytes that look random but are the same on every run.
for i in $(seq 625); do printf '%s' "$i" | sha256sum | xxd -r -p; done > "$T/dir/random.bin"
seq 1 3000 > "$T/dir/sub/numbers.txt"
for i in $(seq 1 40); do echo "$i" > "$T/dir/f-$i-with-a-long-name.txt"; done
ln -s ../hello.txt "$T/dir/link"
ln "$T/hello.txt" "$T/dir/hard"
truncate -s 3M "$T/dir/sparse"; printf 'end' >> "$T/dir/sparse"
ln -s "$(printf 'x%.0s' $(seq 1 100))" "$T/dir/longlink"
find "$T" -exec touch -h -d @1700000000 {} +

# --- fat: mkfs.vfat FAT12/16/32 + mtools; kiln's own FAT via mkfs? (kiln mkfs is ext4 only)
for fat in 12 16 32; do
  img="$W/fat$fat.img"
  case $fat in
    # The smallest sizes mkfs.vfat accepts for each type with 1-sector
    # clusters (FAT32 needs 65525 clusters).
    12) size=1024 ;; 16) size=2200 ;; 32) size=33792 ;;
  esac
  rm -f "$img"
  mkfs.vfat --invariant -F "$fat" -s 1 -n resin-boot -i 12345678 -C "$img" "$size" >/dev/null
  mmd -i "$img" ::/dir ::/dir/sub ::/EFI ::/EFI/BOOT
  mcopy -i "$img" "$T/hello.txt" "$T/dir/sub/numbers.txt" ::/
  mcopy -i "$img" "$T/dir/random.bin" ::/dir/
  for i in 1 2 3 4 5 6 7 8; do mcopy -i "$img" "$T/dir/f-$i-with-a-long-name.txt" ::/dir/sub/; done
  printf '{"slug":"intel-nuc","arch":"amd64"}' > "$W/device-type.json"
  mcopy -i "$img" "$W/device-type.json" ::/
  put fat "fat$fat-mkfs.vfat.img" "$img"
done

# --- ext4: mke2fs -d with several feature sets, and kiln mkfs ext4.
mk_ext4() { # name size mke2fs-args...
  local name=$1 size=$2; shift 2
  rm -f "$W/$name"; truncate -s "$size" "$W/$name"
  mke2fs -q -F -L resin-rootA -U 11111111-2222-3333-4444-555555555555 -E root_owner=0:0,hash_seed=11111111-2222-3333-4444-555555555555 -d "$T" "$@" "$W/$name" >/dev/null
  put ext4 "$name" "$W/$name"
}
mk_ext4 default-4k.ext4 2M -t ext4 -b 4096
mk_ext4 1k-blocks.ext4 8M -t ext4 -b 1024
mk_ext4 no-csum-no-extents.ext4 2M -t ext4 -b 4096 -O ^metadata_csum,^extent,^64bit,^flex_bg
mk_ext4 inline-data.ext4 2M -t ext4 -b 4096 -O inline_data -I 256
mk_ext4 no-journal-htree.ext4 2M -t ext4 -b 4096 -O ^has_journal,dir_index
tar -C "$T" -cf "$W/tree.tar" .
"$KILN" -q mkfs ext4 --source "$W/tree.tar" --size 2MiB --label resin-data "$W/kiln.ext4" >/dev/null
put ext4 kiln-mkfs.ext4 "$W/kiln.ext4"

# --- tar: GNU, ustar, PAX (with xattrs and sparse), old GNU sparse; gz/xz/zst.
tar -C "$T" --format=gnu -cf "$W/gnu.tar" .
tar -C "$T" --format=ustar -cf "$W/ustar.tar" --exclude=./dir/longlink .
tar -C "$T" --format=posix --xattrs -cf "$W/pax.tar" .
tar -C "$T" --format=posix -cSf "$W/pax-sparse.tar" ./dir/sparse ./hello.txt
tar -C "$T" --format=gnu -cSf "$W/gnu-sparse.tar" ./dir/sparse ./hello.txt
tar -C "$T" --format=gnu -cf "$W/small.tar" ./hello.txt ./dir/link ./dir/hard ./etc
for f in gnu ustar pax pax-sparse gnu-sparse; do put tar "$f.tar" "$W/$f.tar"; done
gzip -9n -c "$W/small.tar" > "$W/small.tar.gz"; put tar small.tar.gz "$W/small.tar.gz"
xz -9 -c "$W/small.tar" > "$W/small.tar.xz"; put tar small.tar.xz "$W/small.tar.xz"
zstd -q -19 -c "$W/small.tar" > "$W/small.tar.zst"; put tar small.tar.zst "$W/small.tar.zst"
# Stored as is (not re-compressed by put): gzip of the GNU tar.
gzip -9n -c "$W/gnu.tar" > "$W/gnu.tar.gz"; mkdir -p "$C/tar"; cp "$W/gnu.tar.gz" "$C/tar/gnu.tar.gz"

# --- part: MBR with extended + logicals (sfdisk), GPT (sgdisk), hybrid bits.
# Small partitions: the readers only look at the tables, and every
# execution copies the whole image.
truncate -s 2M "$W/mbr.img"
sfdisk -q "$W/mbr.img" <<'SF'
label: dos
label-id: 0x12345678
start=64, size=512, type=e, bootable
start=576, size=512, type=83
start=1088, size=512, type=83
start=1600, type=f
start=1664, size=512, type=83
start=2240, size=256, type=83
start=2560, type=83
SF
put part mbr-extended-sfdisk.img "$W/mbr.img"
truncate -s 2M "$W/gpt.img"
sgdisk -o -a 8 -U 11111111-2222-3333-4444-555555555555 \
  -n 1:64:+256K -t 1:ef00 -c 1:resin-boot \
  -n 2:0:+256K -t 2:8300 -c 2:resin-rootA \
  -n 3:0:0 -t 3:8300 -c 3:resin-data "$W/gpt.img" >/dev/null
put part gpt-sgdisk.img "$W/gpt.img"
truncate -s 2M "$W/gpt-small.img"
sgdisk -o -a 1 -n 1:34:2047 -t 1:8300 -c 1:tiny "$W/gpt-small.img" >/dev/null
put part gpt-small-sgdisk.img "$W/gpt-small.img"

# --- vdisk: qemu-img formats from a small raw with data (qemu-io writes).
# 1 MiB: every execution copies the image (a fixed VHD is all of it).
truncate -s 1M "$W/disk.raw"
qemu-io -f raw -c 'write -P 0x5a 0 64k' -c 'write -P 0xa5 256k 4k' -c 'write -P 1 768k 512' "$W/disk.raw" >/dev/null
qemu-img convert -f raw -O qcow2 "$W/disk.raw" "$W/plain.qcow2"
qemu-img convert -c -f raw -O qcow2 "$W/disk.raw" "$W/compressed.qcow2"
qemu-img convert -f raw -O qcow2 -o cluster_size=4096 "$W/disk.raw" "$W/4k-clusters.qcow2"
qemu-img create -q -f qcow2 -b disk.raw -F raw "$W/overlay.qcow2" 1M
qemu-io -f qcow2 -c 'write -P 0x33 512k 4k' "$W/overlay.qcow2" >/dev/null
qemu-img create -q -f qcow2 -o compat=0.10 "$W/v2.qcow2" 1M
for f in plain compressed 4k-clusters overlay v2; do put qcow2 "$f.qcow2" "$W/$f.qcow2"; done
"$KILN" -q convert "$W/disk.raw" "$W/kiln.qcow2" --format qcow2 >/dev/null && put qcow2 kiln.qcow2 "$W/kiln.qcow2"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$W/disk.raw" "$W/stream.vmdk"
qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse "$W/disk.raw" "$W/sparse.vmdk"
for f in stream sparse; do put vmdk "$f.vmdk" "$W/$f.vmdk"; done
"$KILN" -q convert "$W/disk.raw" "$W/kiln.vmdk" --format vmdk >/dev/null && put vmdk kiln.vmdk "$W/kiln.vmdk"
qemu-img convert -f raw -O vpc -o subformat=dynamic "$W/disk.raw" "$W/dynamic.vhd"
qemu-img convert -f raw -O vpc -o subformat=fixed "$W/disk.raw" "$W/fixed.vhd"
for f in dynamic fixed; do put vhd "$f.vhd" "$W/$f.vhd"; done
"$KILN" -q convert "$W/disk.raw" "$W/kiln.vhd" --format vhd >/dev/null && put vhd kiln.vhd "$W/kiln.vhd"
qemu-img convert -f raw -O vhdx -o subformat=dynamic "$W/disk.raw" "$W/qemu.vhdx"
put vhdx qemu.vhdx "$W/qemu.vhdx"
"$KILN" -q convert "$W/disk.raw" "$W/kiln.vhdx" --format vhdx >/dev/null && put vhdx kiln.vhdx "$W/kiln.vhdx"
mkdir -p "$C/vdisk-open"
cp "$C"/qcow2/plain.qcow2* "$C"/vmdk/stream.vmdk* "$C"/vhd/dynamic.vhd* "$C/vdisk-open/"

# --- base: a small balenaOS-like MBR disk: resin-boot FAT, resin-rootA ext4, resin-data ext4.
truncate -s 8M "$W/base.img"
sfdisk -q "$W/base.img" <<'SF'
label: dos
label-id: 0x0ba5e000
start=2048, size=2048, type=c, bootable
start=4096, size=4096, type=83
start=8192, size=2048, type=83
start=10240, type=f
start=10304, size=2048, type=83
start=12416, type=83
SF
# sfdisk numbers: 1 boot, 2 rootA, 3 rootB, 4 extended, 5 state, 6 data.
rm -f "$W/boot.fat"; mkfs.vfat --invariant -F 12 -n resin-boot -i 1234abcd -C "$W/boot.fat" 1024 >/dev/null
printf '{"slug":"intel-nuc","arch":"amd64"}' > "$W/device-type.json"
printf '{"deviceType":"intel-nuc","uuid":"0123456789abcdef0123456789abcdef"}' > "$W/config.json"
mcopy -i "$W/boot.fat" "$W/device-type.json" "$W/config.json" ::/
dd if="$W/boot.fat" of="$W/base.img" bs=512 seek=2048 conv=notrunc status=none
mkdir -p "$W/rootA-tree/etc" "$W/rootA-tree/opt"
cp "$T/etc/os-release" "$W/rootA-tree/etc/"
printf 'VERSION=5.1.0\n' > "$W/rootA-tree/etc/image-version-info"
find "$W/rootA-tree" "$W/device-type.json" "$W/config.json" -exec touch -h -d @1700000000 {} +
for p in "rootA:4096:2M" "rootB:8192:1M" "state:10304:1M" "data:12416:1M"; do
  IFS=: read -r name start size <<<"$p"
  rm -f "$W/$name.ext4"; truncate -s "$size" "$W/$name.ext4"
  if [ "$name" = rootA ]; then d=(-d "$W/rootA-tree"); else d=(); fi
  mke2fs -q -F -t ext4 -b 1024 -L "resin-$name" -U 11111111-2222-3333-4444-555555555555 -E hash_seed=11111111-2222-3333-4444-555555555555 "${d[@]}" "$W/$name.ext4" >/dev/null
  dd if="$W/$name.ext4" of="$W/base.img" bs=512 seek="$start" conv=notrunc status=none
done
put base balena-like-mbr.img "$W/base.img"
# inspect: the same disk raw and as qcow2/VHD, and the partition seeds.
mkdir -p "$C/inspect"
cp "$C/base/balena-like-mbr.img.zst" "$C"/part/* "$C/inspect/"
qemu-img convert -f raw -O qcow2 "$W/base.img" "$W/base.qcow2"; put inspect balena-like-mbr.qcow2 "$W/base.qcow2"
qemu-img convert -f raw -O vpc -o subformat=dynamic "$W/base.img" "$W/base.vhd"; put inspect balena-like-mbr.vhd "$W/base.vhd"

# --- bmap: bmaptool create on sparse images, and kiln's own.
bmaptool create -o "$W/disk.bmap" "$W/disk.raw" 2>/dev/null
put bmap bmaptool-2.0.bmap "$W/disk.bmap"
bmaptool create -o "$W/base.bmap" "$W/base.img" 2>/dev/null
put bmap bmaptool-base.bmap "$W/base.bmap"

# --- recipe / profile TOML: the project's own.
mkdir -p "$C/recipe" "$C/profile"
cp "$repo"/recipes/*.toml "$C/recipe/"
cp "$repo"/demo/os/*.toml "$C/recipe/" 2>/dev/null || true
cp "$repo"/board-profiles/*.toml "$C/profile/"

# --- devices: CSV and JSON as kiln stamp documents them.
mkdir -p "$C/devices"
cat > "$C/devices/fleet.csv" <<'CSV'
name,uuid,hostname,deviceApiKey,os.network.wifi,supervisor.tag:json,network.address,network.gateway,network.dns
# a comment
dev-001,0123456789abcdef0123456789abcdef,host-001,secretkey1,false,"{""n"": 1}",10.1.0.10/16,10.1.0.1,10.1.0.53;1.1.1.1
dev-002,fedcba9876543210fedcba9876543210,host-002,secretkey2,true,"[1,2]",,,
CSV
printf '\xef\xbb\xbfuuid,hostname\r\n0123456789abcdef0123456789abcdef,bom-host\r\n' > "$C/devices/bom-crlf.csv"
cat > "$C/devices/fleet.json" <<'JSON'
[
  {"name": "a", "uuid": "0123456789abcdef0123456789abcdef", "hostname": "a-host",
   "network": {"address": "192.168.1.50/24", "gateway": "192.168.1.1", "dns": ["1.1.1.1", "9.9.9.9"], "interface": "eth0"}},
  {"uuid": "fedcba9876543210fedcba9876543210", "hostname": "b-host", "os": {"sshKeys": ["ssh-ed25519 AAAA"]}}
]
JSON

# --- oci: a tiny two-layer OCI image layout written with tar, gzip and
# sha256sum (umoci 0.4's `insert` leaves the tar without its end blocks,
# which kiln rightly refuses), checked by skopeo, which also turns it
# into a docker-save archive; both packed into the token template (see
# src/template.rs).
L="$W/layout"
mkdir -p "$L/blobs/sha256" "$W/l1/etc" "$W/l2/etc"
blob() { # FILE -> prints "sha256:<hex> <size>" and stores the blob
  local h; h=$(sha256sum "$1" | cut -d' ' -f1)
  cp "$1" "$L/blobs/sha256/$h"; echo "sha256:$h $(stat -c %s "$1")"
}
cp "$T/hello.txt" "$W/l1/"; cp "$T/etc/os-release" "$W/l1/etc/"
printf 'second\n' > "$W/l2/etc/motd"; touch "$W/l2/.wh.hello.txt"
tar -C "$W/l1" --owner=0 --group=0 --mtime=@1700000000 --format=posix -cf "$W/l1.tar" .
tar -C "$W/l2" --owner=0 --group=0 --mtime=@1700000000 --format=gnu -cf "$W/l2.tar" .
gzip -9n -c "$W/l1.tar" > "$W/l1.tar.gz"
read -r d1 s1 < <(blob "$W/l1.tar.gz")
read -r d2 s2 < <(blob "$W/l2.tar")
diff1=sha256:$(sha256sum "$W/l1.tar" | cut -d' ' -f1)
diff2=sha256:$(sha256sum "$W/l2.tar" | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/hello.txt"]},"rootfs":{"type":"layers","diff_ids":["%s","%s"]}}' "$diff1" "$diff2" > "$W/config.json"
read -r dc sc < <(blob "$W/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' "$dc" "$sc" "$d1" "$s1" "$d2" "$s2" > "$W/manifest.json"
read -r dm sm < <(blob "$W/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' "$dm" "$sm" > "$L/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$L/oci-layout"
skopeo inspect --raw oci:"$L":v1 >/dev/null
mkdir -p "$C/oci"
"$FUZZ" pack-oci "$L" "$C/oci/oci-layout.tmpl"
skopeo copy -q oci:"$L":v1 docker-archive:"$W/save.tar":fuzz/app:v1 >/dev/null
mkdir -p "$W/save"; tar -C "$W/save" -xf "$W/save.tar"
"$FUZZ" pack-oci "$W/save" "$C/oci/docker-save.tmpl"
mkdir -p "$C/oci-inspect-json"
printf '{"Repositories":{"fuzz/app":{"fuzz/app:v1":"sha256:%064d"}}}' 0 > "$C/oci-inspect-json/repositories.json"
printf '{"config":{},"apps":{"a1b2":{"id":1,"name":"app","class":"fleet","releases":{"c0ffee":{"id":2,"services":{"web":{"id":3,"image_id":4,"image":"fuzz/app:v1","environment":{},"labels":{},"composition":{}}},"volumes":{},"networks":{}}}}}}' > "$C/oci-inspect-json/apps.json"

du -sh "$C"
find "$C" -type f | wc -l
