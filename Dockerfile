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

# No git here: the git ledgers (`github`, `git+…`, the default `ledger: auto` inside GitHub
# Actions) speak the git protocol in-process with dulwich, a pinned Python dependency. So no apt
# packages are added and dpkg's database stays whole: an image built FROM this one installs
# packages as usual.

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
