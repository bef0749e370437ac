#!/usr/bin/env bash
# Makes the busybox test image (linux/amd64 + linux/arm64/v8 + linux/arm/v7) as an OCI layout at testdata/images/busybox,
# tag 1.35, from Debian's busybox-static packages. Independent of builder's own code, so tests compare our
# output with an image nothing of ours produced. Deterministic: sorted tar entries, fixed mtimes, numeric
# owners, gzip -n. Idempotent: the layout is built in a temp dir and renamed into place, so its presence
# means it is complete.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh

OUT=images/busybox
CACHE=cache
TAG=1.35
EPOCH=1700000000 # fixed mtime for every file, and the image's created time
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
ARCHES=(amd64 arm64 armhf) # Debian architectures; armhf is OCI arm/v7
FIXTURE_VERSION=2 # bump when the image changes, so older layouts are rebuilt

if [ -f "$OUT/index.json" ] && [ "$(cat "$OUT/fixture-version" 2>/dev/null)" = "$FIXTURE_VERSION" ]; then
  exit 0
fi

# ---------------------------------------------------------------- packages
mkdir -p "$CACHE"
deb_for() { ls "$CACHE"/busybox-static_*_"$1".deb 2>/dev/null | head -n1; }
need_download=()
for arch in "${ARCHES[@]}"; do
  [ -n "$(deb_for "$arch")" ] || need_download+=("busybox-static:$arch")
done
if [ ${#need_download[@]} -gt 0 ]; then
  for arch in "${ARCHES[@]}"; do
    if ! dpkg --print-foreign-architectures | grep -qx "$arch" && [ "$(dpkg --print-architecture)" != "$arch" ]; then
      dpkg --add-architecture "$arch"
    fi
  done
  # The package lists may predate an added architecture: refresh when apt does not know one of the packages.
  for arch in "${ARCHES[@]}"; do
    # A partly failed update (a mirror in mid-sync) still refreshes what we need; check below instead.
    if ! apt-cache show "busybox-static:$arch" >/dev/null 2>&1; then apt-get update -qq || true; break; fi
  done
  for arch in "${ARCHES[@]}"; do
    apt-cache show "busybox-static:$arch" >/dev/null 2>&1 || { echo "make-busybox: apt does not know busybox-static:$arch" >&2; exit 1; }
  done
  (cd "$CACHE" && apt-get download -qq -o APT::Sandbox::User=root "${need_download[@]}")
fi

# ---------------------------------------------------------------- rootfs, layer, config, manifest per arch
start_layout make-busybox

for arch in "${ARCHES[@]}"; do
  pkg="$WORK/pkg-$arch"
  dpkg-deb -x "$(deb_for "$arch")" "$pkg"
done

# One applet list for both arches (the arm64 binary may not run here); it comes from the amd64 build.
"$WORK/pkg-amd64/bin/busybox" --list-full | LC_ALL=C sort -u >"$WORK/applets"

for arch in "${ARCHES[@]}"; do
  root="$WORK/rootfs-$arch"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,home/app,dev,proc,sys}
  install -m 0755 "$WORK/pkg-$arch/bin/busybox" "$root/bin/busybox"
  while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -s /bin/busybox "$root/$applet"
  done <"$WORK/applets"
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
staff:x:50:app
nogroup:x:65534:
app:x:1000:app
EOF
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
  chmod 0755 "$root" "$root"/{bin,sbin,usr,usr/bin,usr/sbin,etc,home,home/app,dev,proc,sys}
  chmod 0700 "$root/root"
  chmod 1777 "$root/tmp"
  chown -R 0:0 "$root"
  chown 1000:1000 "$root/home/app"

  (cd "$root" && find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort) >"$WORK/entries-$arch"
  tar -C "$root" --format=gnu --numeric-owner --mtime="@$EPOCH" --no-recursion -T "$WORK/entries-$arch" -cf "$WORK/layer-$arch.tar"
  diff_id=$(sha256sum "$WORK/layer-$arch.tar" | cut -d' ' -f1)
  layer=$(gzip -n -9 -c "$WORK/layer-$arch.tar" | put_blob)

  config=$(node - "$arch" "$diff_id" "$CREATED" <<'EOF' | put_blob
const [debArch, diffID, created] = process.argv.slice(2);
const { arch, variant } = { armhf: { arch: 'arm', variant: 'v7' }, arm64: { arch: 'arm64', variant: 'v8' } }[debArch] ?? { arch: debArch };
const config = {
  architecture: arch,
  os: 'linux',
  ...(variant ? { variant } : {}),
  config: {
    Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    Cmd: ['sh'],
  },
  rootfs: { type: 'layers', diff_ids: [`sha256:${diffID}`] },
  history: [
    { created, created_by: 'make-busybox.sh: busybox-static rootfs from Debian', comment: 'debian busybox-static' },
    { created, created_by: 'CMD ["sh"]', empty_layer: true },
  ],
  created,
};
process.stdout.write(JSON.stringify(config));
EOF
  )

  manifest=$(node - "$config" "$(blob_size "$config")" "$layer" "$(blob_size "$layer")" <<'EOF' | put_blob
const [config, configSize, layer, layerSize] = process.argv.slice(2);
const manifest = {
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${config}`, size: Number(configSize) },
  layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${layer}`, size: Number(layerSize) }],
};
process.stdout.write(JSON.stringify(manifest));
EOF
  )
  echo "$arch $manifest $(blob_size "$manifest")" >>"$WORK/manifests"
done

# ---------------------------------------------------------------- index of both platforms, tagged in index.json
index=$(node - "$WORK/manifests" <<'EOF' | put_blob
const fs = require('node:fs');
const manifests = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map((line) => {
  const [debArch, hex, size] = line.split(' ');
  const { arch, variant } = { armhf: { arch: 'arm', variant: 'v7' }, arm64: { arch: 'arm64', variant: 'v8' } }[debArch] ?? { arch: debArch };
  return {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: `sha256:${hex}`,
    size: Number(size),
    platform: { architecture: arch, os: 'linux', ...(variant ? { variant } : {}) },
  };
});
process.stdout.write(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }));
EOF
)
write_index "$index" application/vnd.oci.image.index.v1+json "$TAG"

echo "$FIXTURE_VERSION" >"$LAYOUT/fixture-version"
mkdir -p "$(dirname "$OUT")"
rm -rf "$OUT" "$OUT.partial"
mv "$LAYOUT" "$OUT.partial"
mv "$OUT.partial" "$OUT"
echo "make-busybox: wrote $OUT (tag $TAG, index sha256:$index)"
