# Scraping service: the API and the worker of queue `scraping`.
# One image serves every process of the service; the command picks the role (see
# docker-compose.yml and deploy/k8s). Build from the repository root:
#   docker build -f deploy/docker/scraping-service.Dockerfile -t smartapp/scraping-service .
# No `# syntax=` line on purpose: it makes BuildKit pull a Dockerfile frontend image from a
# registry at build time. The frontend built into BuildKit (Docker 20.10 and newer) supports
# everything used here (RUN --mount, a per-Dockerfile .dockerignore), so a build needs only
# the base images and the package index.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---- build: a virtualenv with scraping-service, shared and their locked dependencies --------------
FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Third-party dependencies first, from the lock and the members' pyproject files only, so this
# layer is rebuilt when the lock changes and not on every code change. Every member's
# pyproject is needed: uv checks the workspace against the lock.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY gateway/pyproject.toml gateway/
COPY task-service/pyproject.toml task-service/
COPY scraping-service/pyproject.toml scraping-service/
COPY notification-service/pyproject.toml notification-service/
COPY client/pyproject.toml client/
COPY testkit/pyproject.toml testkit/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package scraping-service
# Then our own code, installed as wheels (--no-editable) so the runtime needs no /src.
COPY shared/shared shared/shared
COPY scraping-service/scraping_service scraping-service/scraping_service
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package scraping-service

# ---- runtime: python, the virtualenv, an unprivileged user; no uv, no compiler, no sources ----
FROM ${PYTHON_IMAGE} AS base
LABEL org.opencontainers.image.title="smartapp-scraping-service" \
      org.opencontainers.image.description="Scraping service: the API and the worker of queue `scraping`."
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it and volumes agree.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin app
# Owned by root and read-only to the app user: the code cannot be changed at run time.
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0
# The working directory must be writable: celery beat keeps its schedule there by default.
WORKDIR /tmp
USER 10001:10001

# ---- runtime (default target): the API. Workers and beat run this image with another command;
# their healthchecks are set where they are deployed (compose, k8s), as they serve no /health.
FROM base AS runtime
EXPOSE 8002
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8002/health', timeout=4)"]
CMD ["python", "-m", "scraping_service"]
