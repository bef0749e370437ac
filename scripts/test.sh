#!/usr/bin/env bash
# Quick start, part two: installs what is needed and runs the whole test suite (unit and end-to-end:
# real registry, real runc containers on overlayfs, outputs read back with skopeo and umoci).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx vitest run "$@"
