#!/usr/bin/env bash
# Load benchmark of the gateway core (not a test): origin vs gateway vs nginx vs a bare
# Pingora proxy (the floor), plus open-breaker rejections. Everything runs on 127.0.0.1 from a temp dir, on free ports,
# and is stopped on exit.
#
# Usage (from anywhere):
#   benches/gateway/run.sh
#   DURATION=10s CONNECTIONS=50 THREADS=1 ROUNDS=3 benches/gateway/run.sh
#
# Targets, measured interleaved A B C D E, A B C D E, ... (ROUNDS times, median reported):
#   A  origin directly          nginx `return 200` with a small JSON body (origin.nginx.conf.in)
#   B  gateway -> origin        release binary, gateway.yaml.in, server.threads PROXY_THREADS,
#                               RUST_LOG=warn
#   C  nginx   -> origin        nginx reverse proxy, upstream keepalive 64 (proxy.nginx.conf.in),
#                               PROXY_THREADS workers
#   D  gateway, open breaker    route whose only backend is a dead port; breaker tripped first
#                               with curl (502 then 503), checked open via /admin/breakers;
#                               every answer must be a 503 (checked via wrk and /metrics)
#   E  floor   -> origin        benches/floor: a bare Pingora 0.9 proxy (only `upstream_peer`,
#                               a fixed HttpPeer), PROXY_THREADS threads: what Pingora itself
#                               costs, so that B - E is what the gateway adds
# Topology (default, on 2 or more CPUs): the proxies under test (gateway, nginx proxy, floor)
# on CPU 0, wrk and the origin on CPU 1, so nothing preempts the proxy on its CPU and its CPU
# time per request is its own cost (docs/benchmarks.md, Gateway core).
# All targets get the same wrk command: wrk -tTHREADS -cCONNECTIONS -dDURATION --latency.
#
# Options (environment variables):
#   DURATION=10s        wrk duration of each measured run
#   CONNECTIONS=50      wrk connections          THREADS=1   wrk threads
#   ROUNDS=3            interleaved rounds       WARMUP=2s   unmeasured warm-up per target
#   PAUSE=1             seconds of rest between runs
#   ORIGIN_WORKERS=1    nginx worker processes of the origin
#   PROXY_CPUS=0        taskset CPU list for the proxies under test (gateway, nginx proxy, floor)
#   CLIENT_CPUS=1       taskset CPU list for wrk
#   ORIGIN_CPUS=1       taskset CPU list for the origin nginx
#                       (each: set it empty for no pinning; defaults apply on 2+ CPUs only)
#   SERVER_CPUS=        older spelling: sets PROXY_CPUS and ORIGIN_CPUS both
#   PROXY_THREADS=1     worker threads of the gateway and the floor, workers of the nginx proxy
#   WORK_STEALING=true  the gateway's server.work_stealing and the floor's, alike (false: one
#                       runtime per worker thread)
#   QUIET_WAIT=60       before each run, wait up to this many seconds for the machine to be
#   QUIET_MAX=10        ...at most QUIET_MAX % busy (other work skews a 2-core box); 0 = skip
#   NOISE_MAX=15        a run during which other processes took more than this % of the
#   NOISE_RETRIES=2     machine is measured again, up to NOISE_RETRIES times
#   PROFILE=0           1: afterwards, `perf record` the gateway during one more B run and
#                       print its hottest symbols (needs perf)
#   GATEWAY_REV=        benchmark this committed revision instead of the work tree (which
#                       others may be editing): `git archive REV` is unpacked into
#                       /var/tmp/gateway-bench-src/<sha> and built there with
#                       CARGO_TARGET_DIR=$REV_TARGET_DIR (default /var/tmp/gateway-bench-target,
#                       so the shared target's binary is not overwritten)
#   SKIP_BUILD=0        1: do not run `cargo build --release -p gateway -p floor`
#   GATEWAY_BIN=        use this binary (implies SKIP_BUILD=1 for the gateway)
#   FLOOR_BIN=          use this floor binary instead of building benches/floor from the
#                       work tree (with GATEWAY_REV too: the floor is always the work tree's)
#   OUT=                also write the markdown summary to this file
#   KEEP_TMP=0          1: keep the temp dir (configs, logs, raw wrk output)
#   CARGO_TARGET_DIR    default /var/tmp/gateway-target
#
# Needs: wrk, nginx (Debian: apt-get install -y wrk nginx-light; installed automatically when
# running as root), curl, python3, cargo; taskset only with *_CPUS; perf only with PROFILE=1.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
PAUSE=${PAUSE:-1}
ORIGIN_WORKERS=${ORIGIN_WORKERS:-1}
SERVER_CPUS=${SERVER_CPUS:-}
if [ "$(nproc)" -ge 2 ]; then CPU_DEFAULTS=(0 1 1); else CPU_DEFAULTS=("" "" ""); fi
PROXY_CPUS=${PROXY_CPUS-${SERVER_CPUS:-${CPU_DEFAULTS[0]}}}
CLIENT_CPUS=${CLIENT_CPUS-${CPU_DEFAULTS[1]}}
ORIGIN_CPUS=${ORIGIN_CPUS-${SERVER_CPUS:-${CPU_DEFAULTS[2]}}}
PROXY_THREADS=${PROXY_THREADS:-1}
WORK_STEALING=${WORK_STEALING:-true}
FLOOR_BIN=${FLOOR_BIN:-}
QUIET_WAIT=${QUIET_WAIT:-60}
QUIET_MAX=${QUIET_MAX:-10}
NOISE_MAX=${NOISE_MAX:-15}
NOISE_RETRIES=${NOISE_RETRIES:-2}
PROFILE=${PROFILE:-0}
GATEWAY_REV=${GATEWAY_REV:-}
REV_TARGET_DIR=${REV_TARGET_DIR:-/var/tmp/gateway-bench-target}
SKIP_BUILD=${SKIP_BUILD:-0}
GATEWAY_BIN=${GATEWAY_BIN:-}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gateway-target}

