#!/usr/bin/env bash
# Makes this machine able to run the Docker deployment tests, with no
# container registry: Debian's docker.io, docker-compose (1.29) and
# debootstrap; a running dockerd; and the runtime base image
# bsv-p2p/debian-base:bookworm built by debootstrap from the Debian mirror
# this machine's apt already uses, then `docker import`ed. Idempotent.
#
# Exit codes: 0 ready; 1 a step failed (message says which); 3 dockerd cannot
# run on this machine (not root, or the kernel refuses what it needs) - the
# tests skip with the printed reason on 3 and fail on 1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
base_image="${BSV_P2P_DOCKER_BASE:-bsv-p2p/debian-base:bookworm}"
suite=bookworm
state="${BSV_P2P_DOCKER_STATE:-/var/lib/bsv-p2p-docker-test}"
dockerd_log="$state/dockerd.log"

die() { echo "install.sh: $*" >&2; exit 1; }
cannot_run() { echo "install.sh: dockerd cannot run here: $*" >&2; exit 3; }

[[ "$(id -u)" == 0 ]] || cannot_run "not root (dockerd and debootstrap need root; run as root or use a machine where dockerd runs)"
mkdir -p "$state"

# 1. packages
need=()
for cmd_pkg in dockerd:docker.io docker-compose:docker-compose debootstrap:debootstrap; do
  [[ -x "$(command -v "${cmd_pkg%%:*}" || true)" ]] || need+=("${cmd_pkg#*:}")
done
if ((${#need[@]})); then
  echo "install.sh: apt-get install ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends \
    "${need[@]}" >&2 || die "apt-get install ${need[*]} failed"
fi

# 2. the daemon
if ! docker info >/dev/null 2>&1; then
  [[ -w /sys/fs/cgroup ]] || grep -q cgroup /proc/mounts || cannot_run "no cgroup filesystem"
  echo "install.sh: starting dockerd (log: $dockerd_log)" >&2
  nohup dockerd >"$dockerd_log" 2>&1 &
  echo $! > "$state/dockerd.pid"
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    if ! kill -0 "$(cat "$state/dockerd.pid")" 2>/dev/null; then
      cannot_run "dockerd exited at start; last lines of $dockerd_log: $(tail -n 5 "$dockerd_log" | tr '\n' ' ')"
    fi
    sleep 1
  done
  docker info >/dev/null 2>&1 || cannot_run "dockerd did not answer within 60 s; see $dockerd_log"
fi
# A daemon that runs but cannot start containers (no privileges for
# namespaces) is the same as none for these tests.
if docker image inspect "$base_image" >/dev/null 2>&1; then
  docker run --rm --network none "$base_image" true >/dev/null 2>&1 \
    || cannot_run "dockerd cannot start a container: $(docker run --rm --network none "$base_image" true 2>&1 | tail -n 1)"
  echo "install.sh: docker, docker-compose and $base_image ready" >&2
  exit 0
fi

# 3. the base image: the mirror is the one apt uses here, never a name in this file
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -f "$f" ]] || continue
  mirror="$(awk '/^URIs:/ {print $2; exit}' "$f")"
  [[ -n "$mirror" && "$mirror" != *security* ]] && break
done
if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
  mirror="$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)"
fi
[[ -n "$mirror" ]] || die "no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
rootfs="$(mktemp -d "$state/rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT
echo "install.sh: debootstrap --variant=minbase $suite from $mirror" >&2
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$state/debootstrap.log" 2>&1 \
  || die "debootstrap failed; see $state/debootstrap.log"
# Slim the way debian:bookworm-slim does: no apt lists, no docs or man pages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log
tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$base_image" >/dev/null \
  || die "docker import of $rootfs failed"
docker run --rm --network none "$base_image" true \
  || cannot_run "dockerd cannot start a container from $base_image"
echo "install.sh: docker, docker-compose and $base_image ready" >&2
