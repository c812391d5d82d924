#!/usr/bin/env bash
# Build the action image with podman on a machine without a Docker engine (CI here, or a laptop
# with podman). Reused by tests/support/container.py and .ci/run. Nothing outside $WORK is
# written besides the apt packages: podman's config and storage live under $WORK.
#
#   scripts/container.sh setup          install podman/runc/debootstrap if missing, write config,
#                                        make sure the base image python:3.13-slim exists
#   scripts/container.sh build          setup + podman build of the unchanged Dockerfile, on
#                                        $BASE_TAG instead of the pinned digest
#   scripts/container.sh env            print the KEY=VALUE environment podman needs (for tools)
#   scripts/container.sh podman ARGS..  run podman with that environment
#
# Environment: WORK (default /tmp/spd-container), IMAGE (default localhost/streampixel-distribute:test),
# WHEEL_DIR (a directory holding the wheel to install instead of building one from the checkout),
# SUITE (Debian suite of the local base stand-in, default trixie = Python 3.13),
# BASE_TAG (default docker.io/library/python:3.13-slim), MIRROR (Debian mirror).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK:-/tmp/spd-container}
IMAGE=${IMAGE:-localhost/streampixel-distribute:test}
SUITE=${SUITE:-trixie}
BASE_TAG=${BASE_TAG:-docker.io/library/python:3.13-slim}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
export CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf"

log() { echo "[container] $*" >&2; }
timed() { local s=$SECONDS; "$@"; log "$((SECONDS - s))s: ${*:1:3}"; }

install_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  # crun (podman's default) refuses the cgroup v1/v2 hybrid of these machines; runc accepts it.
  command -v runc >/dev/null || missing+=(runc)
  if ! podman_image_exists "$BASE_TAG" 2>/dev/null; then
    command -v debootstrap >/dev/null || missing+=(debootstrap)
  fi
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "missing ${missing[*]}: install them (root + apt-get needed to do it here)"
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  timed apt-get update -qq
  timed apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() {
  mkdir -p "$WORK"
  # No CAP_SYS_RESOURCE here: podman's default rlimits (1048576) would fail with EPERM.
  # events_logger=file: no journald in CI containers.
  cat >"$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  cat >"$WORK/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
CONF
}

podman_image_exists() { [ -f "$CONTAINERS_CONF" ] && podman image exists "$1"; }

# Docker Hub is unreachable from these machines, so python:3.13-slim is replaced by a local
# stand-in: Debian trixie's python3 (3.13) with /usr/local made a venv of it, so python/pip live
# in /usr/local/bin and sys.prefix is /usr/local as in the official image. It trusts the machine's
# extra CA certificates (PyPI is reached through a TLS-intercepting proxy). Where the real image
# can be pulled, this function is never used.
build_base() {
  local R="$WORK/rootfs-$SUITE" ver
  rm -rf "$R"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; return 1; }
  cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/" 2>/dev/null || true
  chroot "$R" update-ca-certificates >/dev/null 2>&1
  chroot "$R" env PATH=/usr/bin:/bin /usr/bin/python3 -m venv --system-site-packages /usr/local
  rm -f "$R"/usr/local/bin/activate* "$R"/usr/local/bin/Activate.ps1
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$R/etc/pip.conf"
  # The dpkg excludes of Debian's official -slim images (debuerreotype's slimify), which the
  # python:*-slim images inherit: packages installed later leave out docs, man pages, locales.
  cat >"$R/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
DPKG
  ver=$(chroot "$R" /usr/bin/python3 -c 'import platform; print(platform.python_version())')
  chroot "$R" apt-get clean
  rm -rf "$R"/var/lib/apt/lists/* "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/etc/resolv.conf
  find "$R"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  tar -C "$R" --numeric-owner -c . | podman import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change "ENV PYTHON_VERSION=$ver" \
    --change 'CMD ["python3"]' - "localhost/pybase:$SUITE" >/dev/null
  rm -rf "$R"
}

setup() {
  write_config
  install_tools
  if ! podman image exists "$BASE_TAG"; then
    # A real pull is tried first (fast where a registry is reachable); here it fails at once.
    if ! podman pull -q "$BASE_TAG" >/dev/null 2>&1; then
      podman image exists "localhost/pybase:$SUITE" || timed build_base
      podman tag "localhost/pybase:$SUITE" "$BASE_TAG"
      log "using a local stand-in for $BASE_TAG (Debian $SUITE python3)"
    fi
  fi
}

build() {
  setup
  local version
  # The label's version: the package's __version__, the one version source (the wheel's too).
  version=$(PYTHONPATH="$REPO/src" python3 -c \
    'from streampixel_distribute import __version__; print(__version__)')
  # --network host: RUN steps reach PyPI the same way the host does. The `python-base` stage
  # (the published image by digest) is replaced by $BASE_TAG, the stand-in here. WHEEL_DIR
  # replaces the `wheel` stage, as release.yml does with its wheel.
  local contexts=(--build-context "python-base=docker-image://$BASE_TAG")
  if [ -n "${WHEEL_DIR:-}" ]; then contexts+=(--build-context "wheel=$WHEEL_DIR"); fi
  podman_build() {
    podman build --pull=never --network host "${contexts[@]}" --build-arg "VERSION=$version" \
      -t "$IMAGE" "$REPO" >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; return 1; }
  }
  timed podman_build
  log "built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"
}

case "${1:-build}" in
  setup) setup ;;
  build) build ;;
  env) printf 'CONTAINERS_CONF=%s\nCONTAINERS_STORAGE_CONF=%s\nIMAGE=%s\n' \
    "$CONTAINERS_CONF" "$CONTAINERS_STORAGE_CONF" "$IMAGE" ;;
  podman) shift; exec podman "$@" ;;
  *) echo "usage: $0 [setup|build|env|podman ARGS...]" >&2; exit 2 ;;
esac
