#!/usr/bin/env bash
# Cost of a rate limit that never triggers (not a test). Loopback only, temp dir, free ports,
# everything stopped on exit.
#
# Usage: benches/ratelimit/run.sh
#        DURATION=10s CONNECTIONS=32 ROUNDS=3 benches/ratelimit/run.sh
#
# One nginx origin (`return 200` with a small JSON body, keep-alive) and one gateway (release,
# server.threads 1) with two routes to it that differ only in the limit:
#   A  /open     no rate limit
#   B  /limited  rate_limit: per_client (key: client, rate 1000000/s: every request is
#                counted, none is ever refused)
# Measured interleaved A B, A B, ... (ROUNDS times, median reported), with the same
# wrk -t1 -cCONNECTIONS -dDURATION. The gateway's CPU time over each run (user + system from
# /proc/<pid>/stat) divided by the requests gives its CPU per request, the steadiest figure on
# a shared machine.
#
# Env: DURATION=10s CONNECTIONS=32 ROUNDS=3 WARMUP=2s PAUSE=1 SKIP_BUILD=0 KEEP_TMP=0
#      CARGO_TARGET_DIR (default /var/tmp/gateway-target)
# Needs: wrk, nginx, curl, python3, cargo.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
PAUSE=${PAUSE:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gateway-target}

# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
need wrk nginx curl python3

if [ "$SKIP_BUILD" != 1 ]; then
  (cd "$ROOT" && cargo build --release -p gateway) >&2
fi
GATEWAY_BIN=$CARGO_TARGET_DIR/release/gateway
[ -x "$GATEWAY_BIN" ] || die "release binary missing in $CARGO_TARGET_DIR"

bench_tmp ratelimit-bench
read -r ORIGIN_PORT GW_PORT ADMIN_PORT < <(free_ports 3)

# ---------------------------------------------------------------- origin
mkdir -p "$TMP/origin-temp"
cat > "$TMP/origin.conf" <<CONF
daemon off;
worker_processes 1;
pid $TMP/origin.pid;
error_log $TMP/origin.error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/origin-temp/body;
    proxy_temp_path $TMP/origin-temp/proxy;
    fastcgi_temp_path $TMP/origin-temp/fastcgi;
    uwsgi_temp_path $TMP/origin-temp/uwsgi;
    scgi_temp_path $TMP/origin-temp/scgi;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        location / { default_type application/json; return 200 '{"id":1,"startpoint":"63 Sunfield Way","endpoint":"4 Pawling Point"}'; }
    }
}
CONF
nginx -e "$TMP/origin.error.log" -c "$TMP/origin.conf" > "$TMP/origin.log" 2>&1 &
ORIGIN_PID=$!; started "$ORIGIN_PID" TERM; wait_port "$ORIGIN_PORT" "$ORIGIN_PID" "nginx origin"

# ---------------------------------------------------------------- gateway
cat > "$TMP/gateway.yaml" <<YAML
server: { listen: 127.0.0.1:$GW_PORT, threads: 1, grace_period: 1s }
admin: { listen: 127.0.0.1:$ADMIN_PORT }
upstreams:
  origin: { backends: [127.0.0.1:$ORIGIN_PORT] }
rate_limits:
  per_client: { key: client, rate: 1000000/s }
routes:
  - { path: /open, upstream: origin, auth: none }
  - { path: /limited, upstream: origin, auth: none, rate_limit: per_client }
YAML
"$GATEWAY_BIN" check --config "$TMP/gateway.yaml" >/dev/null || die "gateway rejects $TMP/gateway.yaml"
RUST_LOG=warn "$GATEWAY_BIN" --config "$TMP/gateway.yaml" > "$TMP/gateway.log" 2>&1 &
GW_PID=$!; started "$GW_PID" INT
wait_port "$GW_PORT" "$GW_PID" "gateway"; wait_port "$ADMIN_PORT" "$GW_PID" "gateway admin"
for path in /open /limited; do
  got=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_PORT$path")
  [ "$got" = 200 ] || die "GET $path answered $got"
done

