#!/usr/bin/env bash
# Installs the js side of the end-to-end tests: js-libp2p 3.x and a local
# Node 22 (the npm package "node" ships the binary) under tests/js/node_modules.
# Idempotent: a second run with an unchanged lock file does nothing.
# Needs npm (any Node >= 18 to run it). Last line of output: the node binary.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

die() { echo "install.sh: $*" >&2; exit 1; }

command -v npm >/dev/null || die "npm not found (apt-get install npm, or any Node.js >= 18)"

node="$here/node_modules/node/bin/node"
stamp="$here/node_modules/.install-stamp"
want="$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1 || true)"

if [[ -x "$node" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "install.sh: node_modules up to date" >&2
else
  # --engine-strict=false: npm itself may run on an older Node than the
  # packages ask for; they run on the local Node 22 installed here.
  if [[ -f package-lock.json ]]; then
    npm ci --no-audit --no-fund --engine-strict=false >&2 || die "npm ci failed"
  else
    npm install --no-audit --no-fund --engine-strict=false >&2 || die "npm install failed"
  fi
  # hash again: a first `npm install` has just written the lock file
  cat package.json package-lock.json | sha256sum | cut -d' ' -f1 > "$stamp"
fi

[[ -x "$node" ]] || die "$node missing after install (the node package's preinstall did not fetch its binary)"
version="$("$node" --version 2>&1)" || die "local node does not run: $version"
[[ "$version" == v22.* ]] || die "local node is $version, expected v22.x"
"$node" -e 'import("libp2p").then(() => process.exit(0), e => { console.error(e); process.exit(1) })' \
  || die "libp2p does not load under $version"
echo "install.sh: node $version, js-libp2p ready" >&2
echo "$node"