# shellcheck source=../lib.sh
. "$HERE/../lib.sh" # this script has its own measure and range: noise is judged by the machine's load

REQUEST_PATH=$CORE_PATH
DEAD_PATH=/dead/42
BODY=$CORE_BODY

# ---------------------------------------------------------------- tools
core_tools
if [ "$PROFILE" = 1 ]; then
  command -v perf >/dev/null 2>&1 || die "PROFILE=1 needs perf (apt-get install -y linux-perf)"
fi

# ---------------------------------------------------------------- gateway binary
core_binaries

# ---------------------------------------------------------------- temp dir, servers, cleanup
# Ports, configs from the templates beside this script, the four servers started and checked:
# benches/lib.sh, core_start.
bench_tmp gateway-bench
core_start

# URL and NAME of A B C E: core_start; D is this script's.
URL[D]="http://127.0.0.1:$GATEWAY_PORT$DEAD_PATH"
NAME[D]="D gateway, open breaker (503)"

# ---------------------------------------------------------------- trip the breaker
admin() { curl -sS --max-time 5 "http://127.0.0.1:$ADMIN_PORT$1"; }
breaker_state() { # upstream -> state of its (only) backend
  admin /admin/breakers | python3 -c '
import json, sys
report = json.load(sys.stdin)
print(next((b["state"] for u in report["upstreams"] if u["name"] == sys.argv[1] for b in u["backends"]), "missing"))
' "$1"
}
# status -> count of gateway_requests_total for route $1 (a JSON object)
route_statuses() {
  admin /metrics | python3 -c '
import json, re, sys
counts = {}
for line in sys.stdin:
    if line.startswith("gateway_requests_total{") and ("route=\"%s\"" % sys.argv[1]) in line:
        status = re.search(r"status=\"([^\"]*)\"", line).group(1)
        counts[status] = counts.get(status, 0) + int(float(line.rsplit(" ", 1)[1]))
print(json.dumps(counts, sort_keys=True))
' "$1"
}
trip=()
for i in 1 2 3 4; do
  trip+=("$(curl -sS -o /dev/null --max-time 5 -w '%{http_code}' "${URL[D]}")")
