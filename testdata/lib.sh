# Shell helpers shared by the scripts that make test fixtures from package-registry material
# (testdata/make-busybox.sh, scripts/make-node-image.sh, scripts/test-nodes.sh). Sourced, not run.

# start_layout NAME: an empty OCI layout in a temp dir removed on exit; sets WORK (the temp dir) and LAYOUT.
start_layout() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  LAYOUT="$WORK/layout"
  mkdir -p "$LAYOUT/blobs/sha256"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
}

# Stores stdin as a blob of $LAYOUT; prints its digest hex.
put_blob() {
  local tmp="$WORK/blob.tmp" hex
  cat >"$tmp"
  hex=$(sha256sum "$tmp" | cut -d' ' -f1)
  mv "$tmp" "$LAYOUT/blobs/sha256/$hex"
  echo "$hex"
}
blob_size() { stat -c %s "$LAYOUT/blobs/sha256/$1"; }

# write_index HEX MEDIATYPE TAG [PLATFORM_JSON]: $LAYOUT/index.json naming blob HEX (a manifest or an index of
# MEDIATYPE) as TAG, with its platform when given.
write_index() {
  node - "$1" "$(blob_size "$1")" "$2" "$3" "${4:-}" >"$LAYOUT/index.json" <<'EOF'
const [hex, size, mediaType, tag, platform] = process.argv.slice(2);
process.stdout.write(JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.index.v1+json',
  manifests: [{
    mediaType,
    digest: `sha256:${hex}`,
    size: Number(size),
    ...(platform ? { platform: JSON.parse(platform) } : {}),
    annotations: { 'org.opencontainers.image.ref.name': tag },
  }],
}));
EOF
}

# fetch_npm CACHE package@version: the package unpacked in CACHE (fetched from the npm registry once);
# prints its directory.
fetch_npm() {
  local dir="$1/${2/@/-}" tmp tgz
  if [ ! -f "$dir/package.json" ]; then
    echo "fetching $2" >&2
    mkdir -p "$1"
    tmp=$(mktemp -d "$1/.fetch.XXXXXX")
    tgz=$(cd "$tmp" && npm pack "$2" --silent --loglevel=error)
    tar -xzf "$tmp/$tgz" -C "$tmp"
    rm -rf "$dir"
    mv "$tmp/package" "$dir"
    rm -rf "$tmp"
  fi
  echo "$dir"
}
