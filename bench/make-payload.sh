#!/usr/bin/env bash
# Makes the realistic end-to-end benchmark payload (make bench, issue 6)
# from Debian packages, cached under .cache/bench/ (rebuilt only when this
# script changes):
#   rootfs.tar    a Debian bookworm root filesystem (mmdebstrap --variant=apt
#                 plus systemd, openssh, python3, ...: ~280 MB, ~12k entries)
#   store/*.oci   the engine-store payload: three OCI image layouts (bench/api,
#                 bench/worker, bench/web; ~650 MB, ~29k entries unpacked)
#                 sharing one base layer, cut from a second mmdebstrap tree
#                 (minbase + python3-numpy, gcc/g++, git, perl, npm) by path:
#                 base | python | toolchain | node modules. Docs and man pages
#                 are left out, as slim images do. Each layout's index has one
#                 manifest with platform linux/arm/v7 (fin-cm3 is armv7; the
#                 preload never runs the files, so amd64 content is fine).
# The compose file (bench/payload-compose.yml) and the recipe
# (bench/fin-bench.toml, 1 GiB swapfile, fin-cm3 layout) reference them.
# Needs: mmdebstrap python3 (Debian: mmdebstrap python3) and network to
# deb.debian.org on the first run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${BENCH_CACHE:-$repo/.cache/bench}
mkdir -p "$out"
for t in mmdebstrap python3; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y $t" >&2; exit 1; }
done
stamp=$(sha256sum "$0" | cut -c1-64)
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ]; then
  echo "bench payload up to date in $out"; exit 0
fi
rm -f "$out/.stamp"
mirror=http://deb.debian.org/debian
if [ ! -s "$out/rootfs.tar" ]; then
  mmdebstrap --quiet --variant=apt --format=tar \
    --include=systemd,systemd-sysv,udev,iproute2,openssh-server,curl,less,kmod,procps,vim-tiny,python3,iptables,ca-certificates \
    bookworm "$out/rootfs.tar.tmp" "$mirror"
  mv "$out/rootfs.tar.tmp" "$out/rootfs.tar"
fi
if [ ! -s "$out/store-tree.tar" ]; then
  mmdebstrap --quiet --variant=minbase --format=tar \
    --include=python3-numpy,python3-pip,perl,git,gcc,g++,make,npm \
    bookworm "$out/store-tree.tar.tmp" "$mirror"
  mv "$out/store-tree.tar.tmp" "$out/store-tree.tar"
fi
rm -rf "$out/store"
python3 - "$out/store-tree.tar" "$out/store" <<'EOP'
# Splits the tree into layers by path and writes OCI image layouts.
import gzip, hashlib, json, os, sys, tarfile

src, dst = sys.argv[1], sys.argv[2]
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))
SKIP = ("usr/share/doc/", "usr/share/man/", "usr/share/info/")
NODE_SKIP = ("core-js", "core-js-pure", "@types", "@babel")
def group(name):
    if name.startswith(SKIP):
        return None
    if name.startswith("usr/share/nodejs/"):
        top = name.split("/")[3] if name.count("/") >= 3 else ""
        return None if top in NODE_SKIP else "node"
    if name.startswith(("usr/lib/python3/", "usr/lib/python3.11/")):
        return "python"
    if name.startswith(("usr/lib/gcc/", "usr/libexec/gcc/", "usr/include/")):
        return "toolchain"
    return "base"

os.makedirs(dst, exist_ok=True)
tmp = os.path.join(dst, ".layers")
os.makedirs(tmp, exist_ok=True)
layers = {g: tarfile.open(os.path.join(tmp, g + ".tar"), "w", format=tarfile.PAX_FORMAT)
          for g in ("base", "python", "toolchain", "node")}
added = {g: set() for g in layers}
dirs, where = {}, {}
with tarfile.open(src, "r:") as t:
    for m in t:
        name = m.name[2:] if m.name.startswith("./") else m.name
        name = name.rstrip("/")
        if not name or name == ".":
            continue
        m.name = name
        if m.islnk():
            target = m.linkname[2:] if m.linkname.startswith("./") else m.linkname
            m.linkname = target
            g = where.get(target)
        else:
            g = group(name + ("/" if m.isdir() else ""))
        if m.isdir():
            dirs[name] = m
        if g is None:
            continue
        w = layers[g]
        # Parent directories first, so every layer stands on its own.
        parts = name.split("/")
        for i in range(1, len(parts)):
            p = "/".join(parts[:i])
            if p not in added[g] and p in dirs:
                w.addfile(dirs[p]); added[g].add(p)
        if name in added[g]:
            continue
        w.addfile(m, t.extractfile(m) if m.isreg() else None)
        added[g].add(name)
        if m.isreg():
            where[name] = g
for w in layers.values():
    w.close()

def blob(layout, data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)

def gz_layer(layout, g, cache={}):
    if g not in cache:
        raw = hashlib.sha256()
        path = os.path.join(tmp, g + ".tar.gz")
        with open(os.path.join(tmp, g + ".tar"), "rb") as f, \
             open(path, "wb") as o, gzip.GzipFile(fileobj=o, mode="wb", compresslevel=1, mtime=0, filename="") as z:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                raw.update(b); z.write(b)
        cz = hashlib.sha256()
        with open(path, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                cz.update(b)
        cache[g] = ("sha256:" + raw.hexdigest(), "sha256:" + cz.hexdigest(), os.path.getsize(path), path)
    diff, digest, size, path = cache[g]
    target = os.path.join(layout, "blobs", "sha256", digest[7:])
    if not os.path.exists(target):
        os.link(path, target)
    return diff, digest, size

apps = {
    "api": (["base", "python"], ["/usr/bin/python3", "-m", "http.server", "8080"], "8080/tcp"),
    "worker": (["base", "toolchain"], ["/bin/sh", "-c", "sleep infinity"], None),
    "web": (["base", "node"], ["/usr/bin/node", "-e", "require('http').createServer((q,r)=>r.end('ok')).listen(8000)"], "8000/tcp"),
}
created = __import__("datetime").datetime.fromtimestamp(EPOCH, __import__("datetime").timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
for app, (groups, cmd, port) in apps.items():
    layout = os.path.join(dst, app + ".oci")
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    ls = [gz_layer(layout, g) for g in groups]
    cfg = {"architecture": "arm", "variant": "v7", "os": "linux", "created": created,
           "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": cmd},
           "rootfs": {"type": "layers", "diff_ids": [l[0] for l in ls]},
           "history": [{"created": created, "created_by": "bench layer " + g} for g in groups]}
    if port:
        cfg["config"]["ExposedPorts"] = {port: {}}
    cd, cs = blob(layout, json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode())
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l[1], "size": l[2]} for l in ls]}
    md, ms = blob(layout, json.dumps(man, sort_keys=True, separators=(",", ":")).encode())
    idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
           "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
                          "platform": {"architecture": "arm", "os": "linux", "variant": "v7"},
                          "annotations": {"io.containerd.image.name": "bench/%s:1.0" % app,
                                          "org.opencontainers.image.ref.name": "1.0"}}]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(idx, f, sort_keys=True, separators=(",", ":"))
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
n = {g: len(added[g]) for g in added}
sz = {g: os.path.getsize(os.path.join(tmp, g + ".tar")) for g in layers}
print("layers (entries, tar bytes):", {g: (n[g], sz[g]) for g in n}, "total", sum(n.values()), sum(sz.values()))
__import__("shutil").rmtree(tmp)
EOP
echo "$stamp" > "$out/.stamp"
echo "bench payload written to $out: rootfs.tar store/{api,worker,web}.oci"
