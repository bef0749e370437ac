#!/usr/bin/env bash
# Builds the native addon's prebuilt binaries, which are committed to git and shipped in the package, so
# that neither a clone nor an install needs a C compiler on these platforms:
#   prebuilds/linux-x64/node.napi.glibc.node     compiled natively with gcc
#   prebuilds/linux-arm64/node.napi.glibc.node   cross-compiled with Debian's gcc-aarch64-linux-gnu
# Names and layout are prebuildify's (--napi --tag-libc), as node-gyp-build looks them up: one Node-API
# binary serves every Node version, the `glibc` tag keeps it off musl. src/native/fsx.ts finds them the
# same way at run time; scripts/install-native.mjs compiles (node-gyp) only where none of them loads.
#
# Compiled against the node-api-headers package (a devDependency): Node-API's headers only (node_api.h,
# js_native_api.h and their _types), not the Node headers node-gyp downloads, so the binaries use no V8,
# libuv or OpenSSL ABI (src/native/sha256.c takes OpenSSL's SHA-256 from the process when it is there).
# glibc symbol versions are held at 2.28 or older (what official Node 20+ builds require themselves);
# the script fails if a newer one creeps in.
#
# Each binary carries the digest of the sources it was built from (exports.sourceDigest):
# test/native/prebuilds.test.ts fails when the committed prebuilds are older than src/native.
#   scripts/prebuild.sh           install the compilers if missing (Debian, as root), build both
#   scripts/prebuild.sh --check   exit 1 unless both prebuilds match the sources (scripts/setup.sh uses it)
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

SOURCES=(src/native/*.c src/native/*.h)
# The digest of the sources: sha256 of `sha256sum` lines in name order (the test computes it alike).
digest=$(sha256sum "${SOURCES[@]}" | sed 's| src/native/| |' | sha256sum | cut -c1-64)
TARGETS=(x64 arm64)
out() { echo "prebuilds/linux-$1/node.napi.glibc.node"; }

if [ "${1:-}" = --check ]; then
  for t in "${TARGETS[@]}"; do grep -qF "$digest" "$(out "$t")" 2>/dev/null || exit 1; done
  exit 0
fi

missing=()
command -v gcc >/dev/null || missing+=(gcc)
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
dpkg-query -W -f='${Status}' libc6-dev-arm64-cross 2>/dev/null | grep -q 'install ok installed' || missing+=(libc6-dev-arm64-cross)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "prebuild: run as root to install ${missing[*]}" >&2; exit 1; fi
  echo "prebuild: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq || true; apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

headers=node_modules/node-api-headers/include
[ -f "$headers/node_api.h" ] || { echo "prebuild: $headers missing (run npm ci)" >&2; exit 1; }

for t in "${TARGETS[@]}"; do
  case $t in
    x64) cc=gcc ;;
    arm64) cc=aarch64-linux-gnu-gcc ;;
  esac
  dest=$(out "$t")
  mkdir -p "$(dirname "$dest")"
  # NAPI_VERSION 8: Node 12.22+/14.17+/16+, below every Node in `engines`.
  "$cc" -shared -fPIC -O2 -Wall -Werror -fvisibility=hidden -pthread -s -Wl,-z,noexecstack \
    -I"$headers" -DNAPI_VERSION=8 -DNODE_GYP_MODULE_NAME=fsx -DFSX_SOURCE_DIGEST="\"$digest\"" \
    -o "$dest.tmp" $(printf '%s\n' "${SOURCES[@]}" | grep '\.c$')
  newest=$(readelf --dyn-syms -W "$dest.tmp" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
  if [ "$(printf '%s\n2.28\n' "$newest" | sort -V | tail -1)" != 2.28 ]; then
    echo "prebuild: $dest needs glibc $newest (more than 2.28):" >&2
    readelf --dyn-syms -W "$dest.tmp" | grep -E "GLIBC_$newest" >&2
    rm -f "$dest.tmp"
    exit 1
  fi
  mv "$dest.tmp" "$dest"
  echo "prebuild: $dest ($(stat -c %s "$dest") bytes, glibc >= $newest)"
done
