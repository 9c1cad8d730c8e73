#!/usr/bin/env bash
# Load benchmark of the gateway's token exchange (not a test). Loopback only, temp dir, free
# ports, everything stopped on exit.
#
# Usage: benches/auth/run.sh
#        DURATION=10s CONNECTIONS=32 THREADS=2 ROUNDS=2 benches/auth/run.sh
#
# `travel serve users` and `travel serve paths` (release, one SQLite file in the temp dir,
# JWT_SECRET random, JWT_TTL 1h) get one registered user and the seed's 501 paths; then three
# gateways (release, server.threads 2) run side by side, each with one route /path -> paths:
#   A  auth: none       client sends `Bearer <jwt>` fetched once; the paths service verifies it
#   B  auth: required   client sends `Basic`; token_cache.capacity 100000 (one /auth, then hits)
#   C  auth: required   client sends `Basic`; token_cache.capacity 0 (every request = /auth =
#                       one Argon2id verification at the users service)
# Measured interleaved A B C, A B C, ... (ROUNDS times, median reported), every target with the
# same wrk -tTHREADS -cCONNECTIONS -dDURATION --latency -s path.lua (GET /path?id=N, N random
# in 1..501 per request). For B, gateway_token_cache_total{result=hit|miss} is read from the
# admin /metrics before and after each run.
#
# Env: DURATION=10s CONNECTIONS=32 THREADS=2 ROUNDS=2 WARMUP=2s PAUSE=1 SKIP_BUILD=0 KEEP_TMP=0
#      CARGO_TARGET_DIR (default /var/tmp/gateway-target)
# Needs: wrk, curl, jq, python3, cargo.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-2s}
PAUSE=${PAUSE:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gateway-target}

# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
need wrk curl jq python3

if [ "$SKIP_BUILD" != 1 ]; then
  (cd "$ROOT" && cargo build --release -p gateway -p stack) >&2
fi
GATEWAY_BIN=$CARGO_TARGET_DIR/release/gateway
TRAVEL_BIN=$CARGO_TARGET_DIR/release/travel
[ -x "$GATEWAY_BIN" ] && [ -x "$TRAVEL_BIN" ] || die "release binaries missing in $CARGO_TARGET_DIR"

bench_tmp auth-bench
read -r USERS_PORT PATHS_PORT GW_A GW_B GW_C AD_A AD_B AD_C < <(free_ports 8)


# ---------------------------------------------------------------- travel services
start_users_and_paths "$USERS_PORT" "$PATHS_PORT"

USERS="http://127.0.0.1:$USERS_PORT"
PATHS="http://127.0.0.1:$PATHS_PORT"
curl -fsS -o /dev/null -X POST "$USERS/user" \
  -d 'first_name=Bench&last_name=Marker&email=bench@example.org&title=load&login=bench&password=bench-password' \
  || die "registering the bench user failed"
TOKEN=$(curl -fsS -u bench:bench-password "$USERS/auth") || die "GET /auth failed"
BASIC=$(printf 'bench:bench-password' | base64 | tr -d '\n')
jq -r '.[] | "startpoint=\(.startpoint|@uri)&endpoint=\(.endpoint|@uri)"' "$ROOT/data/seed/paths_init.json" |
  while read -r body; do
    curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" "$PATHS/path" -d "$body"
  done
NPATHS=$(jq length "$ROOT/data/seed/paths_init.json")
curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "$PATHS/path?id=$NPATHS" || die "path $NPATHS missing after seeding"

