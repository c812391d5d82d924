# The action image: the streampixel-distribute wheel on the official Python slim base.
# Built from the checkout by the runner for `image: Dockerfile` (and by nektos/act), by
# scripts/container.sh in CI here (podman), and by .github/workflows/release.yml for linux/amd64 +
# linux/arm64, which swaps the `wheel` stage for the wheel it publishes to PyPI.
# Plain Dockerfile syntax on purpose (no RUN --mount): the Docker API's default classic builder,
# which nektos/act asks for, builds it too.

# The base image by digest, named as a stage that the others build on. Dependabot (docker
# ecosystem, .github/dependabot.yml) reads this literal FROM line and opens a pull request when
# python:3.13-slim is republished (it cannot follow an ARG, and buildah resolves an ARG to a stage
# name only when the argument is passed). A builder swaps the base by replacing the stage:
# `--build-context python-base=docker-image://<image>`, as scripts/container.sh does with its
# local stand-in where no registry is reachable (that stand-in has no published digest).
FROM docker.io/library/python:3.13-slim@sha256:9662417aace5ae7b8e2609cce472b72a8958e134ba372808abe9cc1a0c0125e6 AS python-base

# --- build: the wheel, from the checkout, with the hashed build tools (no isolation, so nothing
# unhashed is downloaded). This stage's files never reach the image.
FROM python-base AS build
WORKDIR /build
COPY requirements/build.txt requirements/build.txt
RUN pip install --no-cache-dir --disable-pip-version-check --require-hashes --only-binary=:all: \
        -r requirements/build.txt
COPY pyproject.toml README.md ./
COPY src/ src/
RUN python -m build --wheel --no-isolation --outdir /dist

# --- wheel: the wheel alone. release.yml replaces this stage with the directory of the wheel it
# built once and publishes (`build-contexts: wheel=<dir>`), so PyPI and the image carry the same
# file; scripts/test.sh does the same with the wheel the tests ran against (WHEEL_DIR).
FROM scratch AS wheel
COPY --from=build /dist/ /

# --- the image ------------------------------------------------------------------------------
FROM python-base

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

# The runtime dependencies exactly as locked: every package pinned with its hashes, wheels only
# (nothing is compiled here), no resolution. pip writes their bytecode in the same layer, so a
# run compiles nothing. A layer of its own: it changes only with the lock.
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --disable-pip-version-check --require-hashes --only-binary=:all: \
        --no-deps -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The package: the wheel, without dependencies (the lock brought them); `pip check` fails the
# build if the lock no longer satisfies the wheel's requirements.
COPY --from=wheel /*.whl /tmp/wheel/
# DL3013: the wheel is this build's own file; its dependencies come pinned from the lock.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps /tmp/wheel/*.whl \
    && rm -rf /tmp/wheel \
    && pip check --disable-pip-version-check

# The image's and the action's command: the package's three-line shim (`python /app/entrypoint.py`
# is also what the recipes for other CI systems run).
COPY entrypoint.py /app/entrypoint.py

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Last, so a new version or source URL changes metadata only and every layer above is shared.
# release.yml sets both (VERSION is the tag, checked against the wheel's version).
ARG VERSION=0.0.0-dev
ARG SOURCE=https://github.com/streampixel-distribute/streampixel-distribute
LABEL org.opencontainers.image.title="streampixel-distribute" \
      org.opencontainers.image.description="Trigger Streampixel build distribution from CI, with the account's rate limit coordinated across parallel jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT"

# Runs as root as GitHub requires for Docker actions (the workspace is owned by the runner user).
# Inputs reach the program only through INPUT_* / STREAMPIXEL_* environment variables, never
# through arguments: the runner prints the `docker run` line, arguments included.
ENTRYPOINT ["python", "/app/entrypoint.py"]
