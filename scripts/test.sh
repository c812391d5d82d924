#!/usr/bin/env bash
# The project's test command (README): on a fresh Debian/Ubuntu machine it installs everything,
# then runs every linter and the whole test suite, container tests included, against the built
# wheel (not the source tree).
#   bash scripts/test.sh [PYTEST ARGS...]
# Environment: VENV (default .work/venv: the editable install the linters use), SKIP_APT=1
# (tools already installed), SKIP_LINT=1, SKIP_COVERAGE=1 (plain pytest, no coverage table or
# gate).
# Fails if any linter or test fails, if no test ran at all (pytest exit 5), and if line+branch
# coverage of the core is below 95 % (scripts/coverage_gate.py; judged only on a full run, i.e.
# without PYTEST ARGS).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$REPO/.work/venv}
cd "$REPO"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

T0=$SECONDS
TIMINGS=()
phase() {  # phase NAME CMD...: run one phase, record its duration, stop at the first failure
  local name=$1 start=$SECONDS rc=0
  shift
  echo "=== [$name] $(date -u +%H:%M:%S)"
  "$@" || rc=$?
  TIMINGS+=("$(printf '%-10s %4ss  %s' "$name" $((SECONDS - start)) "$([ $rc = 0 ] && echo ok || echo "FAILED ($rc)")")")
  if [ $rc != 0 ]; then report; exit "$rc"; fi
}
report() {
  echo "=== timings"
  printf '  %s\n' "${TIMINGS[@]}"
  echo "  total      $((SECONDS - T0))s"
}

# Debian packages: Python for the venv, redis-server and git (real servers the tests start),
# podman + runc + debootstrap (the container tests: scripts/container.sh), shellcheck (lint),
# nginx-light (the listener's documented reverse proxy, tested under a slowloris), rsync
# (gitlab-ci-local copies job files with it).
APT_PACKAGES=(python3 python3-venv python3-pip git redis-server podman runc debootstrap
  ca-certificates shellcheck openssl util-linux nginx-light rsync)
# shellcheck source=scripts/lib/apt.sh
. "$REPO/scripts/lib/apt.sh"

venv() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -e '.[test,lint]'
}

# The package under test: the sdist and the wheel built once from the checkout with the hashed
# build tools (as release.yml builds them), the wheel installed into a new venv after the image's
# hashed lock (the same dependency versions as the image) with the test extra. pytest runs with
# that venv's python, so the tests and every process they start import the installed wheel;
# under CI tests/support/product.py stops the run if they do not. The image phase installs the
# same wheel (WHEEL_DIR).
WHEEL_VENV=$REPO/.work/wheel-venv
DIST=$REPO/.work/dist
export WHEEL_DIR=$REPO/.work/wheel
wheel() {
  local build=$REPO/.work/build-venv
  [ -x "$build/bin/python" ] || python3 -m venv "$build"
  "$build/bin/pip" install -q --require-hashes --only-binary=:all: -r requirements/build.txt
  rm -rf "$DIST" "$WHEEL_DIR" "$WHEEL_VENV"
  "$build/bin/python" -m build --no-isolation --outdir "$DIST" . >"$REPO/.work/build.log" 2>&1 \
    || { tail -30 "$REPO/.work/build.log" >&2; return 1; }
  mkdir -p "$WHEEL_DIR" && cp "$DIST"/*.whl "$WHEEL_DIR"/
  python3 -m venv "$WHEEL_VENV"
  "$WHEEL_VENV/bin/pip" install -q --require-hashes --only-binary=:all: --no-deps \
    -r requirements.txt
  local wheels=("$WHEEL_DIR"/*.whl)
  "$WHEEL_VENV/bin/pip" install -q "${wheels[0]}[test]"
  "$WHEEL_VENV/bin/pip" check
  ls "$DIST"
}

# The image is built before pytest so the build has its own line in the timings; the session
# fixture then finds every layer cached.
image() {
  if ! command -v podman >/dev/null && [ "$(id -u)" != 0 ] && [ "${CI:-}" != true ]; then
    echo "no podman and not root: the container tests will be skipped (CI=true makes this fail)"
    return 0
  fi
  bash scripts/container.sh build
}

# gitlab-ci-local and the Node.js 22 it needs (npm, pinned, into .work/npm) and its helper image,
# for tests/test_gitlab_ci_local.py; nothing is downloaded again once they are in place.
gitlab_ci_local() {
  if ! command -v podman >/dev/null && [ "$(id -u)" != 0 ] && [ "${CI:-}" != true ]; then
    echo "no podman and not root: the gitlab-ci-local test will be skipped (CI=true makes this fail)"
    return 0
  fi
  bash scripts/gitlab-ci-local.sh setup
}

tests() {
  local rc=0 runner=()
  if [ "${SKIP_COVERAGE:-}" != 1 ]; then
    # pyproject.toml's [tool.coverage.run] has every Python child of the run (the action, the
    # emulator, the listener, CLI processes) record its own data file next to .coverage.
    rm -f .coverage .coverage.*
    runner=(-m coverage run)
  fi
  # CI=true makes a missing podman a failure instead of a skip (tests/support/container.py).
  "$WHEEL_VENV/bin/python" "${runner[@]}" -m pytest -p no:cacheprovider "$@" || rc=$?
  if [ $rc = 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
  fi
  return $rc
}

# Combine the data files, print the table, and fail below the bar (the core, see the script).
# A partial run (PYTEST ARGS) gets the table only.
coverage_gate() {
  "$WHEEL_VENV/bin/python" scripts/coverage_gate.py "$@"
}

if [ "${SKIP_APT:-}" != 1 ]; then phase apt apt_install "${APT_PACKAGES[@]}"; fi
phase venv venv
if [ "${SKIP_LINT:-}" != 1 ]; then phase lint env VENV="$VENV" bash scripts/lint.sh; fi
phase wheel wheel
phase image image
phase gitlab-ci gitlab_ci_local
phase pytest tests "$@"
if [ "${SKIP_COVERAGE:-}" != 1 ]; then
  if [ $# = 0 ]; then phase coverage coverage_gate; else phase coverage coverage_gate --no-gate; fi
fi
report