# ---------------------------------------------------------------- gateways
gateway_config() { # port admin_port auth capacity
  cat <<YAML
server: { listen: 127.0.0.1:$1, threads: 2, grace_period: 1s }
admin: { listen: 127.0.0.1:$2 }
upstreams:
  users: { backends: [127.0.0.1:$USERS_PORT], connect_timeout: 1s, read_timeout: 10s }
  paths: { backends: [127.0.0.1:$PATHS_PORT] }
auth:
  token_endpoint: { upstream: users, path: /auth }
  jwt: { secret_env: JWT_SECRET, algorithms: [HS256], leeway: 5s }
  token_cache: { capacity: $4, refresh_before_expiry: 30s, negative_ttl: 5s }
routes:
  - { path: /path, upstream: paths, auth: $3 }
YAML
}
declare -A PORT=([A]=$GW_A [B]=$GW_B [C]=$GW_C) ADMIN=([A]=$AD_A [B]=$AD_B [C]=$AD_C) GWPID=()
gateway_config "$GW_A" "$AD_A" none 100000 > "$TMP/gateway-A.yaml"
gateway_config "$GW_B" "$AD_B" required 100000 > "$TMP/gateway-B.yaml"
gateway_config "$GW_C" "$AD_C" required 0 > "$TMP/gateway-C.yaml"
for t in A B C; do
  "$GATEWAY_BIN" check --config "$TMP/gateway-$t.yaml" >/dev/null || die "gateway rejects $TMP/gateway-$t.yaml"
  "$GATEWAY_BIN" --config "$TMP/gateway-$t.yaml" > "$TMP/gateway-$t.log" 2>&1 &
  GWPID[$t]=$!; started "$!" INT
done
for t in A B C; do
  wait_port "${PORT[$t]}" "${GWPID[$t]}" "gateway $t"; wait_port "${ADMIN[$t]}" "${GWPID[$t]}" "gateway $t admin"
done

declare -A AUTH=([A]="Bearer $TOKEN" [B]="Basic $BASIC" [C]="Basic $BASIC")
declare -A NAME=(
  [A]="A auth: none, client Bearer (verified by the service)"
  [B]="B auth: required, client Basic, token cache 100000"
  [C]="C auth: required, client Basic, token cache off (0)"
)
for t in A B C; do
  got=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H "Authorization: ${AUTH[$t]}" \
    "http://127.0.0.1:${PORT[$t]}/path?id=1") || die "${NAME[$t]}: curl failed"
  [ "$got" = 200 ] || die "${NAME[$t]}: GET /path?id=1 answered $got"
done
# Without credentials a required route must refuse (proves the gateway does the auth).
got=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_B/path?id=1")
[ "$got" = 401 ] || die "gateway B answered $got without credentials (want 401)"

