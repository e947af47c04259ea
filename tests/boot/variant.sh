#!/usr/bin/env bash
# Makes a modified copy of a kiln image for the boot check's negative tests
# (and one workaround), editing its ext4 partitions offline with debugfs:
#
#   tests/boot/variant.sh IMAGE OUT drop-image REPO
#       removes image REPO (e.g. demo/db) from the preloaded engine store on
#       resin-data (its repositories.json entries and image config), so the
#       agent cannot start that service: boot.sh --expect-problem db-missing-image
#   tests/boot/variant.sh IMAGE OUT swap-unit-symlink
#       moves kiln's swap unit from swap.target.wants/ (a regular file there
#       is ignored by systemd: "dependency dropin is not a symlink") to
#       /etc/systemd/system/ and links it from swap.target.wants/, as
#       `systemctl enable` does. Stand-in until kiln writes it that way.
#
# Needs: debugfs (e2fsprogs), sfdisk (fdisk), blkid (util-linux), jq, losetup.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
image=$1 out=$2 kind=$3
for t in debugfs:e2fsprogs sfdisk:fdisk blkid:util-linux jq:jq losetup:mount; do
  command -v "${t%%:*}" >/dev/null || { echo "variant.sh: missing ${t%%:*} (apt-get install -y ${t#*:})" >&2; exit 2; }
done

cp --sparse=always "$image" "$out"
dev=''
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -z "$dev" ] || losetup -d "$dev" 2>/dev/null || true' EXIT
part() { # label -> $dev, a loop device over that partition of $out
  local start size d
  while read -r start size; do
    d=$(losetup -f --show -o $((start * 512)) --sizelimit $((size * 512)) "$out")
    if [ "$(blkid -p -o value -s LABEL "$d" 2>/dev/null)" = "$1" ]; then dev=$d; return 0; fi
    losetup -d "$d"
  done < <(sfdisk -J "$out" | jq -r '.partitiontable.partitions[] | "\(.start) \(.size)"')
  echo "variant.sh: no partition labelled $1 in $out" >&2; return 1
}

case $kind in
  drop-image)
    repo=${4:?drop-image needs a repository name, e.g. demo/db}
    part resin-data
    store=/docker/image/overlay2
    debugfs -R "dump $store/repositories.json $tmp/repos.json" "$dev" 2>/dev/null
    id=$(jq -r --arg r "$repo" '.Repositories[$r] // {} | to_entries[0].value // empty' "$tmp/repos.json")
    [ -n "$id" ] || { echo "variant.sh: $repo not in the store's repositories.json" >&2; exit 1; }
    jq -c --arg r "$repo" 'del(.Repositories[$r])' "$tmp/repos.json" > "$tmp/repos.new"
    chmod 0600 "$tmp/repos.new"
    debugfs -w -f - "$dev" >/dev/null 2>&1 <<EOF
rm $store/repositories.json
cd $store
write $tmp/repos.new repositories.json
rm $store/imagedb/content/sha256/${id#sha256:}
EOF
    debugfs -R "cat $store/repositories.json" "$dev" 2>/dev/null | grep -q "\"$repo\"" \
      && { echo "variant.sh: $repo still in repositories.json" >&2; exit 1; }
    echo "variant.sh: $out: $repo ($id) removed from the store"
    ;;
  swap-unit-symlink)
    part resin-rootA
    dir=/etc/systemd/system
    unit=$(debugfs -R "ls $dir/swap.target.wants" "$dev" 2>/dev/null | tr -s ' ' '\n' | grep '\.swap$' | head -n1)
    [ -n "$unit" ] || { echo "variant.sh: no swap unit in $dir/swap.target.wants" >&2; exit 1; }
    debugfs -R "dump $dir/swap.target.wants/$unit $tmp/unit" "$dev" 2>/dev/null
    chmod 0644 "$tmp/unit"
    debugfs -w -f - "$dev" >/dev/null 2>&1 <<EOF
rm $dir/swap.target.wants/$unit
cd $dir
write $tmp/unit $unit
cd $dir/swap.target.wants
symlink $unit ../$unit
EOF
    debugfs -R "stat $dir/swap.target.wants/$unit" "$dev" 2>/dev/null | grep -q 'Type: symlink' \
      || { echo "variant.sh: $unit is not a symlink after the edit" >&2; exit 1; }
    echo "variant.sh: $out: $dir/$unit, linked from swap.target.wants/"
    ;;
  *) echo "variant.sh: unknown kind $kind" >&2; exit 2 ;;
esac
e2fsck -fn "$dev" >/dev/null 2>&1 || { echo "variant.sh: e2fsck -fn fails on the edited partition" >&2; exit 1; }
