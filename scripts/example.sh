#!/usr/bin/env bash
# Quick start, part one: installs what is needed, builds examples/hello into an OCI image and runs it.
# The base image comes from a local registry (Debian's docker-registry on 127.0.0.1) holding the busybox
# test image made from Debian packages, so nothing is pulled from the internet.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

work=$(mktemp -d /tmp/builder-example.XXXXXX)
registry_pid=
cleanup() {
  local rc=$?
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  runc delete -f builder-hello >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
cat > "$work/registry.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
log:
  level: error
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
node -e 'const u=process.argv[1];(async()=>{for(let i=0;i<100;i++){try{if((await fetch(u)).ok)return}catch{}await new Promise(r=>setTimeout(r,100))}console.error("registry did not start");process.exit(1)})()' "http://127.0.0.1:$port/v2/"
skopeo copy --quiet --all --dest-tls-verify=false oci:testdata/images/busybox:1.35 "docker://127.0.0.1:$port/busybox:1.35"

echo "== builder build examples/hello"
npx builder build --progress plain \
  --build-arg "BASE=127.0.0.1:$port/busybox:1.35" \
  -t example/hello:latest \
  --output "type=oci,dest=$work/hello.tar" \
  examples/hello

echo "== run the image (umoci unpack + runc)"
mkdir -p "$work/layout" && tar -xf "$work/hello.tar" -C "$work/layout"
umoci unpack --image "$work/layout:latest" "$work/bundle" >/dev/null
# umoci's generated spec asks for a terminal; run detached from one so this works in CI too.
node -e 'const f=process.argv[1],fs=require("fs"),c=JSON.parse(fs.readFileSync(f));c.process.terminal=false;fs.writeFileSync(f,JSON.stringify(c))' "$work/bundle/config.json"
runc run --bundle "$work/bundle" builder-hello </dev/null
