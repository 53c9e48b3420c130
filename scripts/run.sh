#!/usr/bin/env bash
# `make run`: migrate, make sure the demo organisation exists, start Redis (if needed),
# one RQ worker for all queues and the ASGI server on port 8000. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
PY=.venv/bin/python
export DEBUG="${DEBUG:-1}"
export DJANGO_SETTINGS_MODULE=hartonomous_web.settings
PORT="${PORT:-8000}"
mkdir -p var

pids=()
STARTED_REDIS_PID=""
cleanup() {
  trap - INT TERM EXIT
  echo; echo "==> stopping"
  for pid in "${pids[@]}" $STARTED_REDIS_PID; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

ensure_redis "$PY"
echo "==> migrating the database"
$PY manage.py migrate --noinput
$PY manage.py bootstrap_demo --url "http://127.0.0.1:$PORT/"

echo "==> starting the worker (queues: default, cpu, gpu)"
$PY manage.py rqworker default cpu gpu --with-scheduler &
pids+=($!)
echo "==> starting the web server on http://127.0.0.1:$PORT/"
$PY -m daphne -b 127.0.0.1 -p "$PORT" hartonomous_web.asgi:application &
pids+=($!)
wait -n "${pids[@]}"
