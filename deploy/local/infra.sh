#!/usr/bin/env bash
# Make sure Redis and RabbitMQ answer at the configured addresses.
# Started here when down and installed; a clear message when not installed at all.
set -euo pipefail

REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${REDIS_PORT:-6379}"
RABBITMQ_HOST="${RABBITMQ_HOST:-127.0.0.1}"
RABBITMQ_PORT="${RABBITMQ_PORT:-5672}"
RUN_DIR="${RUN_DIR:-$(pwd)/.run}"

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && exec 3>&- ; }

is_local() { case "$1" in localhost|127.*|::1) return 0 ;; *) return 1 ;; esac; }

missing() {
  cat >&2 <<MSG
error: $1 is not reachable at $2 and '$3' is not installed.
  Install it (Debian/Ubuntu):  sudo apt-get install -y $4
  or run the whole platform in containers:  docker compose up -d
  or point the platform at a running one:  export $5
MSG
  exit 1
}

ensure_redis() {
  port_open "$REDIS_HOST" "$REDIS_PORT" && return 0
  is_local "$REDIS_HOST" || { echo "error: Redis at $REDIS_HOST:$REDIS_PORT does not answer" >&2; exit 1; }
  command -v redis-server >/dev/null || missing Redis "$REDIS_HOST:$REDIS_PORT" redis-server redis-server "REDIS_URL=redis://host:6379/0"
  echo "infra: starting redis-server on 127.0.0.1:$REDIS_PORT"
  mkdir -p "$RUN_DIR/redis"
  local dir=/var/lib/redis log=/var/log/redis/ci.log
  [ -w "$dir" ] || dir="$RUN_DIR/redis"
  [ -w "$(dirname "$log")" ] || log="$RUN_DIR/redis/redis.log"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$dir" --logfile "$log"
  for _ in $(seq 1 50); do port_open 127.0.0.1 "$REDIS_PORT" && return 0; sleep 0.2; done
  echo "error: redis-server did not start; see $log" >&2; exit 1
}

ensure_rabbitmq() {
  port_open "$RABBITMQ_HOST" "$RABBITMQ_PORT" && return 0
  is_local "$RABBITMQ_HOST" || { echo "error: RabbitMQ at $RABBITMQ_HOST:$RABBITMQ_PORT does not answer" >&2; exit 1; }
  command -v rabbitmq-server >/dev/null || missing RabbitMQ "$RABBITMQ_HOST:$RABBITMQ_PORT" rabbitmq-server rabbitmq-server "BROKER_URL=amqp://user:pass@host:5672/"
  echo "infra: starting rabbitmq-server (this takes a few seconds)"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 120); do
    if rabbitmq-diagnostics -q ping >/dev/null 2>&1 && port_open 127.0.0.1 "$RABBITMQ_PORT"; then return 0; fi
    sleep 1
  done
  echo "error: rabbitmq-server did not start in 120 s; see /var/log/rabbitmq/" >&2; exit 1
}

ensure_redis
ensure_rabbitmq
echo "infra: redis $REDIS_HOST:$REDIS_PORT and rabbitmq $RABBITMQ_HOST:$RABBITMQ_PORT answer"
