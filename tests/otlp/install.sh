#!/usr/bin/env bash
# Installs the OTLP side of the end-to-end tests: a Python venv at
# tests/otlp/.venv with the exact versions of requirements.txt (oteltap,
# rotel, opentelemetry-proto). Idempotent: a second run with an unchanged
# requirements.txt and the same python only checks that the packages import.
# Needs python3 >= 3.9 with the venv module (Debian: python3-venv).
# Also links .venv/bin/rotel-agent to the collector binary the rotel wheel
# ships. Last line of output: the venv's python.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

die() { echo "install.sh: $*" >&2; exit 1; }

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || die "$python not found (apt-get install python3 python3-venv)"
venv="$here/.venv"
stamp="$venv/.install-stamp"
want="$({ cat requirements.txt; "$python" -c 'import sys; print(sys.version, sys.executable)'; } | sha256sum | cut -d' ' -f1)"

works() {
  "$venv/bin/python" -c 'import oteltap, rotel, opentelemetry.proto.collector.logs.v1.logs_service_pb2' 2>/dev/null \
    && [[ -x "$venv/bin/oteltap" && -x "$venv/bin/rotel-agent" ]]
}

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && works; then
  echo "install.sh: $venv up to date" >&2
else
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2 \
    || die "'$python -m venv' failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    --require-virtualenv -r requirements.txt >&2 || die "pip install failed"
  agent="$("$venv/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')"
  [[ -x "$agent" ]] || die "the rotel wheel has no collector binary at $agent"
  ln -sf "$agent" "$venv/bin/rotel-agent"
  works || die "the packages of requirements.txt do not import in $venv"
  echo "$want" > "$stamp"
fi

"$venv/bin/rotel-agent" --version >/dev/null 2>&1 || die "$venv/bin/rotel-agent does not run"
echo "install.sh: oteltap, rotel and opentelemetry-proto ready in $venv" >&2
echo "$venv/bin/python"
