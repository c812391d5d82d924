#!/usr/bin/env bash
# The README's first command: run the main job and show its outputs and job summary.
#   bash scripts/demo.sh
#   VENV=DIR bash scripts/demo.sh   the package installed in that venv, e.g. the built wheel
#                                   (.work/wheel-venv after scripts/test.sh); by default
#                                   .work/venv, made with an editable install if it is missing
# With STREAMPIXEL_API_KEY, STREAMPIXEL_USER_ID and STREAMPIXEL_PROJECT_ID set, it works on that
# real account: it distributes STREAMPIXEL_UPLOAD_ID if set, else uploads STREAMPIXEL_FILE_URL
# (one write call against the account's rate limit either way). Without them it starts the
# bundled emulator on loopback and shows the whole flow on its demo account: upload a build by a
# presigned-looking link (held, auto-release false), then distribute that same build; the second
# call waits for its slot in the same queue, which the last command shows.
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

# Run one command as the GitHub runner would: outputs and the summary go to files printed after.
step() {
  local name=$1; shift
  export GITHUB_ACTIONS=true GITHUB_OUTPUT="$WORK/$name.output" GITHUB_STEP_SUMMARY="$WORK/$name.md"
  : >"$GITHUB_OUTPUT"; : >"$GITHUB_STEP_SUMMARY"
  echo "===== streampixel-distribute $*"
  local rc=0
  "$SPD" "$@" || rc=$?
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
  return "$rc"
}

output_of() {  # output_of STEP NAME: one output of an earlier step
  "$VENV/bin/python" - "$WORK/$1.output" "$2" <<'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
for i, line in enumerate(lines):
    if line.startswith(sys.argv[2] + "<<"):
        print(lines[i + 1])
PY
}

if [ -n "${STREAMPIXEL_API_KEY:-}" ]; then
  if [ -n "${STREAMPIXEL_UPLOAD_ID:-}" ]; then
    step distribute distribute
  else
    step upload upload
  fi
  exit
fi

echo "No STREAMPIXEL_API_KEY given: using the bundled emulator and its demo account." >&2
"$SPD" emulator --port 0 --interval 5 --processing-seconds 2 --ready-file "$WORK/ready.json" \
  --quiet &
EMULATOR_PID=$!
for _ in $(seq 100); do [ -s "$WORK/ready.json" ] && break; sleep 0.1; done
URL=$("$VENV/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' \
  "$WORK/ready.json")
eval "$("$VENV/bin/python" - <<'PY'
from streampixel_distribute.emulator import DEMO
print(f"export STREAMPIXEL_API_KEY={DEMO.api_key} STREAMPIXEL_USER_ID={DEMO.user_id} "
      f"STREAMPIXEL_PROJECT_ID={DEMO.project_id}")
PY
)"
export STREAMPIXEL_API_URL="$URL" STREAMPIXEL_LEDGER="file://$WORK/ledger.json"
export STREAMPIXEL_RATE_LIMIT_INTERVAL=5
# What a packaging step would hand over: a presigned link (the emulator downloads nothing).
STREAMPIXEL_FILE_URL="https://builds.example.com/demo/Build.zip?X-Amz-Expires=3600&X-Amz-Signature=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))')"
export STREAMPIXEL_FILE_URL

step upload upload --auto-release false
STREAMPIXEL_UPLOAD_ID=$(output_of upload upload-id)
export STREAMPIXEL_UPLOAD_ID
echo
step distribute distribute
echo
echo "===== streampixel-distribute queue   (who holds which slot of the account; no API key)"
env -u STREAMPIXEL_API_KEY "$SPD" queue
