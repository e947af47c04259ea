#!/bin/sh
# Builds the demo app's images (demo/api, demo/db, demo/proxy) as OCI image
# layouts, each a two-platform index (linux/amd64, linux/arm/v7), from
# Debian's busybox-static packages. Idempotent: results and downloads are
# cached under .cache/ and rebuilt only when this script or the packages
# change. Needs: umoci, dpkg-deb, apt-get, sha256sum (Debian: umoci dpkg apt coreutils).
#
# Output: .cache/demo-app/{api,db,proxy}.oci (see README.md), used with
# demo/app/docker-compose.yml. Run from anywhere; pass OUT=dir to override.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${CACHE:-$REPO/.cache}
OUT=${OUT:-$CACHE/demo-app}
# Fixed time for reproducible layers (SOURCE_DATE_EPOCH if given).
EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)

for t in umoci dpkg-deb apt-get sha256sum; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install -y umoci dpkg apt coreutils)" >&2; exit 1; }
done

# --- busybox-static .debs -------------------------------------------------
DEBS=$CACHE/debs
mkdir -p "$DEBS/amd64" "$DEBS/armhf"
deb_of() { ls "$DEBS/$1"/busybox-static_*_"$2".deb 2>/dev/null | head -n1; }

if [ -z "$(deb_of amd64 amd64)" ]; then
    (cd "$DEBS/amd64" && apt-get download busybox-static:amd64)
fi
if [ -z "$(deb_of armhf armhf)" ]; then
    # A private apt configuration: own state, cache and sources list, so
    # the machine's apt setup (and its architecture list) stays untouched.
    APT=$CACHE/apt-armhf
    mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/sources.list.d" "$APT/preferences.d"
    : > "$APT/status"
    cat > "$APT/sources.list.d/debian.sources" <<EOT
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
    set -- -o APT::Architecture=armhf -o APT::Architectures::=armhf \
        -o Dir::State::Lists="$APT/lists" -o Dir::State::status="$APT/status" \
        -o Dir::Cache="$APT" -o Dir::Cache::archives="$APT/archives" \
        -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$APT/sources.list.d" \
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$APT/preferences.d" \
        -o Debug::NoLocking=1
    apt-get "$@" -qq update
    (cd "$DEBS/armhf" && apt-get "$@" download busybox-static:armhf)
fi
DEB_AMD64=$(deb_of amd64 amd64)
DEB_ARMHF=$(deb_of armhf armhf)

# --- up to date? -----------------------------------------------------------
STAMP=$( (cat "$0" "$HERE/docker-compose.yml"; sha256sum "$DEB_AMD64" "$DEB_ARMHF") | sha256sum | cut -c1-64)
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$STAMP" ]; then
    echo "demo app up to date in $OUT"
    exit 0
fi
rm -rf "$OUT"
WORK=$OUT/.work
mkdir -p "$WORK"

# --- helpers ---------------------------------------------------------------
# add_files BUNDLE SERVICE: the service's own files in the unpacked rootfs.
add_files() {
    r=$1/rootfs
    mkdir -p "$r/www" "$r/etc"
    printf 'ok\n' > "$r/www/health"
    case $2 in
    base)
        mkdir -p "$r/tmp" "$r/var/lib/db" "$r/data"
        chmod 1777 "$r/tmp"
        printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$r/etc/passwd"
        printf 'root:x:0:\nnogroup:x:65534:\n' > "$r/etc/group"
        ln -sf busybox "$r/bin/sh"
        rm -rf "$r/www" ;;
    api)
        printf '{"service":"api","version":"1.0"}\n' > "$r/www/index.html" ;;
    db)
        mkdir -p "$r/www"
        printf '#!/bin/sh\n# tiny "database": a key/value directory, health over HTTP\nmkdir -p "$DB_DIR"\ndate > "$DB_DIR/started"\nexec /bin/busybox httpd -f -p 8081 -h /www\n' > "$r/db.sh"
        chmod 0755 "$r/db.sh" ;;
    proxy)
        printf '<h1>BoB demo</h1>\n' > "$r/www/index.html" ;;
    esac
    find "$r" -exec touch -h -d "@$EPOCH" {} +
}

