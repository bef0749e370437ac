#!/usr/bin/env bash
# Installs what builder and its tests need on Debian 12, idempotently: Debian packages (OCI runtimes,
# QEMU user emulation, a registry, independent image readers), npm packages (which also compile the
# TypeScript), the native addon's prebuilds when src/native changed, the Node builds they are tested under,
# the busybox test image made from Debian's packages, and the Node.js base image of builder's own image
# (deploy/Dockerfile) made from Debian's and npm's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
  if [ "$(id -u)" != 0 ]; then echo "setup: run as root (it installs Debian packages and runs containers)" >&2; exit 1; fi
}

PACKAGES=(runc crun skopeo umoci docker-registry apache2-utils openssl busybox-static qemu-user-static binfmt-support attr xz-utils bzip2 gzip tar zstd git mmdebstrap)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  need_root
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true # a mirror in mid-sync fails part of it; the install below says what is missing
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's Docker (dockerd 20.10, its containerd and client /usr/bin/docker): the tests that compare with what
# Docker prints start a private dockerd of their own (test/helpers/dockerd.ts: own socket, data root and
# containerd, no networking), as the guide runs BuildKit's reference. Installing it must not start the
# system's docker service (it would set up a bridge and iptables rules): a policy-rc.d that refuses service
# starts is in place for the install, unless the machine already has one. About 60 MB to fetch, ~20 s.
if ! dpkg-query -W -f='${Status}' docker.io 2>/dev/null | grep -q 'install ok installed'; then
  need_root
  echo "setup: installing Debian packages: docker.io"
  export DEBIAN_FRONTEND=noninteractive
  [ ${#missing[@]} -gt 0 ] || apt-get update -qq || true
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  if [ -n "$policy" ]; then rm -f "$policy"; trap - EXIT; fi
fi

# npm ci also runs the package's install (the native addon: the committed prebuild, compiled only where
# none loads) and prepare (tsc, then the CLI bundle) scripts.
stamp=node_modules/.setup-stamp
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
else
  npm run --silent build
fi

# The native addon: prebuilds older than src/native are rebuilt (scripts/prebuild.sh, which installs the
# cross-compiler). A local build (src/native/build, node-gyp) is loaded before them, so it is rebuilt too
# when its sources changed.
bash scripts/prebuild.sh --check || bash scripts/prebuild.sh
if [ -f src/native/build/Release/fsx.node ] && [ -n "$(find src/native -maxdepth 1 -newer src/native/build/Release/fsx.node \( -name '*.c' -o -name '*.h' -o -name '*.gyp' \))" ]; then
  npm run --silent install --build-from-source
fi

# The Node builds the prebuilds are tested under (test/native/prebuilds.test.ts), and QEMU's arm64 sysroot.
bash scripts/test-nodes.sh

bash testdata/make-busybox.sh

# deploy/Dockerfile's base images (test/server/deploy-image.test.ts): a few minutes the first time.
bash scripts/make-node-image.sh
