#!/usr/bin/env bash
# An honest login during a flood of guesses (not a test): how long a client on another address
# takes to register and log in afresh while one address sends CONCURRENCY requests at once, each
# with Basic credentials never seen before. Loopback only, temp dir, free ports, everything
# stopped on exit.
#
# Usage: benches/auth/flood.sh
#        ROUNDS=5 CONCURRENCY=1000 benches/auth/flood.sh
#
# `travel serve users` and `travel serve paths` (release, one SQLite file in the temp dir) and
# one gateway (release) with the shipped gateway.yaml's auth, exchange limits, breaker and
# server.threads (2), routes POST /user (open) and /path (protected). Each round (benches/auth/
# flood.py): the flood from 127.0.0.<2 + 2·round> (a fresh address, so every round meets an
# unspent allowance), and once every guess is on the wire, from 127.0.0.<3 + 2·round>:
# POST /user (a new login) then POST /path with its Basic credentials (the gateway exchanges them
# at the users service: a fresh login). Reported per round: registration, login and total
# times, the attacker's statuses, the guesses still unanswered when the honest client started
# and when its login was done, and
# the users breaker's state at the end. Each round starts with a baseline: the same honest
# registration and login with no flood, from 127.0.0.<100 + round>, so the machine's own speed
# at that moment is measured beside it.
#
# Env: ROUNDS=5 CONCURRENCY=1000 SKIP_BUILD=0 KEEP_TMP=0
#      CARGO_TARGET_DIR (default /var/tmp/gateway-target)
# Needs: curl, python3, cargo.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ROUNDS=${ROUNDS:-5}
CONCURRENCY=${CONCURRENCY:-1000}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gateway-target}

# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
need curl python3

if [ "$SKIP_BUILD" != 1 ]; then
  (cd "$ROOT" && cargo build --release -p gateway -p stack) >&2
fi
GATEWAY_BIN=$CARGO_TARGET_DIR/release/gateway
TRAVEL_BIN=$CARGO_TARGET_DIR/release/travel
for bin in "$GATEWAY_BIN" "$TRAVEL_BIN"; do
  [ -x "$bin" ] || die "release binary missing: $bin"
done

bench_tmp flood-bench
read -r USERS_PORT PATHS_PORT GW_PORT ADMIN_PORT < <(free_ports 4)

# ---------------------------------------------------------------- travel services
start_users_and_paths "$USERS_PORT" "$PATHS_PORT"

# ---------------------------------------------------------------- gateway
# The shipped gateway.yaml's values for everything the flood meets.
cat > "$TMP/gateway.yaml" <<YAML
server: { listen: 127.0.0.1:$GW_PORT, threads: 2, grace_period: 1s }
admin: { listen: 127.0.0.1:$ADMIN_PORT }
upstreams:
  users: { backends: [127.0.0.1:$USERS_PORT], connect_timeout: 1s, read_timeout: 5s, breaker: default }
  paths: { backends: [127.0.0.1:$PATHS_PORT] }
breakers:
  default: { consecutive_failures: 5, failure_rate: 50%, minimum_calls: 10, window: 30s, slow_call_duration: 2s, slow_call_rate: 100%, open_for: 10s, max_open_for: 5m, half_open_probes: 3, failure_statuses: [500, 502, 503, 504] }
auth:
  token_endpoint: { upstream: users, path: /auth }
  jwt: { secret_env: JWT_SECRET, algorithms: [HS256], leeway: 5s }
  token_cache: { capacity: 100000, refresh_before_expiry: 30s, negative_ttl: 5s }
  exchange_limits: { max_in_flight_per_client: 4, failures_per_client: 20/m, failures_per_login: 5/m }
routes:
  - { path: /user, methods: [POST], upstream: users, auth: none }
  - { path: /path, upstream: paths }
YAML
"$GATEWAY_BIN" check --config "$TMP/gateway.yaml" >/dev/null || die "gateway rejects $TMP/gateway.yaml"
"$GATEWAY_BIN" --config "$TMP/gateway.yaml" > "$TMP/gateway.log" 2>&1 &
GW_PID=$!; started "$GW_PID" INT
wait_port "$GW_PORT" "$GW_PID" "gateway"; wait_port "$ADMIN_PORT" "$GW_PID" "gateway admin"

COMMAND="ROUNDS=$ROUNDS CONCURRENCY=$CONCURRENCY benches/auth/flood.sh"
say "== honest login during a flood of $CONCURRENCY random credentials"
say "command:  $COMMAND"
say "machine:  $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
say "measured: $(git -C "$ROOT" rev-parse --short=10 HEAD 2>/dev/null || echo unknown)"
RESULTS=$TMP/rounds.jsonl
: > "$RESULTS"
BASELINE=$TMP/baseline.jsonl
: > "$BASELINE"
for round in $(seq "$ROUNDS"); do
  line=$(python3 "$HERE/flood.py" "$GW_PORT" 127.0.0.1 "127.0.0.$((100 + round))" 0 "alone$round$RANDOM")
  printf '%s\n' "$line" >> "$BASELINE"
  say "  r$round no flood: $line"
  line=$(python3 "$HERE/flood.py" "$GW_PORT" "127.0.0.$((2 + 2 * round))" "127.0.0.$((3 + 2 * round))" \
    "$CONCURRENCY" "honest$round$RANDOM")
  printf '%s\n' "$line" >> "$RESULTS"
  say "  r$round flood:    $line"
done
curl -fsS "http://127.0.0.1:$ADMIN_PORT/admin/breakers" > "$TMP/breakers.json"
BREAKER=$(python3 - "$TMP/breakers.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
print(" ".join(u["name"] + ":" + b["state"] for u in report["upstreams"] for b in u["backends"]))
PY
)
say ""
say "== summary (markdown)"
python3 - "$RESULTS" "$COMMAND" "$BREAKER" "$(cut -d' ' -f1-3 /proc/loadavg)" "$BASELINE" <<'PY'
import json, statistics, sys
rounds = [json.loads(line) for line in open(sys.argv[1])]
alone = [json.loads(line) for line in open(sys.argv[5])]
command, breaker, load = sys.argv[2], sys.argv[3], sys.argv[4]
print(f"Command: `{command}` (load average at the end: {load}; breakers at the end: {breaker})")
print()
print("| round | no flood: register + login | during the flood: register | fresh login | total | statuses (register, login) | flood answers | guesses unanswered at start / at login |")
print("| ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |")
for i, (a, r) in enumerate(zip(alone, rounds), 1):
    flood = ", ".join(f"{k}: {v}" for k, v in r["flood"].items())
    print(f"| {i} | {a['register_ms']:.0f} + {a['login_ms']:.0f} = {a['total_ms']:.0f} ms | {r['register_ms']:.0f} ms | "
          f"{r['login_ms']:.0f} ms | {r['total_ms']:.0f} ms | {r['register_status']}, {r['login_status']} | {flood} | "
          f"{r['flood_unanswered_at_start']} / {r['flood_unanswered_at_login']} |")
totals = sorted(r["total_ms"] for r in rounds)
ok = all(r["register_status"] == 200 and r["login_status"] == 200 for r in rounds + alone)
print()
print(f"- No flood: registration + fresh login median {statistics.median(r['total_ms'] for r in alone):.0f} ms.")
print()
print(f"- Registration + fresh login: median {statistics.median(totals):.0f} ms, worst {totals[-1]:.0f} ms "
      f"(goal ≤ 1000 ms: {'met' if totals[-1] <= 1000 else 'MISSED'}); every honest request answered 200: {ok}.")
PY
