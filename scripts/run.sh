#!/usr/bin/env bash
# `make run`: migrate, make sure the demo organisation exists, start Redis (if needed),
# one RQ worker for all queues and the ASGI server (uvicorn) on port 8000. Ctrl-C stops them all.
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
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true  # the worker finishes its shutdown while Redis is still up
  if [ -n "$STARTED_REDIS_PID" ]; then kill "$STARTED_REDIS_PID" 2>/dev/null || true; wait 2>/dev/null || true; fi
}
trap cleanup INT TERM EXIT
# Ctrl-C reaches every process in the terminal's group; a SIGTERM sent to `make` alone does
# not reach this script, so it also stops when the process that started it is gone.
parent=$PPID
( while kill -0 "$parent" 2>/dev/null; do sleep 1; done; kill -TERM $$ 2>/dev/null ) &
pids+=($!)

ensure_redis "$PY"
echo "==> migrating the database"
$PY manage.py migrate --noinput
$PY manage.py bootstrap_demo --url "http://127.0.0.1:$PORT/"

echo "==> starting the worker (queues: default, cpu, gpu)"
$PY manage.py rqworker default cpu gpu --with-scheduler &
pids+=($!)
echo "==> starting the web server on http://127.0.0.1:$PORT/"
# One uvicorn process (uvloop, httptools) serves HTTP and websockets (hartonomous_web.asgi).
# The options are hartonomous_web/server_command.py's (tests/hartonomous_web/test_http_protocol.py checks).
$PY -m uvicorn --host 127.0.0.1 --port "$PORT" --lifespan off --http hartonomous_web.http_protocol:HttpProtocol hartonomous_web.asgi:application &
pids+=($!)
wait -n "${pids[@]}"
