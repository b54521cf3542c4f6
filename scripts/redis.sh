#!/usr/bin/env bash
# Start a local Redis on 127.0.0.1 for the tests and a one-machine trial (installs redis-server with
# apt if missing) and print the URL to use as TANFANG_TEST_REDIS_URL / TANFANG_REDIS_URL.
#   TANFANG_REDIS_PORT (default 6390), TANFANG_REDIS_DIR (default /tmp/tanfang-redis-<port>)
# Idempotent: a Redis already answering on the port is reused.
set -euo pipefail
PORT=${TANFANG_REDIS_PORT:-6390}
DIR=${TANFANG_REDIS_DIR:-/tmp/tanfang-redis-$PORT}
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing redis-server (apt)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
  else
    echo "redis-server is not installed and this is not root: install redis-server" >&2
    exit 1
  fi
fi
if ! redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1; then
  mkdir -p "$DIR"
  redis-server --port "$PORT" --bind 127.0.0.1 --daemonize yes --dir "$DIR" --save "" --appendonly no \
    --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >&2
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
echo "redis://127.0.0.1:$PORT/0"
