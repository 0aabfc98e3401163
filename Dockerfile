# syntax=docker/dockerfile:1
# chatbridge service image: `docker compose up -d` (see docker-compose.yml) or
#   docker build -t chatbridge . && docker run --env-file .env -e REDIS_HOST=... -p 3000:3000 chatbridge
# The image has no redis-server: point it at one with REDIS_HOST or REDIS_URL.

# --- build stage: the locked dependencies into a venv -----------------------------------------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /src
# uv, pinned with hashes; then exactly the versions of uv.lock (hash-checked), runtime only.
COPY tools/uv-requirements.txt tools/
RUN pip install --require-hashes -r tools/uv-requirements.txt
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --python /usr/local/bin/python

# --- final stage: the venv and the app, no build tools, not root ----------------------------
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=3000 \
    LOG_FORMAT=json

RUN groupadd --system --gid 10001 chatbridge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin chatbridge

COPY --from=builder /opt/venv /opt/venv

# The app's source beside redis.conf, run from /app: `python -m bots` imports /app/core and
# /app/bots first, so the layout matches a checkout (core/storage/embedded.py finds redis.conf
# two folders up from itself).
WORKDIR /app
COPY redis.conf pyproject.toml ./
COPY core/ core/
COPY bots/ bots/
RUN mkdir -p /app/data && chown 10001:10001 /app/data

# Numeric, so orchestrators can check it is not root (runAsNonRoot).
USER 10001:10001
EXPOSE 3000

HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('HTTP_PORT', '3000'), timeout=3)"]

CMD ["python", "-m", "bots"]
