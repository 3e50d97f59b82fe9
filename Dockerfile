# syntax=docker/dockerfile:1
# One image for every service; the command names the service that runs. From the repository root:
#   docker build -t correction-emergency/services:1.0.0 .
#   docker run correction-emergency/services:1.0.0 intake      (escalation, notification, audit,
#                                                               console; `--help` lists them)
# deploy/k8s runs it with the service as the container's args, and its migration Jobs with
# `sqjz-migrate upgrade <service>`. tests/deploy reads this file statically.

# The base, pinned by digest: a tag moves, a digest names one image and a build fails rather than
# take another. Renewing it (Debian's and Python's security releases) is a reviewed change of
# this line; a build may pass another with --build-arg PYTHON_IMAGE=…@sha256:….
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# Wheels of the project and its runtime dependencies: those of the runtime lock, each file
# checked against its hash, so no extra (not the local infrastructure of the `local` extra) and
# no development tools (tools/ is outside the build context). Compilers stay in this stage.
FROM ${PYTHON_IMAGE} AS builder
RUN apt-get update \
    && apt-get install --yes --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The dependencies first, in a layer that changes only with the lock.
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements/runtime.txt
COPY pyproject.toml README.md LICENSE ./
COPY shared shared
COPY services services
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# The services: Python, the wheels installed from a mount (never a layer), the directory of
# parties. No compiler, no pip cache, not root; the root filesystem can be read-only.
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DIRECTORY_FILE=/app/config/directory.yaml \
    ALERTS_FILE=/tmp/alerts.jsonl
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --no-deps /wheels/*.whl
WORKDIR /app
COPY config/directory.yaml config/directory.yaml
USER 10001:10001
# The console, intake, escalation, notification, audit.
EXPOSE 8000 8001 8002 8003 8004
# The service is the container's argument, which a health check does not see: it asks each
# service's port for /healthz (Kubernetes uses the manifests' probes instead).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sqjz-serve", "--healthcheck"]
# sqjz-serve owns uvicorn's options (shared/serve.py): the service's factory and port, the
# graceful stop on SIGTERM (20 s; the console's live streams 3 s), no access log (the services
# log JSON, requests are measured and traced).
ENTRYPOINT ["sqjz-serve"]