declare -A PATH_OF=([A]=/open [B]=/limited)
declare -A NAME=([A]="A /open, no rate limit" [B]="B /limited, per-client limit never reached")
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$GW_PID/stat"; }
limited() {
  curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" \
    | awk '/^gateway_rate_limited_total/ { s += $NF } END { print s + 0 }'
}

# ---------------------------------------------------------------- measuring
RESULTS=$TMP/results.tsv
: > "$RESULTS"
HZ=$(getconf CLK_TCK)
measure_once() { # round target [duration]
  local round=$1 t=$2 d=${3:-$DURATION} out c0 c1 line
  wait_no_other_wrk
  out=$TMP/wrk-$round-$t.txt
  c0=$(cpu_ticks)
  run_wrk "$out" wrk -t1 "-c$CONNECTIONS" "-d$d" --latency "http://127.0.0.1:$GW_PORT${PATH_OF[$t]}"
  c1=$(cpu_ticks)
  python3 - "$out" "$round" "$t" "$((c1 - c0))" "$HZ" >> "$RESULTS" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
round_, target, ticks, hz = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
requests = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
us = 1e6 * ticks / hz / max(requests, 1)
print(f"{round_}\t{target}\t{rps:.1f}\t{us:.1f}\t{requests}\t{non2xx.group(1) if non2xx else 0}")
PY
  tail -n 1 "$RESULTS" | awk -F'\t' -v name="${NAME[$t]}" '{
    printf "  %-5s %-45s %9s req/s  gateway CPU %6s µs/request  requests %s non2xx %s\n",
      ($1 == 0 ? "warm" : "r" $1), name, $3, $4, $5, $6 }'
  sleep "$PAUSE"
}

COMMAND="DURATION=$DURATION CONNECTIONS=$CONNECTIONS ROUNDS=$ROUNDS WARMUP=$WARMUP benches/ratelimit/run.sh"
say "== rate limiter benchmark"
say "command:  $COMMAND"
say "wrk:      wrk -t1 -c$CONNECTIONS -d$DURATION --latency http://127.0.0.1:<gateway>/open|/limited"
say "machine:  $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
say "measured: $(git -C "$ROOT" rev-parse --short=10 HEAD 2>/dev/null || echo unknown)"
say "== warm-up ($WARMUP each, not kept)"
for t in A B; do measure 0 "$t" "$WARMUP"; done
say "== $ROUNDS rounds of $DURATION per target, interleaved"
for round in $(seq "$ROUNDS"); do
  for t in A B; do measure "$round" "$t"; done
done

for t in A B; do declare "RPS_$t=$(median 3 "$t")" "CPU_$t=$(median 4 "$t")"; done
read -r RATIO COST < <(awk -v a="$RPS_A" -v b="$RPS_B" -v ca="$CPU_A" -v cb="$CPU_B" \
  'BEGIN { printf "%.3f %.1f\n", b / a, cb - ca }')
REFUSED=$(limited)
{
  say "Command: \`$COMMAND\`"
  say ""
  say "Median of $ROUNDS interleaved rounds (A B per round), wrk -t1 -c$CONNECTIONS -d$DURATION, one gateway (threads 1), nginx origin."
  say ""
  say "| target | req/s (median) | req/s range | gateway CPU per request (median) |"
  say "| --- | ---: | ---: | ---: |"
  for t in A B; do
    r=RPS_$t; c=CPU_$t
    say "| ${NAME[$t]} | $(printf '%.0f' "${!r}") | $(range 3 "$t") | ${!c} µs |"
  done
  say ""
  say "- B / A throughput: **$RATIO** (goal ≥ 0.97: $(awk -v v="$RATIO" 'BEGIN { print (v >= 0.97) ? "met" : "MISSED" }'))."
  say "- The limiter's CPU per request (B − A): $COST µs. Requests refused during the runs: $REFUSED."
} > "$TMP/summary.md"
say ""
say "== summary (markdown)"
cat "$TMP/summary.md"
say ""
say "== per-run figures (round target rps cpu_us_per_request requests non2xx)"
cat "$RESULTS"
