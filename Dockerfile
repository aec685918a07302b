# syntax=docker/dockerfile:1
#
# Signet container image.
#
#   docker build -t signet:local .
#   docker build --build-arg PYTHON_IMAGE=python:3.12-slim-bookworm -t signet:local .
#
# Stage 1 builds the project wheel (no dependencies); stage 2 installs it into
# a fresh slim image. The final image has no compiler, no pip cache and no
# source tree, runs as a numeric non-root user and writes nothing at runtime,
# so it works with a read-only root filesystem.
#
# The config is not baked in: mount it at /etc/signet/signet.yaml (a
# ConfigMap, a compose bind mount, ...). In a container, Signet must listen
# on 0.0.0.0 to be reachable from other containers or pods; the contract then
# requires `clients` (inbound tokens), or `allow_unauthenticated: true`. The
# HEALTHCHECK below assumes admin_listen is on port 9191 (e.g. 0.0.0.0:9191).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
# Behind a TLS-intercepting proxy: `docker build --secret id=ca_bundle,src=corp-ca.pem .`
# The secret is mounted for this step only; nothing of it stays in a layer.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# -------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="signet" \
      org.opencontainers.image.description="Signet: a local authenticating reverse proxy" \
      org.opencontainers.image.licenses="MIT"

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SIGNET_CONFIG=/etc/signet/signet.yaml

# A fixed numeric UID/GID (10001) so that Kubernetes' runAsNonRoot can verify
# it without an /etc/passwd lookup; the passwd entry only makes `ps` readable.
RUN groupadd --system --gid 10001 signet \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin signet

# Install the wheel and its dependencies (binary wheels from PyPI). The wheel
# is bind-mounted from the build stage, so no copy of it stays in a layer.
# pip compiles the .pyc files at install time; at runtime nothing is written
# (PYTHONDONTWRITEBYTECODE). `signet --help` is a smoke test of the install.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install --no-cache-dir /wheels/signet_proxy-*.whl \
 && signet --help > /dev/null

USER 10001:10001
WORKDIR /

EXPOSE 8080 9191

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9191/healthz', timeout=2)"]

ENTRYPOINT ["signet"]
CMD ["serve", "--config", "/etc/signet/signet.yaml"]
