# The action image: the streampixel-distribute core on the official Python slim base.
# Built by the runner for `image: Dockerfile`, by scripts/container.sh in CI here (podman), and
# by .github/workflows/release.yml for linux/amd64 + linux/arm64 (published to GHCR).
ARG PYTHON_IMAGE=python:3.13-slim

# --- deps: the pinned runtime dependencies, installed into /install (no pip cache) ----------
FROM ${PYTHON_IMAGE} AS deps
WORKDIR /build
COPY requirements.txt .
# --prefix keeps exactly what pip installed apart, so the final stage copies nothing else
# (no pip cache, no wheels, no build tools if a wheel ever had to be built here).
RUN pip install --no-cache-dir --disable-pip-version-check --no-compile \
        --prefix=/install -r requirements.txt

# --- final image ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.0.0-dev
# release.yml overrides SOURCE with the real repository URL (GHCR links the package through it).
ARG SOURCE=https://github.com/streampixel-distribute/streampixel-distribute
LABEL org.opencontainers.image.title="streampixel-distribute" \
      org.opencontainers.image.description="Trigger Streampixel build distribution from CI, with the account's rate limit coordinated across parallel jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT"

# git: the `github` / `git+…` ledgers (the default `ledger: auto` inside GitHub Actions) update a
# ref with git's compare-and-swap. Not pinned to a Debian version on purpose: the base image's
# Debian release decides it, and stable security updates replace old versions (a pin would
# break every build after the next git DSA).
# Debian's git depends on the full perl (~50 MB) only for commands the ledger never runs
# (send-email, svn, cvs, instaweb, …); they are purged, keeping the image under 80 MB over the
# base. dpkg's database stays truthful (git installed, perl not), so SBOMs list what is there.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# SC2046: the unquoted $(dpkg-query …) must split into one argument per package.
# hadolint ignore=DL3008,SC2046
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git \
    && dpkg --purge --force-depends $(dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' \
        'perl' 'perl-modules-*' 'libperl5*' 'liberror-perl' 'git-man' | awk '$1 == "ii" {print $2}') \
    && git --version \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
        /var/cache/debconf/*-old /var/lib/dpkg/*-old

# The listener's user, for `docker run --user 10001:10001 … listen` (the action itself stays root,
# as GitHub requires of Docker actions). A fixed uid, so a volume can be chowned to it; no home
# directory, no login shell, no lastlog/faillog entries. /data is the queue volume's mount point:
# a new named volume copies its owner and mode (10001, 0700).
RUN groupadd --system --gid 10001 streampixel \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --no-log-init streampixel \
    && install -d -o 10001 -g 10001 -m 0700 /data

COPY --from=deps /install /usr/local
COPY src/ /app/src/
COPY entrypoint.py /app/entrypoint.py

# Bytecode is compiled here, once, so a run starts without compiling anything; at run time
# nothing is written next to the code (the image's files stay as built). -j0: all cores.
RUN python -m compileall -q -j0 /app/src /usr/local/lib/python3*/site-packages

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app/src

# Runs as root as GitHub requires for Docker actions (the workspace is owned by the runner user).
# Inputs reach the program only through INPUT_* / STREAMPIXEL_* environment variables, never
# through arguments: the runner prints the `docker run` line, arguments included.
ENTRYPOINT ["python", "/app/entrypoint.py"]