done
TRIP_STATUSES="${trip[*]}"
state=$(breaker_state dead)
[ "$state" = open ] || die "breaker of upstream 'dead' is '$state' after curl statuses $TRIP_STATUSES (want open)"
[ "${trip[0]}" = 502 ] && [ "${trip[3]}" = 503 ] \
  || die "tripping answered $TRIP_STATUSES (want 502 first, then 503)"

# ---------------------------------------------------------------- measuring
CLK_TCK=$(getconf CLK_TCK)
WRK_CMD=(wrk "-t$THREADS" "-c$CONNECTIONS" "-d$DURATION" --latency -s "$HERE/report.lua")

# cpu_busy_total, proc_ticks, tree (nginx master and workers), wait_quiet: benches/lib.sh.
origin_accepts() { # connections the origin accepted so far, not counting this query's
  curl -sS --max-time 5 "http://127.0.0.1:$ORIGIN_PORT/__stub_status" | awk 'NR == 3 { print $1 - 1 }'
}

RETRIED=0
RESULTS=$TMP/results.tsv
: > "$RESULTS"
run=0
# measure ROUND TARGET [DURATION]: one wrk run, one line in $RESULTS, measured again while
# other processes took too much of the machine (benches/lib.sh).
measure() { measure_retrying_noise "$@"; }
measure_once() {
  local round=$1 t=$2 dur=${3:-$DURATION} out idle b0 t0 b1 t1 gw0 gw1 or0 or1 px0 px1 fl0 fl1 line
  run=$((run + 1))
  out=$TMP/wrk.$run.$t.txt
  idle=$(wait_quiet)
  local before_dead=""
  [ "$t" = D ] && [ "$round" != 0 ] && before_dead=$(route_statuses /dead)
  local acc0 acc1
  acc0=$(origin_accepts)
  read -r b0 t0 < <(cpu_busy_total)
  gw0=$(proc_ticks "$GATEWAY_PID"); or0=$(proc_ticks $(tree "$ORIGIN_PID")); px0=$(proc_ticks $(tree "$PROXY_PID"))
  fl0=$(proc_ticks "$FLOOR_PID")
  { TIMEFORMAT='%U %S'; time "${PIN_CLIENT[@]}" "$WRK" "-t$THREADS" "-c$CONNECTIONS" "-d$dur" --latency \
      -s "$HERE/report.lua" "${URL[$t]}" > "$out" 2>&1; } 2> "$out.time" || die "wrk failed: $(cat "$out")"
  read -r b1 t1 < <(cpu_busy_total)
  gw1=$(proc_ticks "$GATEWAY_PID"); or1=$(proc_ticks $(tree "$ORIGIN_PID")); px1=$(proc_ticks $(tree "$PROXY_PID"))
  fl1=$(proc_ticks "$FLOOR_PID")
  acc1=$(origin_accepts)
  line=$(grep '^WRK_RESULT' "$out") || die "no WRK_RESULT in $out: $(cat "$out")"
  local dead_check="-"
  if [ -n "$before_dead" ]; then
    dead_check=$(python3 -c '
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
d = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b) if b.get(k, 0) != a.get(k, 0)}
print(",".join("%s:%d" % kv for kv in sorted(d.items())) or "none")
' "$before_dead" "$(route_statuses /dead)")
  fi
  # round target rps p50 p90 p99 max requests non2xx sockerr gw_us/req origin_us/req proxy_us/req
  # wrk_us/req busy% bg% idle_before% dead_statuses origin_conns_opened floor_us/req
  awk -v round="$round" -v t="$t" -v hz="$CLK_TCK" -v b="$((b1 - b0))" -v tot="$((t1 - t0))" \
      -v acc="$((acc1 - acc0 - 1))" \
      -v gw="$((gw1 - gw0))" -v org="$((or1 - or0))" -v px="$((px1 - px0))" -v fl="$((fl1 - fl0))" \
      -v wrkcpu="$(cat "$out.time")" -v idle="$idle" -v dead="$dead_check" -v line="$line" '
    BEGIN {
      n = split(line, kv, /[ =]/); for (i = 2; i < n; i += 2) r[kv[i]] = kv[i + 1]
      split(wrkcpu, w, " "); wrk_j = (w[1] + w[2]) * hz
      req = r["requests"]; rps = req / (r["duration_us"] / 1e6)
      per = (req > 0) ? 1e6 / hz / req : 0
      bg = (tot > 0) ? (b - gw - org - px - fl - wrk_j) * 100 / tot : 0
      printf "%s\t%s\t%.0f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t%s\t%s\t%d\t%.1f\n",
        round, t, rps, r["p50_us"], r["p90_us"], r["p99_us"], r["max_us"], req, r["non2xx"],
        r["connect_err"] + r["read_err"] + r["write_err"] + r["timeout_err"],
        gw * per, org * per, px * per, wrk_j * per, (tot > 0 ? b * 100 / tot : 0), (bg < 0 ? 0 : bg), idle, dead, acc,
        fl * per
    }' >> "$RESULTS"
  tail -n 1 "$RESULTS" | awk -F'\t' -v name="${NAME[$t]}" '{
    printf "  %-5s %-34s %8s req/s  p50 %6.2f ms  p99 %6.2f ms  non2xx %-8s sockerr %-3s cpu/req: gw %.0f us, nginx-proxy %.0f us, floor %.0f us, origin %.0f us, wrk %.0f us | machine %s%% busy, other %s%%, %s%% before | origin conns opened %s%s\n",
      ($1 == 0 ? "warm" : "r" $1), name, $3, $4 / 1000, $6 / 1000, $9, $10, $11, $13, $20, $12, $14, $15, $16, $17, $19,
      ($18 == "-" ? "" : " | /dead statuses: " $18) }'
  sleep "$PAUSE"
}

