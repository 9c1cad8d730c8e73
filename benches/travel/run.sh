#!/usr/bin/env bash
# Load test of the travel services, straight at the services (no gateway), on SQLite and on
# PostgreSQL: GET /path?id=N (random N over the seed's 501 paths) and GET /auth (Argon2-bound).
#
# Usage: benches/travel/run.sh            # 10 s per run, 2 threads, 32 connections
#        DURATION=30s CONNS=64 benches/travel/run.sh
# Needs: wrk, curl, jq, the local PostgreSQL (PG_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres).
# Loopback only; builds the release binary; seeds its own user and paths; cleans up after itself.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/benches/travel"
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
AUTH_CONNS=${AUTH_CONNS:-8}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BASE_PORT=${BASE_PORT:-18081}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gateway-target}

for tool in wrk curl jq psql; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

cargo build --release -p stack --manifest-path "$ROOT/Cargo.toml" >&2
BIN="$CARGO_TARGET_DIR/release/travel"

JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
export JWT_SECRET
# Request logs off: we measure the services, not the terminal.
export RUST_LOG=${RUST_LOG:-warn}

WORK=$(mktemp -d)
PG_DB="travel_bench_$$"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

USERS="http://127.0.0.1:$BASE_PORT"
PATHS="http://127.0.0.1:$((BASE_PORT + 1))"

wait_healthy() {
  for _ in $(seq 1 100); do
    if curl -fs "$USERS/healthz" >/dev/null && curl -fs "$PATHS/healthz" >/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "services did not become healthy" >&2; return 1
}

run_backend() {
  local name=$1 url=$2
  echo "== $name ($(echo "$url" | sed 's/?.*//'))"
  "$BIN" serve all --database-url "$url" \
    --users-port "$BASE_PORT" --paths-port "$((BASE_PORT + 1))" \
    --trips-port "$((BASE_PORT + 2))" --parties-port "$((BASE_PORT + 3))" \
    --parties-url "http://127.0.0.1:$((BASE_PORT + 3))" >"$WORK/$name.log" 2>&1 &
  SERVER_PID=$!
  wait_healthy

  curl -fs -X POST "$USERS/user" \
    -d 'first_name=Bench&last_name=Marker&email=bench@example.org&title=load&login=bench&password=bench-password' >/dev/null
  TOKEN=$(curl -fs -u bench:bench-password "$USERS/auth")
  export TOKEN
  BASIC=$(printf 'bench:bench-password' | base64 | tr -d '\n')
  export BASIC
  jq -r '.[] | "startpoint=\(.startpoint|@uri)&endpoint=\(.endpoint|@uri)"' "$ROOT/data/seed/paths_init.json" |
    while read -r body; do
      curl -fs -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" "$PATHS/path" -d "$body"
    done
  echo "seeded $(jq length "$ROOT/data/seed/paths_init.json") paths"

  echo "-- GET /path?id=N: wrk -t$THREADS -c$CONNS -d$DURATION --latency -s path.lua $PATHS"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$HERE/path.lua" "$PATHS"
  echo "-- GET /auth: wrk -t$THREADS -c$AUTH_CONNS -d$DURATION --latency -s auth.lua $USERS"
  wrk -t"$THREADS" -c"$AUTH_CONNS" -d"$DURATION" --latency -s "$HERE/auth.lua" "$USERS"

  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
}

run_backend sqlite "sqlite://$WORK/bench.db"
psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $PG_DB" >/dev/null
run_backend postgres "${PG_ADMIN_URL%/*}/$PG_DB"
