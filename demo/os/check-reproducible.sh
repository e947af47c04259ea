#!/usr/bin/env bash
# Reproducibility check of the demo OS: builds it a second time from
# scratch in a separate cache (reusing only the downloaded .debs, so the
# package versions are the same) and compares the SHA256SUMS of both
# builds (rootfs.tar, bios-boot.img, bootx64.efi, grub.cfg) and base.tar.
# Takes as long as a fresh build (5-10 min). Exit 1 on any difference.
#   demo/os/check-reproducible.sh [ARCH]
set -euo pipefail
arch=${1:-amd64}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KILN_CACHE:-$repo/.cache}
"$here/make-os.sh" "$arch" >/dev/null
second=$(mktemp -d /var/tmp/kiln-demo-os-repro.XXXXXX)
trap 'rm -rf "$second"' EXIT
mkdir -p "$second/demo-os"
cp -r "$cache/demo-os/debs-$arch" "$second/demo-os/"
KILN_CACHE=$second "$here/make-os.sh" "$arch" >/dev/null
a=$cache/demo-os/$arch b=$second/demo-os/$arch
if cmp -s "$a/SHA256SUMS" "$b/SHA256SUMS" && cmp -s "$a/base.tar" "$b/base.tar"; then
  echo "demo OS $arch is reproducible:"; cat "$a/SHA256SUMS"
else
  echo "demo OS $arch is NOT reproducible:" >&2
  diff "$a/SHA256SUMS" "$b/SHA256SUMS" >&2 || true
  cmp "$a/base.tar" "$b/base.tar" >&2 || true
  exit 1
fi