# ---------------------------------------------------------------- header
COMMAND="DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS WARMUP=$WARMUP ORIGIN_WORKERS=$ORIGIN_WORKERS"
COMMAND+=" QUIET_WAIT=$QUIET_WAIT QUIET_MAX=$QUIET_MAX NOISE_MAX=$NOISE_MAX NOISE_RETRIES=$NOISE_RETRIES"
[ "$PROFILE" = 1 ] && COMMAND+=" PROFILE=1"
COMMAND+=" PROXY_CPUS=$PROXY_CPUS CLIENT_CPUS=$CLIENT_CPUS ORIGIN_CPUS=$ORIGIN_CPUS PROXY_THREADS=$PROXY_THREADS WORK_STEALING=$WORK_STEALING"
[ -n "$GATEWAY_REV" ] && COMMAND+=" GATEWAY_REV=$GATEWAY_REV"
COMMAND+=" benches/gateway/run.sh"
say "== gateway core benchmark"
say "command:  $COMMAND"
say "wrk:      ${PIN_CLIENT[*]:+${PIN_CLIENT[*]} }${WRK_CMD[*]} <url>   (same for every target)"
for t in A B C D E; do say "  ${NAME[$t]}: ${URL[$t]}"; done
say "machine:  $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
say "versions: $("$WRK" -v 2>&1 | head -1 | cut -d' ' -f1-2), $("$NGINX" -v 2>&1 | cut -d' ' -f3), gateway binary $GATEWAY_BIN"
say "measured: $SOURCE"
say "pinning:  wrk CPU ${CLIENT_CPUS:-unpinned}, origin CPU ${ORIGIN_CPUS:-unpinned}, proxies under test CPU ${PROXY_CPUS:-unpinned}; origin nginx $ORIGIN_WORKERS worker(s), proxy nginx $PROXY_THREADS worker(s), gateway server.threads $PROXY_THREADS, floor $PROXY_THREADS thread(s)"
say "floor:    $FLOOR_BIN"
say "breaker:  tripped with curl -> $TRIP_STATUSES; /admin/breakers says 'dead' is $state"
say "temp dir: $TMP"
say ""

say "== warm-up ($WARMUP each, not kept)"
for t in A B C D E; do measure 0 "$t" "$WARMUP"; done
say "== $ROUNDS rounds of $DURATION per target, interleaved"
for round in $(seq "$ROUNDS"); do
  for t in A B C D E; do measure "$round" "$t"; done