# image ARCH DEB SERVICE: builds $WORK/<service>-<arch>.oci, returns nothing.
build_arch() {
    arch=$1 deb=$2 svc=$3
    L=$WORK/$svc-$arch.oci
    B=$WORK/bundle-$svc-$arch
    BASE=$WORK/base-$arch.oci
    if [ ! -d "$BASE" ]; then
        umoci init --layout "$BASE"
        umoci new --image "$BASE:base"
    umoci config --no-history --image "$BASE:base" --created "$CREATED"
        rm -rf "$WORK/bundle-base-$arch"
        umoci unpack --image "$BASE:base" "$WORK/bundle-base-$arch" >/dev/null
        dpkg-deb -x "$deb" "$WORK/bundle-base-$arch/rootfs"
        rm -rf "$WORK/bundle-base-$arch/rootfs/usr"
        add_files "$WORK/bundle-base-$arch" base
        umoci repack --history.created "$CREATED" --history.created_by "busybox-static $arch" --image "$BASE:base" "$WORK/bundle-base-$arch"
    fi
    cp -a "$BASE" "$L"
    rm -rf "$B"
    umoci unpack --image "$L:base" "$B" >/dev/null
    add_files "$B" "$svc"
    umoci repack --history.created "$CREATED" --history.created_by "demo $svc files" --image "$L:base" "$B"
    case $arch in amd64) a=amd64 ;; armhf) a=arm ;; esac
    case $svc in
    api)   cmd='--config.cmd=/bin/busybox --config.cmd=httpd --config.cmd=-f --config.cmd=-p --config.cmd=8080 --config.cmd=-h --config.cmd=/www'; port=8080/tcp ;;
    db)    cmd='--config.cmd=/db.sh'; port=8081/tcp ;;
    proxy) cmd='--config.cmd=/bin/busybox --config.cmd=httpd --config.cmd=-f --config.cmd=-p --config.cmd=8000 --config.cmd=-h --config.cmd=/www'; port=8000/tcp ;;
    esac
    # shellcheck disable=SC2086
    umoci config --no-history --image "$L:base" --tag 1.0 --os linux --architecture "$a" \
        --config.env PATH=/bin --config.exposedports "$port" \
        --config.label "org.opencontainers.image.title=demo-$svc" $cmd \
        --created "$CREATED"
    umoci gc --layout "$L"
}

# Field of the descriptor tagged "1.0" in a layout's index.json.
desc_of() {
    sed 's/},{/}\n{/g' "$1/index.json" | grep '"org.opencontainers.image.ref.name":"1.0"' \
        | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" | head -n1
}

for svc in api db proxy; do
    build_arch amd64 "$DEB_AMD64" "$svc"
    build_arch armhf "$DEB_ARMHF" "$svc"
    # Merge both into one layout whose "1.0" is a two-platform index.
    L=$OUT/$svc.oci
    mkdir -p "$L/blobs/sha256"
    cp -n "$WORK/$svc-amd64.oci/blobs/sha256/"* "$WORK/$svc-armhf.oci/blobs/sha256/"* "$L/blobs/sha256/"
    da=$(desc_of "$WORK/$svc-amd64.oci" digest); sa=$(desc_of "$WORK/$svc-amd64.oci" size)
    dr=$(desc_of "$WORK/$svc-armhf.oci" digest); sr=$(desc_of "$WORK/$svc-armhf.oci" size)
    M=application/vnd.oci.image.manifest.v1+json
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"%s","digest":"%s","size":%s,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"%s","digest":"%s","size":%s,"platform":{"architecture":"arm","os":"linux","variant":"v7"}}]}' \
        "$M" "$da" "$sa" "$M" "$dr" "$sr" > "$WORK/index-$svc.json"
    di=$(sha256sum "$WORK/index-$svc.json" | cut -c1-64)
    si=$(wc -c < "$WORK/index-$svc.json")
    cp "$WORK/index-$svc.json" "$L/blobs/sha256/$di"
    printf '{"imageLayoutVersion":"1.0.0"}' > "$L/oci-layout"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"demo/%s:1.0","org.opencontainers.image.ref.name":"1.0"}}]}' \
        "$di" "$si" "$svc" > "$L/index.json"
done
cp "$HERE/docker-compose.yml" "$OUT/docker-compose.yml"
rm -rf "$WORK"
echo "$STAMP" > "$OUT/.stamp"
echo "demo app written to $OUT: api.oci db.oci proxy.oci docker-compose.yml"