token_cache() { # admin_port -> "hit miss exchanges" (exchanges: /auth calls answered ok)
  curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" | awk '
    /^gateway_token_cache_total\{.*result="hit"/ { h = $NF }
    /^gateway_token_cache_total\{.*result="miss"/ { m = $NF }
    /^gateway_auth_requests_total\{.*outcome="ok"/ { x = $NF }
    END { printf "%d %d %d\n", h, m, x }'
}

# ---------------------------------------------------------------- measuring
WRK_CMD=(wrk "-t$THREADS" "-c$CONNECTIONS" "-d$DURATION" --latency -s "$HERE/path.lua")
RESULTS=$TMP/results.tsv
: > "$RESULTS"
measure_once() { # round target [duration]
  local round=$1 t=$2 d=${3:-$DURATION} out h0 m0 x0 h1 m1 x1 line
  wait_no_other_wrk
  out=$TMP/wrk-$round-$t.txt
  read -r h0 m0 x0 < <(token_cache "${ADMIN[$t]}")
  run_wrk "$out" env AUTH="${AUTH[$t]}" PATHS="$NPATHS" \
    wrk "-t$THREADS" "-c$CONNECTIONS" "-d$d" --latency -s "$HERE/path.lua" "http://127.0.0.1:${PORT[$t]}"
  read -r h1 m1 x1 < <(token_cache "${ADMIN[$t]}")
  line=$(grep '^WRK_RESULT' "$out") || die "no WRK_RESULT in $out"
  awk -v round="$round" -v t="$t" -v hit="$((h1 - h0))" -v miss="$((m1 - m0))" -v exch="$((x1 - x0))" -v line="$line" 'BEGIN {
    n = split(line, kv, /[ =]/); for (i = 2; i < n; i += 2) r[kv[i]] = kv[i + 1]
    printf "%s\t%s\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", round, t, r["requests"] / (r["duration_us"] / 1e6),
      r["p50_us"], r["p99_us"], r["requests"], r["non2xx"], r["sockerr"], hit, miss, exch }' >> "$RESULTS"
  tail -n 1 "$RESULTS" | awk -F'\t' -v name="${NAME[$t]}" '{
    printf "  %-5s %-55s %9s req/s  p50 %8.2f ms  p99 %8.2f ms  requests %s non2xx %s sockerr %s  token cache hit %s miss %s, /auth exchanges %s\n",
      ($1 == 0 ? "warm" : "r" $1), name, $3, $4 / 1000, $5 / 1000, $6, $7, $8, $9, $10, $11 }'
  sleep "$PAUSE"
}

COMMAND="DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS WARMUP=$WARMUP benches/auth/run.sh"
say "== token exchange benchmark"
say "command:  $COMMAND"
say "wrk:      AUTH=<header> PATHS=$NPATHS ${WRK_CMD[*]} http://127.0.0.1:<gateway port>   (same for every target)"
say "machine:  $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
say "measured: $(git -C "$ROOT" rev-parse --short=10 HEAD 2>/dev/null || echo unknown) work tree ($(git -C "$ROOT" status --porcelain -- src 2>/dev/null | wc -l) changed files under src/)"
say "temp dir: $TMP"
say "== warm-up ($WARMUP each, not kept)"
for t in A B C; do measure 0 "$t" "$WARMUP"; done
say "== $ROUNDS rounds of $DURATION per target, interleaved"
for round in $(seq "$ROUNDS"); do
  for t in A B C; do measure "$round" "$t"; done
done

for t in A B C; do declare "RPS_$t=$(median 3 "$t")" "P50_$t=$(median 4 "$t")" "P99_$t=$(median 5 "$t")"; done
HIT_B=$(sum 9 B); MISS_B=$(sum 10 B); EXCH_B=$(sum 11 B); EXCH_C=$(sum 11 C); REQ_C=$(sum 6 C)
read -r RATIO_B RATIO_C SHARE < <(awk -v a="$RPS_A" -v b="$RPS_B" -v c="$RPS_C" -v h="$HIT_B" -v m="$MISS_B" \
  'BEGIN { printf "%.3f %.4f %.4f\n", b / a, c / a, (h + m > 0 ? 100 * h / (h + m) : 0) }')

{
  say "Command: \`$COMMAND\`"
  say ""
  say "Median of $ROUNDS interleaved rounds (A B C per round), wrk -t$THREADS -c$CONNECTIONS -d$DURATION, GET /path?id=N (N random in 1..$NPATHS)."
  say ""
  say "| target | req/s (median) | req/s range | p50 | p99 |"
  say "| --- | ---: | ---: | ---: | ---: |"
  for t in A B C; do
    r=RPS_$t; p=P50_$t; q=P99_$t
    say "| ${NAME[$t]} | $(printf '%.0f' "${!r}") | $(range 3 "$t") | $(ms "${!p}") | $(ms "${!q}") |"
  done
  say ""
  say "| target | measured | verdict |"
  say "| --- | ---: | --- |"
  say "| B / A throughput ≥ 0.90 | $RATIO_B | $(verdict "$RATIO_B" ">=" 0.9) |"
  say "| B: share of requests served without an /auth call ≥ 99.9 % | $SHARE % ($HIT_B hits, $MISS_B misses, $EXCH_B /auth exchanges) | $(verdict "$SHARE" ">=" 99.9) |"
  say "| C / A throughput (cache off, for reference) | $RATIO_C | — |"
  say ""
  say "- C: $EXCH_C successful /auth exchanges (gateway_auth_requests_total{outcome=\"ok\"}) for $REQ_C completed requests."
  say "- Non-2xx A/B/C: $(sum 7 A)/$(sum 7 B)/$(sum 7 C); socket errors A/B/C: $(sum 8 A)/$(sum 8 B)/$(sum 8 C)."
} > "$TMP/summary.md"
say ""
say "== summary (markdown)"
cat "$TMP/summary.md"
say ""
say "== per-run figures (round target rps p50_us p99_us requests non2xx sockerr token_hit token_miss auth_exchanges_ok)"
cat "$RESULTS"