done
state_after=$(breaker_state dead)

if [ "$PROFILE" = 1 ]; then
  say ""
  say "== profile: perf record -F 999 -p <gateway> during one more B run ($DURATION)"
  perf record -q -F 999 -p "$GATEWAY_PID" -o "$TMP/perf.data" 2>"$TMP/perf.log" &
  perf_pid=$!
  sleep 0.5
  measure P B
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
  perf report -q -i "$TMP/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep "%" | head -8 | cut -c1-100 || true
  say ""
  perf report -q -i "$TMP/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep "%" | head -40 | cut -c1-140 || true
  sed -i '/^P\t/d' "$RESULTS"
fi

# ---------------------------------------------------------------- summary
range() { # col target -> "min-max"
  awk -F'\t' -v c="$1" -v t="$2" '$1 > 0 && $2 == t { if (n++ == 0 || $c < lo) lo = $c; if ($c > hi) hi = $c } END { printf "%d-%d", lo, hi }' "$RESULTS"
}

for t in A B C D E; do
  declare "RPS_$t=$(median 3 "$t")" "P50_$t=$(median 4 "$t")" "P99_$t=$(median 6 "$t")"
done
D_REQ=$(sum 8 D); D_NON2XX=$(sum 9 D); D_SOCKERR=$(sum 10 D)
D_STATUSES=$(awk -F'\t' '$1 > 0 && $2 == "D" { print $18 }' "$RESULTS" | sort -u | paste -sd' ')
B_NON2XX=$(sum 9 B); C_NON2XX=$(sum 9 C); A_NON2XX=$(sum 9 A); E_NON2XX=$(sum 9 E)
SOCKERR_ABC=$(( $(sum 10 A) + $(sum 10 B) + $(sum 10 C) + $(sum 10 E) ))
if [ "$D_NON2XX" = "$D_REQ" ] && [[ "$D_STATUSES" =~ ^(503:[0-9]+ ?)+$ ]]; then
  D_VERDICT="all $D_REQ answers non-2xx per wrk, and /metrics counted only 503s on /dead"
else
  D_VERDICT="NOT all 503: wrk non-2xx $D_NON2XX of $D_REQ, /metrics deltas: $D_STATUSES"
fi

read -r RATIO_TPUT ADDED_P99 NGINX_ADDED_P99 RATIO_REJ < <(awk -v a="$RPS_A" -v b="$RPS_B" -v c="$RPS_C" -v d="$RPS_D" \
  -v pa="$P99_A" -v pb="$P99_B" -v pc="$P99_C" \
  'BEGIN { printf "%.2f %.2f %.2f %.2f\n", b / c, (pb - pa) / 1000, (pc - pa) / 1000, d / b }')
V1=$(verdict "$RATIO_TPUT" ">=" 1.1); V2=$(verdict "$ADDED_P99" "<=" 0.5); V3=$(verdict "$RATIO_REJ" ">=" 2)

cpu_med() { awk -v v="$(median "$1" "$2")" 'BEGIN { printf "%.0f", v }'; }
FLOOR_US=$(awk -v v="$(median 20 E)" 'BEGIN { printf "%.1f", v }')
GW_US=$(awk -v v="$(median 11 B)" 'BEGIN { printf "%.1f", v }')
NGINX_US=$(awk -v v="$(median 13 C)" 'BEGIN { printf "%.1f", v }')
read -r GW_OVER_FLOOR GW_MINUS_FLOOR NGINX_OVER_FLOOR TPUT_GW_FLOOR TPUT_FLOOR_NGINX < <(awk -v f="$FLOOR_US" -v g="$GW_US" \
  -v n="$NGINX_US" -v rb="$RPS_B" -v re="$RPS_E" -v rc="$RPS_C" 'BEGIN {
    d = (f > 0) ? f : 1; printf "%.2f %.1f %.2f %.2f %.2f\n", g / d, g - f, n / d, rb / (re > 0 ? re : 1), re / (rc > 0 ? rc : 1) }')
