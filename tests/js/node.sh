#!/usr/bin/env bash
# Runs the Node 22 that install.sh put under tests/js/node_modules (the
# machine's own node may be older than js-libp2p 3.x needs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
node="$here/node_modules/node/bin/node"
if [[ ! -x "$node" ]]; then
  echo "node.sh: $node missing; run $here/install.sh first" >&2
  exit 127
fi
exec "$node" "$@"
