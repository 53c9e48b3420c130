#!/usr/bin/env bash
# `make test`: install what the tests need on this machine (Debian packages listed in
# scripts/apt-test-packages.txt: Chromium for the browser tests, docker-compose to
# validate the compose file, unixODBC for pyodbc), make sure Redis runs, lint (ruff, import
# contracts), then run the whole suite on SQLite, and again on PostgreSQL when one is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
PY=.venv/bin/python

missing=()
while read -r pkg; do
  [ -z "$pkg" ] || [[ "$pkg" == \#* ]] && continue
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done < scripts/apt-test-packages.txt
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "==> installing Debian packages for the tests: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "error: the tests need these Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
fi

STARTED_REDIS_PID=""
trap '[ -n "$STARTED_REDIS_PID" ] && kill $STARTED_REDIS_PID 2>/dev/null || true' EXIT
ensure_redis "$PY"

export DEBUG=1 SECRET_KEY="test-secret-key-for-the-test-suite-only-0123456789"

echo "==> lint: ruff check, ruff format --check, lint-imports (contracts in pyproject.toml)"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports

echo "==> tests on SQLite"
env -u DATABASE_URL $PY -m pytest "$@"

PG_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/hartonomous}"
if $PY -c "import psycopg,sys; psycopg.connect(sys.argv[1].rsplit('/',1)[0] + '/postgres', connect_timeout=3).close()" "$PG_URL" 2>/dev/null; then
  echo "==> tests on PostgreSQL ($PG_URL; the test database is test_<name>)"
  DATABASE_URL="$PG_URL" $PY -m pytest -m "not e2e" "$@"
else
  echo "==> PostgreSQL is not reachable at $PG_URL: skipped the PostgreSQL pass (set TEST_POSTGRES_URL)"
fi
