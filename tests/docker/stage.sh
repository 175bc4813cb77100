#!/usr/bin/env bash
# Puts the host's binaries of the `dist` profile (what ships), stripped of
# their debug info, where the Dockerfile's `prebuilt` stage takes them
# (target/docker/bin/), after `cargo build --profile dist`. Prints that
# directory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/target/docker/bin"
mkdir -p "$out"
for b in bsv-p2p-relay bsv-p2p-ctl bsv-p2p-health bsv-p2p-logship bsv-p2p-backup; do
  src="$root/target/dist/$b"
  [[ -x "$src" ]] || { echo "stage.sh: $src missing: cargo build --profile dist -p $b" >&2; exit 1; }
  if [[ ! -e "$out/$b" || "$src" -nt "$out/$b" ]]; then
    strip -o "$out/$b.tmp" "$src" && mv "$out/$b.tmp" "$out/$b"
  fi
done
echo "$out"
