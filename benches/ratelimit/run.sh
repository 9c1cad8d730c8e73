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
# Two measures:
# 1. (WRK=1) throughput, interleaved A B, A B, ... (ROUNDS times, median reported), with the
#    same wrk -t1 -cCONNECTIONS -dDURATION. The gateway's CPU time over each run (user + system
#    from /proc/<pid>/stat) divided by the requests gives its CPU per request.
# 2. (CALLGRIND=1) instructions per request: a second gateway, same config, under valgrind
#    --tool=callgrind; per target, N and then 2N requests on one keep-alive connection
#    (benches/compare/drive.py), counters zeroed before and dumped after each, (I(2N) - I(N)) / N
#    (cg_per_request in benches/lib.sh), interleaved A B for CG_ROUNDS rounds. The same figure
#    whatever else the machine runs: the one to trust on a shared, loaded machine.
#
# Env: DURATION=10s CONNECTIONS=32 ROUNDS=3 WARMUP=2s PAUSE=1 SKIP_BUILD=0 KEEP_TMP=0
#      WRK=1 CALLGRIND=1 N=2000 WARM=300 CG_ROUNDS=2
#      CARGO_TARGET_DIR (default /var/tmp/gateway-target)
# Needs: wrk, nginx, curl, python3, cargo; valgrind (callgrind_control) for CALLGRIND=1.
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
WRK=${WRK:-1}
CALLGRIND=${CALLGRIND:-1}
N=${N:-2000}
WARM=${WARM:-300}
CG_ROUNDS=${CG_ROUNDS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gateway-target}

# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
need wrk nginx curl python3
if [ "$CALLGRIND" = 1 ]; then need valgrind callgrind_control; fi

if [ "$SKIP_BUILD" != 1 ]; then
  (cd "$ROOT" && cargo build --release -p gateway) >&2
fi
GATEWAY_BIN=$CARGO_TARGET_DIR/release/gateway
[ -x "$GATEWAY_BIN" ] || die "release binary missing in $CARGO_TARGET_DIR"

bench_tmp ratelimit-bench
read -r ORIGIN_PORT GW_PORT ADMIN_PORT CG_PORT CG_ADMIN < <(free_ports 5)

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

COMMAND="DURATION=$DURATION CONNECTIONS=$CONNECTIONS ROUNDS=$ROUNDS WARMUP=$WARMUP WRK=$WRK CALLGRIND=$CALLGRIND N=$N CG_ROUNDS=$CG_ROUNDS benches/ratelimit/run.sh"
say "== rate limiter benchmark"
say "command:  $COMMAND"
say "wrk:      wrk -t1 -c$CONNECTIONS -d$DURATION --latency http://127.0.0.1:<gateway>/open|/limited"
say "machine:  $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
say "measured: $(git -C "$ROOT" rev-parse --short=10 HEAD 2>/dev/null || echo unknown)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$WRK" = 1 ]; then
  say "== warm-up ($WARMUP each, not kept)"
  for t in A B; do measure 0 "$t" "$WARMUP"; done
  say "== $ROUNDS rounds of $DURATION per target, interleaved"
  for round in $(seq "$ROUNDS"); do
    for t in A B; do measure "$round" "$t"; done
  done
  for t in A B; do declare "RPS_$t=$(median 3 "$t")" "CPU_$t=$(median 4 "$t")"; done
  read -r RATIO COST < <(awk -v a="$RPS_A" -v b="$RPS_B" -v ca="$CPU_A" -v cb="$CPU_B" \
    'BEGIN { printf "%.3f %.1f\n", b / a, cb - ca }')
fi

# ---------------------------------------------------------------- instructions per request
CG_RESULTS=$TMP/callgrind.tsv # round target instructions
: > "$CG_RESULTS"
if [ "$CALLGRIND" = 1 ]; then
  sed -e "s/127.0.0.1:$GW_PORT/127.0.0.1:$CG_PORT/" -e "s/127.0.0.1:$ADMIN_PORT/127.0.0.1:$CG_ADMIN/" \
    "$TMP/gateway.yaml" > "$TMP/gateway.cg.yaml"
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" \
    "$GATEWAY_BIN" --config "$TMP/gateway.cg.yaml" > "$TMP/valgrind.log" 2>&1 &
  CG_PID=$!; started "$CG_PID" INT
  wait_port "$CG_PORT" "$CG_PID" "gateway under valgrind" 300
  say "== callgrind: instructions per request, N=$N and 2N, warm-up $WARM per target, $CG_ROUNDS rounds"
  for t in A B; do python3 "$BENCHES/compare/drive.py" "$CG_PORT" "${PATH_OF[$t]}" "$WARM" > /dev/null; done
  for round in $(seq "$CG_ROUNDS"); do
    for t in A B; do
      ir=$(cg_per_request "$CG_PID" "$TMP/cg.out" "$CG_PORT" "${PATH_OF[$t]}" "$N")
      printf '%s\t%s\t%s\n' "$round" "$t" "$ir" >> "$CG_RESULTS"
      say "  r$round  ${NAME[$t]}: $ir instructions/request"
    done
  done
  stop "$CG_PID" INT
  cg_median() { awk -F'\t' -v t="$1" '$2 == t { print $3 }' "$CG_RESULTS" | sort -g \
    | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); print (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2) }'; }
  IR_A=$(cg_median A); IR_B=$(cg_median B)
fi

REFUSED=$(limited)
{
  say "Command: \`$COMMAND\`"
  say ""
  say "Load average at the start: $LOAD_START; machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')."
  if [ "$WRK" = 1 ]; then
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
    say "- B / A throughput: **$RATIO** (goal ≥ 0.97: $(verdict "$RATIO" '>=' 0.97))."
    say "- The limiter's CPU per request (B − A): $COST µs. Requests refused during the runs: $REFUSED."
  fi
  if [ "$CALLGRIND" = 1 ]; then
    IR_RATIO=$(awk -v a="$IR_A" -v b="$IR_B" 'BEGIN { printf "%.3f", a / b }')
    say ""
    say "Instructions per request under callgrind (median of $CG_ROUNDS interleaved rounds, N=$N and 2N): A $IR_A, B $IR_B."
    say ""
    say "- The limiter's instructions per request (B − A): $((IR_B - IR_A)) ($(awk -v a="$IR_A" -v b="$IR_B" 'BEGIN { printf "%+.1f %%", 100 * (b - a) / a }')), so an instruction-bound B / A throughput of $IR_RATIO (goal ≥ 0.97: $(verdict "$IR_RATIO" '>=' 0.97))."
  fi
} > "$TMP/summary.md"
say ""
say "== summary (markdown)"
cat "$TMP/summary.md"
say ""
if [ "$WRK" = 1 ]; then
  say "== per-run figures (round target rps cpu_us_per_request requests non2xx)"
  cat "$RESULTS"
fi
