# Shared shell helpers for run.sh and test.sh (sourced, not executed).

# ensure_redis VAR_PREFIX: make REDIS_URL point at a reachable Redis.
# Uses REDIS_URL if set; otherwise starts a private redis-server on a free port
# (Debian's redis-server, installed with apt-get when missing and we are root)
# and records its pid in STARTED_REDIS_PID so the caller stops it on exit.
ensure_redis() {
  local py="$1"
  if [ -n "${REDIS_URL:-}" ]; then
    if "$py" -c "import redis,sys; redis.Redis.from_url(sys.argv[1]).ping()" "$REDIS_URL" 2>/dev/null; then
      echo "==> using Redis at $REDIS_URL"
      return 0
    fi
    echo "error: REDIS_URL=$REDIS_URL is not reachable. Start that Redis or unset REDIS_URL to let this script start one." >&2
    return 1
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "==> installing redis-server (Debian package)"
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
      echo "error: no Redis. Install redis-server (e.g. apt-get install redis-server) or set REDIS_URL." >&2
      return 1
    fi
  fi
  local port
  port=$("$py" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
  mkdir -p var/redis
  # In a session of its own: Ctrl-C (or a signal to the whole group) reaches the worker and the
  # web server, which still need Redis to shut down cleanly; the caller stops Redis last.
  setsid redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$PWD/var/redis" \
    --logfile "$PWD/var/redis/redis.log" --daemonize no &
  STARTED_REDIS_PID=$!
  export REDIS_URL="redis://127.0.0.1:$port/0"
  for _ in $(seq 1 50); do
    if "$py" -c "import redis,sys; redis.Redis.from_url(sys.argv[1]).ping()" "$REDIS_URL" 2>/dev/null; then
      echo "==> started Redis at $REDIS_URL (pid $STARTED_REDIS_PID)"
      return 0
    fi
    sleep 0.1
  done
  echo "error: the Redis started on port $port did not answer; see var/redis/redis.log" >&2
  return 1
}
