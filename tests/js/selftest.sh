#!/usr/bin/env bash
# Self-test of the js harness (no Rust involved): installs, then runs
# selftest.mjs against relay.mjs without limits and with a Limit (bots see
# "limited" connections). Each run is bounded (selftest.mjs stops itself at
# 240 s; `timeout` backs it up) and kills only the processes it started.
# Last line: "N passed, N failed".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
node="$("$here/install.sh" | tail -n 1)"

passed=0
failed=0
for mode in unlimited limited; do
  echo "== js relay, mode $mode"
  out="$(mktemp)"
  rc=0
  timeout --kill-after=10 300 "$node" "$here/selftest.mjs" --mode "$mode" "$@" | tee "$out" || rc=$?
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1 || true)"
  rm -f "$out"
  if [[ -z "$line" ]]; then
    echo "FAIL selftest.mjs --mode $mode ended without a summary (exit $rc)"
    failed=$((failed + 1))
    continue
  fi
  read -r p _ f _ <<<"$line"
  passed=$((passed + p))
  failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
