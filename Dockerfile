# syntax=docker/dockerfile:1
#
# genesys-bridge image: two stages on the same pinned base, so the virtualenv built in `build`
# runs unchanged in `runtime` (same interpreter path, same libc).
#
# The base is pinned by exact version tag AND digest: a tag can be re-pushed, a digest cannot.
# Bump both together (Renovate/Dependabot do this) to pick up Debian and CPython security fixes.

FROM python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5 AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Layer 1, the dependencies only: rebuilt when requirements.lock changes, not on every source edit.
# The lock pins every runtime dependency, transitive ones included, with the hashes of their files
# (`make lock` writes it from pyproject.toml). So two builds of one commit install the same bytes, and a
# download that does not match its hash fails the build. Wheels only: nothing is compiled here.
# The venv has no pip of its own: the build stage's pip installs into it. pip compiles bytecode here, at
# build time, so the read-only runtime never needs to write .pyc files.
COPY requirements.lock ./
RUN python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --require-hashes --only-binary :all: --requirement requirements.lock

# Layer 2, the bridge itself and its contract package (client/), as wheels (the same artifacts tests/deploy
# installs in a clean venv), with --no-deps: their dependencies are all in layer 1, pinned and hashed, and
# nothing else may be fetched.
COPY pyproject.toml README.md ./
COPY client ./client
COPY bridge ./bridge
RUN pip wheel --no-deps --wheel-dir /wheels ./client . \
 && pip --python /opt/venv/bin/python install --no-deps /wheels/genesys_bridge_client-*.whl /wheels/genesys_bridge-*.whl


FROM python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5 AS runtime

LABEL org.opencontainers.image.title="genesys-bridge" \
      org.opencontainers.image.description="Hold Genesys Cloud web-messaging conversations from backend services over RabbitMQ." \
      org.opencontainers.image.licenses="Apache-2.0"

# Nothing is written outside /tmp: no bytecode, HOME and TMPDIR point at /tmp (an emptyDir in Kubernetes,
# so the root filesystem can be mounted read-only).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    HOME=/tmp \
    TMPDIR=/tmp

# A fixed numeric UID/GID, so Kubernetes `runAsNonRoot` can verify it without resolving names.
RUN groupadd --system --gid 10001 bridge \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin bridge

COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /tmp

# /metrics, /healthz, /readyz (BRIDGE_HTTP_PORT).
EXPOSE 8080

# Exec form below makes the Python process PID 1, so it receives this signal itself and drains
# within BRIDGE_DRAIN_TIMEOUT_S (the orchestrator's grace period must be longer).
STOPSIGNAL SIGTERM

# For plain Docker / compose; Kubernetes ignores it and uses the chart's probes.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BRIDGE_HTTP_PORT', '8080'), timeout=2)"]

ENTRYPOINT ["genesys-bridge"]
CMD ["run"]
