#!/usr/bin/env bash
# Puts the host's release binaries, stripped of their debug info, where the
# Dockerfile's `prebuilt` stage takes them (target/docker/bin/), after
# `cargo build --release`. Prints that directory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/target/docker/bin"
mkdir -p "$out"
for b in bsv-p2p-relay bsv-p2p-ctl bsv-p2p-health bsv-p2p-logship bsv-p2p-backup; do
  src="$root/target/release/$b"
  [[ -x "$src" ]] || { echo "stage.sh: $src missing: cargo build --release --workspace --bins" >&2; exit 1; }
  if [[ ! -e "$out/$b" || "$src" -nt "$out/$b" ]]; then
    strip -o "$out/$b.tmp" "$src" && mv "$out/$b.tmp" "$out/$b"
  fi
done
echo "$out"
