# syntax=docker/dockerfile:1
#
# noetl-gateway container image.
#
#   docker build -t noetl-gateway .
#   docker run --rm -p 8090:8090 -e NOETL_BASE_URL=http://noetl:8082 -e NATS_URL=nats://nats:4222 noetl-gateway
#
# Configuration comes only from the environment at run time (docs/configuration.md): the image
# sets no gateway variable, so its defaults are the code's defaults.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: one self-contained virtualenv with the gateway and its runtime dependencies ----------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
WORKDIR /src

# Only what the package build needs (see .dockerignore): no tests, docs, deploy files or .venv.
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY handlers/ handlers/
COPY schema/ schema/

# A regular (non-editable) install of [project].dependencies only — no test extra, no dev tools —
# plus dumb-init, the tiny init that runs as PID 1 (why: see the ENTRYPOINT below). Every runtime
# dependency ships manylinux wheels, so no compiler is needed in this stage either. pip and
# setuptools are then removed: nothing installs anything at run time.
RUN /opt/venv/bin/pip install --no-cache-dir . dumb-init==1.2.5.post1 \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

# ---- runtime: the virtualenv on a clean slim base, non-root, read-only friendly -----------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="noetl-gateway" \
      org.opencontainers.image.description="API gateway of the NoETL workflow platform (Tornado): auth, GraphQL, SSE, callbacks, streaming proxy" \
      org.opencontainers.image.licenses="MIT"

# A fixed numeric uid/gid so Kubernetes can check runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin gateway

COPY --from=build /opt/venv /opt/venv

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in Kubernetes and pip already compiled
# the bytecode at build time. PYTHONUNBUFFERED: log lines reach `kubectl logs` as they are written.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
WORKDIR /tmp
EXPOSE 8090

# Liveness of the loop, with no curl in the image: urlopen raises (exit 1) on refusal or timeout.
# It asks the port the gateway listens on (ROUTER_PORT, alias GATEWAY_PORT, default 8090).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; port = os.environ.get('ROUTER_PORT') or os.environ.get('GATEWAY_PORT') or '8090'; u.urlopen('http://127.0.0.1:%s/health' % port, timeout=3).read()"]

# dumb-init is PID 1 and forwards SIGTERM to the gateway, which then drains (stops accepting,
# sends SSE clients a retry hint, finishes in-flight requests within GATEWAY_SHUTDOWN_GRACE_SECS,
# drains NATS). The gateway could be PID 1 itself, but a PID 1 ignores every signal it has no
# handler for, and the gateway installs its SIGTERM handler only once it has started (after the
# first NATS attempt): a SIGTERM in that window would be lost and the pod killed only at the end
# of terminationGracePeriodSeconds. dumb-init also reaps zombies and signals the whole process
# group, should the gateway ever fork workers.
STOPSIGNAL SIGTERM
ENTRYPOINT ["dumb-init", "--"]
CMD ["noetl-gateway"]
