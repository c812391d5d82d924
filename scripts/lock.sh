#!/usr/bin/env bash
# Recompile the hashed locks with pip-tools, inside the image's base (python:3.13-slim), so the
# environment markers are evaluated for the interpreter that installs them:
#   requirements.txt          the image's runtime: pyproject.toml's dependencies + the `all` extra
#   requirements/build.txt    build frontend + backend (the image's build stage, test.sh, release)
#   requirements/release.txt  build.txt + twine (release.yml)
# Every file records its own pip-compile command in its header (Dependabot re-runs it).
#   bash scripts/lock.sh                       keep the pins, re-resolve what changed
#   bash scripts/lock.sh --upgrade             newest versions the specifiers allow
#   bash scripts/lock.sh --upgrade-package X   one package
# Needs docker, or podman through scripts/container.sh (which makes the base where no registry
# is reachable), and PyPI.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${BASE_TAG:-docker.io/library/python:3.13-slim}
PIP_TOOLS=pip-tools==7.6.2  # bump on purpose: its output format is what reviewers read

if docker info >/dev/null 2>&1; then
  engine=(docker)
else
  bash "$REPO/scripts/container.sh" setup
  engine=(bash "$REPO/scripts/container.sh" podman)
fi

# Flags shared by every lock. --allow-unsafe: setuptools is a build dependency here.
# --no-emit-index-url: the locks name no index, so a mirror configured here never leaks into them.
# EXTRA (this script's arguments) is split into words on purpose. The files end up owned by the
# caller, with LF line ends.
# shellcheck disable=SC2016 # the script runs in the container: its $VARS expand there
"${engine[@]}" run --rm --network host -v "$REPO:/src" -w /src \
  -e "PIP_TOOLS=$PIP_TOOLS" -e "EXTRA=$*" -e "OWNER=$(id -u):$(id -g)" "$BASE" sh -euc '
  python -m venv /tmp/lock
  /tmp/lock/bin/pip install -q --disable-pip-version-check "$PIP_TOOLS"
  compile() {
    /tmp/lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
      --no-emit-index-url --newline=lf $EXTRA "$@"
  }
  compile --extra=all --output-file=requirements.txt pyproject.toml
  compile --output-file=requirements/build.txt requirements/build.in
  compile --output-file=requirements/release.txt requirements/release.in
  rm -rf src/*.egg-info
  chown "$OWNER" requirements.txt requirements/build.txt requirements/release.txt
'
grep -c '^[a-z0-9]' "$REPO/requirements.txt" | xargs -I{} echo "requirements.txt: {} packages"
