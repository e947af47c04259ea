#!/usr/bin/env bash
# Downloads Debian packages for any architecture without touching the
# machine's own apt configuration: a private apt state/cache directory and
# sources list under $KILN_CACHE/apt-<arch>.
#   demo/apt-download.sh ARCH DESTDIR PKG...
set -euo pipefail
arch=$1; dest=$2; shift 2
cache=${KILN_CACHE:-$(cd "$(dirname "$0")/.." && pwd)/.cache}
root=$cache/apt-$arch
mkdir -p "$root"/{lists/partial,archives/partial,etc/preferences.d,etc/trusted.gpg.d} "$dest"
# Same suites and mirror as the host, read from its sources.
if [ ! -f "$root/etc/sources.list" ]; then
  suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  mirror=$(grep -rhoE '^(deb|URIs:) +(\[[^]]*\] +)?https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?$' | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  if [ -f "$keyring" ]; then sig="signed-by=$keyring"; else sig="trusted=yes"; fi
  echo "deb [$sig] $mirror $suite main non-free-firmware" > "$root/etc/sources.list"
fi
opts=(-o "APT::Architecture=$arch" -o "APT::Architectures=$arch"
      -o "Dir::State=$root" -o "Dir::State::Lists=$root/lists" -o "Dir::State::status=/dev/null"
      -o "Dir::Cache=$root" -o "Dir::Cache::archives=$root/archives"
      -o "Dir::Etc::SourceList=$root/etc/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
      -o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=$root/etc/preferences.d"
      -o "Dir::Etc::TrustedParts=$root/etc/trusted.gpg.d" -o "Acquire::Languages=none")
if [ ! -f "$root/lists/.updated" ] || [ -n "$(find "$root/lists/.updated" -mmin +1440 2>/dev/null)" ]; then
  apt-get "${opts[@]}" update -qq
  touch "$root/lists/.updated"
fi
cd "$dest"
for p in "$@"; do
  if ! ls "${p}"_*_"$arch".deb "${p}"_*_all.deb >/dev/null 2>&1; then
    apt-get "${opts[@]}" download -qq "$p:$arch" 2>/dev/null || apt-get "${opts[@]}" download -qq "$p"
  fi
done
