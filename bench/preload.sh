#!/bin/sh
# Preload benchmark: kiln (kiln-oci's `preload` example writing the store
# into a directory) vs a private dockerd doing `docker load` into a fresh
# data root; both followed by `mke2fs -d` of the result, same inputs (the
# demo app from demo/app/make-demo-app.sh, linux/amd64), one run each.
# Prints the times and the ratio. Needs root, docker.io, containerd,
# skopeo, umoci, e2fsprogs.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-oci}
W=${BENCH_DIR:-/var/tmp/kiln-bench-preload}
for t in dockerd containerd docker skopeo mke2fs; do
    command -v $t >/dev/null || { echo "missing $t (apt-get install -y docker.io containerd skopeo e2fsprogs)" >&2; exit 1; }
done
sh "$REPO/demo/app/make-demo-app.sh" >/dev/null
cargo build -q --release -p kiln-oci --example preload
PRELOAD=$CARGO_TARGET_DIR/release/examples/preload
APP=$REPO/.cache/demo-app
rm -rf "$W"; mkdir -p "$W"
# docker load wants docker-save archives: converted once, not timed.
for s in api db proxy; do
    skopeo copy -q --override-arch amd64 "oci:$APP/$s.oci:1.0" "docker-archive:$W/$s.tar:demo/$s:1.0"
done
now() { date +%s.%N; }
el() { awk "BEGIN{printf \"%.3f\", $2 - $1}"; }

# --- kiln --------------------------------------------------------------------
t0=$(now)
"$PRELOAD" --platform linux/amd64 --out "$W/kiln" --compose "$REPO/demo/app/docker-compose.yml" \
    "$APP/api.oci" "$APP/db.oci" "$APP/proxy.oci" >/dev/null
t1=$(now)
mke2fs -q -F -E root_owner=0:0 -t ext4 -d "$W/kiln" "$W/kiln.img" 256M
t2=$(now)

# --- docker load ---------------------------------------------------------------
D=$W/engine
mkdir -p "$D/ctd"
cat > "$D/ctd/config.toml" <<EOT
version = 2
root = "$D/ctd/root"
state = "$D/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$D/ctd/ctd.sock"
EOT
echo '{}' > "$D/daemon.json"
t3=$(now)
containerd --config "$D/ctd/config.toml" >"$D/containerd.log" 2>&1 &
CPID=$!
while [ ! -S "$D/ctd/ctd.sock" ]; do sleep 0.05; done
dockerd --data-root "$W/docker-root/docker" --exec-root "$D/exec" --pidfile "$D/docker.pid" \
    -H "unix://$D/docker.sock" --containerd="$D/ctd/ctd.sock" --bridge=none --iptables=false \
    --ip6tables=false --storage-driver=overlay2 --config-file "$D/daemon.json" >"$D/dockerd.log" 2>&1 &
DPID=$!
until docker -H "unix://$D/docker.sock" version >/dev/null 2>&1; do sleep 0.05; done
t4=$(now)
for s in api db proxy; do docker -H "unix://$D/docker.sock" load -q -i "$W/$s.tar" >/dev/null; done
t5=$(now)
kill "$DPID"; while kill -0 "$DPID" 2>/dev/null; do sleep 0.05; done
kill "$CPID"; while kill -0 "$CPID" 2>/dev/null; do sleep 0.05; done
t6=$(now)
mke2fs -q -F -E root_owner=0:0 -t ext4 -d "$W/docker-root" "$W/docker.img" 256M
t7=$(now)

k=$(el "$t0" "$t1"); km=$(el "$t0" "$t2"); dl=$(el "$t4" "$t5"); dt=$(el "$t3" "$t7")
echo "kiln preload (store + apps.json into a directory): ${k}s; with mke2fs -d: ${km}s"
echo "dockerd start + docker load + stop + mke2fs -d:     ${dt}s (docker load alone ${dl}s)"
awk "BEGIN{printf \"ratio (docker path / kiln+mke2fs): %.1fx; docker path / kiln alone: %.1fx\n\", $dt / $km, $dt / $k}"
