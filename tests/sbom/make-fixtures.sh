#!/usr/bin/env bash
# Inputs for the SBOM tests (tests/e2e/sbom.rs), into OUT (default
# target/sbom-fixtures), made offline from what this Debian machine has installed:
#   rootfs.tar.gz  the demo busybox root filesystem plus this machine's
#                  dpkg database, its packages' copyright files and its
#                  os-release (a real Debian package database)
#   deb.oci        an image of two layers: busybox, dpkg-query with its
#                  libraries and the first 40 packages of that database;
#                  the second layer keeps 30 of them and deletes one
#                  copyright file (a whiteout)
#   gone.oci       deb.oci's first layer, then a layer that deletes
#                  /var/lib/dpkg (a whiteout of the directory)
#   compose.yml    a compose file naming both images
# Needs: umoci, dpkg-deb, tar, gzip. Rebuilt when missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$repo/target/sbom-fixtures}
[ -s "$out/compose.yml" ] && exit 0
sde=1700000000
created=$(date -u -d "@$sde" +%Y-%m-%dT%H:%M:%SZ)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/out"

# --- root filesystem --------------------------------------------------------
r=$work/rootfs; mkdir -p "$r/var/lib/dpkg"
tar -xzf "$repo/.cache/demo/rootfs-amd64.tar.gz" -C "$r"
cp /var/lib/dpkg/status "$r/var/lib/dpkg/status"
rm -f "$r/etc/os-release"; cp -L /etc/os-release "$r/etc/os-release"
(cd / && find usr/share/doc -mindepth 2 -maxdepth 2 -name copyright -type f | sort) \
  | tar -C / -cf - --no-recursion -T - | tar -C "$r" -xf -
tar --sort=name --mtime="@$sde" --owner=0 --group=0 --numeric-owner -C "$r" -cf - . \
  | gzip -n > "$work/out/rootfs.tar.gz"

# --- images ---------------------------------------------------------------
# The first n package paragraphs of this machine's database.
paragraphs() { awk -v n="$1" 'BEGIN{RS="";ORS="\n\n"} NR<=n' /var/lib/dpkg/status; }
deb=$(ls "$repo"/.cache/debs-amd64/busybox-static_*_amd64.deb | head -n1)
base_layer() {
  local b=$1/rootfs
  dpkg-deb -x "$deb" "$work/bb"
  mkdir -p "$b/bin" "$b/usr/bin" "$b/lib64" "$b/lib/x86_64-linux-gnu" "$b/var/lib/dpkg/info" "$b/var/lib/dpkg/updates" "$b/usr/share/doc"
  cp "$work/bb/bin/busybox" "$b/bin/busybox"; ln -sf busybox "$b/bin/sh"
  cp /usr/bin/dpkg-query "$b/usr/bin/"
  for l in $(ldd /usr/bin/dpkg-query | awk '/=>/ {print $3}'); do cp -L "$l" "$b/lib/x86_64-linux-gnu/"; done
  cp -L /lib64/ld-linux-x86-64.so.2 "$b/lib64/"
  paragraphs 40 > "$b/var/lib/dpkg/status"
  for p in $(awk '/^Package:/ {print $2}' "$b/var/lib/dpkg/status"); do
    [ -f "/usr/share/doc/$p/copyright" ] && mkdir -p "$b/usr/share/doc/$p" && cp "/usr/share/doc/$p/copyright" "$b/usr/share/doc/$p/"
  done
  true
}
image() {
  local name=$1 oci=$work/out/$1.oci b=$work/bundle-$1
  umoci init --layout "$oci"
  umoci new --image "$oci:1"
  umoci config --no-history --image "$oci:1" --created "$created" --config.cmd /bin/sh --architecture amd64 --os linux
  umoci unpack --image "$oci:1" "$b" >/dev/null
  base_layer "$b"
  umoci repack --history.created "$created" --image "$oci:1" "$b"
  rm -rf "$b"; umoci unpack --image "$oci:1" "$b" >/dev/null
  case $name in
    deb)
      paragraphs 30 > "$b/rootfs/var/lib/dpkg/status"
      rm -f "$(ls -d "$b"/rootfs/usr/share/doc/*/copyright | head -n1)" ;;
    gone) rm -rf "$b/rootfs/var/lib/dpkg" ;;
  esac
  umoci repack --history.created "$created" --image "$oci:1" "$b"
  umoci gc --layout "$oci"
  rm -rf "$b" "$work/bb"
}
image deb
image gone
cat > "$work/out/compose.yml" <<'EOT'
version: "2.1"
services:
  deb:
    image: sbom/deb:1
  gone:
    image: sbom/gone:1
EOT
mkdir -p "$(dirname "$out")"; rm -rf "$out"; mv "$work/out" "$out"
echo "SBOM test inputs ready in $out"