BG_MAX=$(awk -F'\t' '$1 > 0 { if ($16 > m) m = $16 } END { print m + 0 }' "$RESULTS")

{
  say "Command: \`$COMMAND\`"
  say ""
  say "Median of $ROUNDS interleaved rounds (A B C D E per round), wrk -t$THREADS -c$CONNECTIONS -d$DURATION, GET $REQUEST_PATH (${#BODY}-byte JSON body)."
  say ""
  say "| target | req/s (median) | req/s range | p50 | p99 | server CPU per request |"
  say "| --- | ---: | ---: | ---: | ---: | --- |"
  say "| A origin direct (nginx \`return 200\`) | $RPS_A | $(range 3 A) | $(ms "$P50_A") | $(ms "$P99_A") | origin $(cpu_med 12 A) µs |"
  say "| B gateway → origin | $RPS_B | $(range 3 B) | $(ms "$P50_B") | $(ms "$P99_B") | gateway $(cpu_med 11 B) µs + origin $(cpu_med 12 B) µs |"
  say "| C nginx → origin (keepalive 64) | $RPS_C | $(range 3 C) | $(ms "$P50_C") | $(ms "$P99_C") | nginx proxy $(cpu_med 13 C) µs + origin $(cpu_med 12 C) µs |"
  say "| D gateway, open breaker → 503 | $RPS_D | $(range 3 D) | $(ms "$P50_D") | $(ms "$P99_D") | gateway $(cpu_med 11 D) µs |"
  say "| E floor: bare Pingora → origin | $RPS_E | $(range 3 E) | $(ms "$P50_E") | $(ms "$P99_E") | floor $(cpu_med 20 E) µs + origin $(cpu_med 12 E) µs |"
  say ""
  say "What Pingora costs and what the gateway adds (median CPU per proxied request): floor $FLOOR_US µs, gateway $GW_US µs (×$GW_OVER_FLOOR the floor; the gateway adds $GW_MINUS_FLOOR µs), nginx $NGINX_US µs (×$NGINX_OVER_FLOOR the floor). Throughput: gateway / floor $TPUT_GW_FLOOR, floor / nginx $TPUT_FLOOR_NGINX."
  say ""
  say "| target (product owner) | measured | verdict |"
  say "| --- | ---: | --- |"
  say "| gateway / nginx throughput ≥ 1.10 | $RATIO_TPUT | $V1 |"
  say "| gateway-added p99 = p99(B) − p99(A) ≤ 0.5 ms | $ADDED_P99 ms | $V2 |"
  say "| open-breaker rejections / proxied throughput ≥ 2.0 | $RATIO_REJ | $V3 |"
  say ""
  say "- For comparison, nginx-added p99 = p99(C) − p99(A) = $NGINX_ADDED_P99 ms."
  say "- Rejections (D): $D_VERDICT; socket errors $D_SOCKERR. Breaker tripped by curl ($TRIP_STATUSES), state before: $state, after: $state_after."
  say "- Non-2xx on A/B/C/E: $A_NON2XX/$B_NON2XX/$C_NON2XX/$E_NON2XX; socket errors on A/B/C/E: $SOCKERR_ABC."
  say "- Gateway measured: $SOURCE."
  say "- Pinning: wrk CPU ${CLIENT_CPUS:-unpinned}, origin CPU ${ORIGIN_CPUS:-unpinned}, proxies under test CPU ${PROXY_CPUS:-unpinned}, $PROXY_THREADS thread(s)/worker(s) each. Highest CPU share of other processes during a kept run: ${BG_MAX}% of the machine; runs measured again because others took > ${NOISE_MAX}%: $RETRIED."
} > "$TMP/summary.md"

say ""
say "== summary (markdown)"
cat "$TMP/summary.md"
say ""
say "== per-run figures (round target rps p50_us p90_us p99_us max_us requests non2xx sockerr gw_us/req origin_us/req proxy_us/req wrk_us/req busy% other% idle_before% dead_statuses origin_conns_opened floor_us/req)"
cat "$RESULTS"
if [ -n "$OUT" ]; then
  cp "$TMP/summary.md" "$OUT"
  say "summary written to $OUT"
fi
