#!/usr/bin/env bash
# The README's first command: run the main job once and show its outputs and job summary.
#   bash scripts/demo.sh
# With STREAMPIXEL_API_KEY, STREAMPIXEL_USER_ID, STREAMPIXEL_PROJECT_ID and STREAMPIXEL_UPLOAD_ID
# set, it distributes that real build (one write call against the account's rate limit). Without
# them it starts the bundled emulator on loopback and distributes its demo build.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$REPO/.work/venv}
WORK=$(mktemp -d)
EMULATOR_PID=""
cleanup() {
  [ -n "$EMULATOR_PID" ] && kill "$EMULATOR_PID" 2>/dev/null && wait "$EMULATOR_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ ! -x "$VENV/bin/streampixel-distribute" ]; then
  echo "Installing streampixel-distribute into $VENV ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -e "$REPO"
fi
SPD="$VENV/bin/streampixel-distribute"

if [ -z "${STREAMPIXEL_API_KEY:-}" ]; then
  echo "No STREAMPIXEL_API_KEY given: using the bundled emulator and its demo account." >&2
  "$SPD" emulator --port 0 --interval 10 --ready-file "$WORK/ready.json" --quiet &
  EMULATOR_PID=$!
  for _ in $(seq 100); do [ -s "$WORK/ready.json" ] && break; sleep 0.1; done
  URL=$("$VENV/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' \
    "$WORK/ready.json")
  eval "$("$VENV/bin/python" - <<'PY'
from streampixel_distribute.emulator import DEMO
print(f"export STREAMPIXEL_API_KEY={DEMO.api_key} STREAMPIXEL_USER_ID={DEMO.user_id} "
      f"STREAMPIXEL_PROJECT_ID={DEMO.project_id} STREAMPIXEL_UPLOAD_ID={DEMO.upload_id}")
PY
)"
  export STREAMPIXEL_API_URL="$URL" STREAMPIXEL_LEDGER="file://$WORK/ledger.json"
  export STREAMPIXEL_RATE_LIMIT_INTERVAL=10
fi

# Run it as the GitHub runner would: outputs and the summary go to files we print afterwards.
export GITHUB_ACTIONS=true GITHUB_OUTPUT="$WORK/output" GITHUB_STEP_SUMMARY="$WORK/summary.md"
: >"$GITHUB_OUTPUT"; : >"$GITHUB_STEP_SUMMARY"
rc=0
"$SPD" || rc=$?
echo
echo "----- exit code: $rc"
echo "----- outputs (\$GITHUB_OUTPUT):"
"$VENV/bin/python" - "$GITHUB_OUTPUT" <<'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
i = 0
while i < len(lines):
    if "<<" in lines[i]:
        name, delim = lines[i].split("<<", 1)
        j = lines.index(delim, i + 1)
        print(f"  {name} = {chr(10).join(lines[i + 1:j])}")
        i = j
    i += 1
PY
echo "----- job summary (\$GITHUB_STEP_SUMMARY):"
cat "$GITHUB_STEP_SUMMARY"
exit "$rc"
