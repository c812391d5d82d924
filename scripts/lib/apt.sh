# shellcheck shell=bash
# apt_install PKG...: install the Debian packages that are not installed yet (root and apt-get
# needed only when something is missing). Sourced by scripts/test.sh and scripts/gitlab-ci-local.sh.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { echo "all present: $*" >&2; return 0; }
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "missing Debian packages: ${missing[*]} (run as root with apt-get, or install them)" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "installed: ${missing[*]}" >&2
}
