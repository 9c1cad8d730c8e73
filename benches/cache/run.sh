#!/usr/bin/env bash
# Load benchmark of the gateway's response cache (not a test). Loopback only, temp dir, free
# ports, everything stopped on exit.
#
# Usage: benches/cache/run.sh
#        DURATION=10s CONNECTIONS=50 THREADS=2 ROUNDS=2 FILL=100000 benches/cache/run.sh
#
# One origin (nginx `return 200` with the seed's path object for any URL, origin.nginx.conf.in)
# and three caches in front of it, measured on cache hits of GET /path?id=42:
#   A  gateway, route /path `cache: { ttl: 1h, scope: shared }`, auth: none, memory store
#   B  the same gateway config with `store: redis` against a private redis-server (free port,
#      no persistence) that this script starts and stops
#   C  nginx proxy_cache (proxy_cache_valid 200 1h, keepalive 64 upstream, proxy.nginx.conf.in)
# Each is warmed once and must answer `X-Cache: HIT` before measuring. Interleaved A B C,
# A B C, ... (ROUNDS times, median reported), all with the same
#   wrk -tTHREADS -cCONNECTIONS -dDURATION --latency -s report.lua <url>
# The origin's accepted-connection count is checked so that a run that went to the origin shows.
# Topology as benches/gateway/run.sh's: the caches under test (both gateways, nginx proxy_cache)
# on PROXY_CPUS with PROXY_THREADS workers each (gateway server.threads, nginx
# worker_processes); wrk, the origin and redis-server on CLIENT_CPUS. Besides req/s, each run
# reports the cache's CPU time per answer (utime+stime from /proc over the run / requests),
# which is what to compare across targets when CLIENT_CPUS, not the cache, is the bottleneck.
# Then RSS: a fresh gateway (memory store, max_entries 200000, max_bytes 256MiB) is filled with
# FILL distinct entries (GET /path?id=1..FILL, fill.lua, wrk -t1 -c16) and its VmRSS is read
# from /proc before and after, with gateway_cache_entries from its admin /metrics.
#
# Env: DURATION=10s CONNECTIONS=50 THREADS=1 ROUNDS=2 WARMUP=2s PAUSE=1 FILL=100000
#      PROXY_CPUS=0 CLIENT_CPUS=1 PROXY_THREADS=1 WORK_STEALING=true (set a CPU list empty to
#      unpin; the figures before #14's work were taken unpinned with PROXY_THREADS=2 THREADS=2)
#      SKIP_BUILD=0 KEEP_TMP=0 CARGO_TARGET_DIR (default /var/tmp/gateway-target), GATEWAY_BIN
# Needs: wrk, nginx, redis-server, redis-cli, curl, python3, cargo.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-1}
PROXY_CPUS=${PROXY_CPUS-0}
CLIENT_CPUS=${CLIENT_CPUS-1}
PROXY_THREADS=${PROXY_THREADS:-1}
WORK_STEALING=${WORK_STEALING:-true}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-2s}
PAUSE=${PAUSE:-1}
FILL=${FILL:-100000}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gateway-target}
BODY='{"endpoint":"4 Pawling Point","id":42,"startpoint":"63 Sunfield Way"}'
REQUEST_PATH='/path?id=42'

# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
need wrk curl python3 redis-server redis-cli
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "missing nginx (apt-get install -y nginx-light)"

if [ -z "${GATEWAY_BIN:-}" ] && [ "$SKIP_BUILD" != 1 ]; then
  (cd "$ROOT" && cargo build --release -p gateway -p stack) >&2
fi
GATEWAY_BIN=${GATEWAY_BIN:-$CARGO_TARGET_DIR/release/gateway}
PIN_PROXY=()
PIN_CLIENT=()
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  [ -n "$PROXY_CPUS" ] && PIN_PROXY=(taskset -c "$PROXY_CPUS")
  [ -n "$CLIENT_CPUS" ] && PIN_CLIENT=(taskset -c "$CLIENT_CPUS")
fi
[ -x "$GATEWAY_BIN" ] || die "no gateway binary at $GATEWAY_BIN"

bench_tmp cache-bench
mkdir -p "$TMP/origin-temp" "$TMP/proxy-temp" "$TMP/proxy-cache" "$TMP/redis"
read -r ORIGIN_PORT PROXY_PORT REDIS_PORT GW_A AD_A GW_B AD_B GW_R AD_R < <(free_ports 9)
render() { # template output
  sed -e "s|@TMP@|$TMP|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" -e "s|@PROXY_PORT@|$PROXY_PORT|g" \
    -e "s|@PROXY_THREADS@|$PROXY_THREADS|g" \
    -e "s|@BODY@|$BODY|g" "$1" > "$2"
}
render "$HERE/origin.nginx.conf.in" "$TMP/origin.conf"
render "$HERE/proxy.nginx.conf.in" "$TMP/proxy.conf"


gateway_config() { # port admin_port cache-section
  cat <<YAML
server: { listen: 127.0.0.1:$1, threads: $PROXY_THREADS, work_stealing: $WORK_STEALING, grace_period: 1s }
admin: { listen: 127.0.0.1:$2 }
upstreams:
  origin: { backends: [127.0.0.1:$ORIGIN_PORT] }
cache: $3
routes:
  - { path: /path, upstream: origin, auth: none, cache: { ttl: 1h, scope: shared } }
YAML
}
gateway_config "$GW_A" "$AD_A" "{ store: memory, max_entries: 100000, max_bytes: 64MiB }" > "$TMP/gateway-A.yaml"
gateway_config "$GW_B" "$AD_B" "{ store: redis, redis_url: \"redis://127.0.0.1:$REDIS_PORT/0\", key_prefix: \"bench:\" }" > "$TMP/gateway-B.yaml"
# The RSS gateway runs the shipped default of two worker threads (gateway.yaml), unpinned:
# each thread's allocator cache is part of what a deployment holds.
gateway_config "$GW_R" "$AD_R" "{ store: memory, max_entries: 200000, max_bytes: 256MiB }" \
  | sed "s|threads: $PROXY_THREADS,|threads: 2,|" > "$TMP/gateway-R.yaml"

# ---------------------------------------------------------------- start
for name in origin proxy; do
  "$NGINX" -t -q -p "$TMP/" -e "$TMP/$name.error.log" -c "$TMP/$name.conf" || die "nginx rejects $TMP/$name.conf"
done
"${PIN_CLIENT[@]}" "$NGINX" -p "$TMP/" -e "$TMP/origin.error.log" -c "$TMP/origin.conf" & ORIGIN_PID=$!; started $! TERM
"${PIN_PROXY[@]}" "$NGINX" -p "$TMP/" -e "$TMP/proxy.error.log" -c "$TMP/proxy.conf" & PROXY_PID=$!; started $! TERM
"${PIN_CLIENT[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$TMP/redis" \
  > "$TMP/redis.log" 2>&1 & REDIS_PID=$!; started $! TERM
wait_port "$ORIGIN_PORT" "$ORIGIN_PID" "origin nginx"
wait_port "$PROXY_PORT" "$PROXY_PID" "proxy nginx"
wait_port "$REDIS_PORT" "$REDIS_PID" "redis-server"
declare -A GWPID=()
for t in A B; do
  "$GATEWAY_BIN" check --config "$TMP/gateway-$t.yaml" >/dev/null || die "gateway rejects $TMP/gateway-$t.yaml"
  RUST_LOG=warn "${PIN_PROXY[@]}" "$GATEWAY_BIN" --config "$TMP/gateway-$t.yaml" > "$TMP/gateway-$t.log" 2>&1 & GWPID[$t]=$!; started $! INT
done
wait_port "$GW_A" "${GWPID[A]}" "gateway A"; wait_port "$AD_A" "${GWPID[A]}" "gateway A admin"
wait_port "$GW_B" "${GWPID[B]}" "gateway B"; wait_port "$AD_B" "${GWPID[B]}" "gateway B admin"

declare -A URL=(
  [A]="http://127.0.0.1:$GW_A$REQUEST_PATH"
  [B]="http://127.0.0.1:$GW_B$REQUEST_PATH"
  [C]="http://127.0.0.1:$PROXY_PORT$REQUEST_PATH"
)
declare -A NAME=(
  [A]="A gateway, memory store"
  [B]="B gateway, redis store (private redis-server)"
  [C]="C nginx proxy_cache"
)
# Warm each once, then the next answer must be a HIT with the origin's exact body.
for t in A B C; do
  curl -fsS -o /dev/null --max-time 5 "${URL[$t]}" || die "${NAME[$t]}: warming failed"
  sleep 0.2
  headers=$(curl -fsS -D - -o "$TMP/body-$t" --max-time 5 "${URL[$t]}") || die "${NAME[$t]}: curl failed"
  grep -qi '^x-cache: HIT' <<<"$headers" || die "${NAME[$t]}: second answer is not a HIT: $headers"
  [ "$(cat "$TMP/body-$t")" = "$BODY" ] || die "${NAME[$t]}: unexpected body $(cat "$TMP/body-$t")"
done
REDIS_KEYS=$(redis-cli -p "$REDIS_PORT" --scan --pattern 'bench:*' | wc -l)
[ "$REDIS_KEYS" -ge 1 ] || die "gateway B wrote no bench:* key into its redis"

origin_accepts() { curl -fsS --max-time 5 "http://127.0.0.1:$ORIGIN_PORT/__stub_status" | awk 'NR == 3 { print $1 - 1 }'; }
origin_requests() { curl -fsS --max-time 5 "http://127.0.0.1:$ORIGIN_PORT/__stub_status" | awk 'NR == 3 { print $3 - 1 }'; }

# ---------------------------------------------------------------- measuring
RESULTS=$TMP/results.tsv
: > "$RESULTS"
server_pids() { # target -> the pids whose CPU time is the cache's (nginx: master and workers)
  case $1 in
    C) tree "$PROXY_PID" ;;
    *) echo "${GWPID[$1]}" ;;
  esac
}
HZ=$(getconf CLK_TCK)
measure_once() { # round target [duration]
  local round=$1 t=$2 d=${3:-$DURATION} out o0 o1 c0 c1 line
  wait_no_other_wrk
  out=$TMP/wrk-$round-$t.txt
  o0=$(origin_requests)
  c0=$(proc_ticks $(server_pids "$t"))
  run_wrk "$out" "${PIN_CLIENT[@]}" wrk "-t$THREADS" "-c$CONNECTIONS" "-d$d" --latency -s "$HERE/report.lua" "${URL[$t]}"
  c1=$(proc_ticks $(server_pids "$t"))
  o1=$(origin_requests)
  line=$(grep '^WRK_RESULT' "$out") || die "no WRK_RESULT in $out"
  awk -v round="$round" -v t="$t" -v org="$((o1 - o0 - 1))" -v line="$line" -v ticks="$((c1 - c0))" -v hz="$HZ" 'BEGIN {
    n = split(line, kv, /[ =]/); for (i = 2; i < n; i += 2) r[kv[i]] = kv[i + 1]
    printf "%s\t%s\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f\n", round, t, r["requests"] / (r["duration_us"] / 1e6),
      r["p50_us"], r["p99_us"], r["requests"], r["non2xx"], r["sockerr"], org,
      (r["requests"] > 0 ? ticks * 1e6 / hz / r["requests"] : 0) }' >> "$RESULTS"
  tail -n 1 "$RESULTS" | awk -F'\t' -v name="${NAME[$t]}" '{
    printf "  %-5s %-46s %9s req/s  p50 %6.2f ms  p99 %6.2f ms  cpu/answer %6.2f us  requests %s non2xx %s sockerr %s  origin requests during run %s\n",
      ($1 == 0 ? "warm" : "r" $1), name, $3, $4 / 1000, $5 / 1000, $10, $6, $7, $8, $9 }'
  sleep "$PAUSE"
}

COMMAND="DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS WARMUP=$WARMUP FILL=$FILL PROXY_CPUS=$PROXY_CPUS CLIENT_CPUS=$CLIENT_CPUS PROXY_THREADS=$PROXY_THREADS WORK_STEALING=$WORK_STEALING benches/cache/run.sh"
say "== response cache benchmark"
say "command:  $COMMAND"
say "pinning:  caches under test on CPU ${PROXY_CPUS:-any} ($PROXY_THREADS worker(s) each), wrk, origin and redis on CPU ${CLIENT_CPUS:-any}"
say "wrk:      wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency -s benches/cache/report.lua <url>   (same for every target)"
for t in A B C; do say "  ${NAME[$t]}: ${URL[$t]}"; done
say "machine:  $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
say "versions: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $("$NGINX" -v 2>&1 | cut -d' ' -f3), $(redis-server --version | cut -d' ' -f1-3)"
say "measured: $(git -C "$ROOT" rev-parse --short=10 HEAD 2>/dev/null || echo unknown) work tree ($(git -C "$ROOT" status --porcelain -- src 2>/dev/null | wc -l) changed files under src/)"
say "redis:    $REDIS_KEYS bench:* keys after warming"
say "temp dir: $TMP"
say "== warm-up ($WARMUP each, not kept)"
for t in A B C; do measure 0 "$t" "$WARMUP"; done
say "== $ROUNDS rounds of $DURATION per target, interleaved"
for round in $(seq "$ROUNDS"); do
  for t in A B C; do measure "$round" "$t"; done
done
STORE_ERRORS_B=$(curl -fsS "http://127.0.0.1:$AD_B/metrics" | awk '/^gateway_cache_store_errors_total/ { s += $NF } END { print s + 0 }')
for t in A B; do stop "${GWPID[$t]}" INT; done
stop "$PROXY_PID" TERM
stop "$REDIS_PID" TERM

# ---------------------------------------------------------------- RSS at FILL entries
say ""
say "== RSS: gateway (memory store, max_entries 200000, max_bytes 256MiB) filled with $FILL entries"
RUST_LOG=warn "$GATEWAY_BIN" --config "$TMP/gateway-R.yaml" > "$TMP/gateway-R.log" 2>&1 & RPID=$!; started $! INT
wait_port "$GW_R" "$RPID" "gateway R"; wait_port "$AD_R" "$RPID" "gateway R admin"
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; } # KiB
metric() { curl -fsS --max-time 5 "http://127.0.0.1:$AD_R/metrics" | awk -v m="$1" '$1 == m { print $NF }'; }
curl -fsS -o /dev/null "http://127.0.0.1:$GW_R/path?id=0" # one request: routes, pools, metrics initialised
sleep 1
RSS0=$(rss "$RPID")
wait_no_other_wrk
t0=$(date +%s.%N)
# wrk's -d bounds the fill (its threads stop after FILL responses, but wrk itself waits out -d):
# poll the admin /metrics instead and stop our wrk once the entries are in.
COUNT=$FILL wrk -t1 -c16 -d120s -s "$HERE/fill.lua" "http://127.0.0.1:$GW_R" > "$TMP/fill.txt" 2>&1 &
FILL_PID=$!
for i in $(seq 1200); do
  kill -0 "$FILL_PID" 2>/dev/null || break
  [ "$(metric gateway_cache_entries)" -ge "$FILL" ] 2>/dev/null && break
  sleep 0.1
done
t1=$(date +%s.%N)
stop "$FILL_PID" INT # wrk prints its summary on SIGINT
FILL_LINE=$(grep '^WRK_FILL' "$TMP/fill.txt" || echo "wrk stopped")
sleep 3
ENTRIES=$(metric gateway_cache_entries)
BYTES=$(metric gateway_cache_bytes || true)
RSS1=$(rss "$RPID")
say "fill: $FILL_LINE in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s; gateway_cache_entries $ENTRIES, gateway_cache_bytes ${BYTES:-?}"
say "VmRSS before $RSS0 KiB, after $RSS1 KiB"

for t in A B C; do declare "RPS_$t=$(median 3 "$t")" "P50_$t=$(median 4 "$t")" "P99_$t=$(median 5 "$t")" "CPU_$t=$(median 10 "$t")"; done
read -r RATIO_AC RATIO_BC < <(awk -v a="$RPS_A" -v b="$RPS_B" -v c="$RPS_C" 'BEGIN { printf "%.2f %.2f\n", a / c, b / c }')
# By CPU per answer: how many of the gateway's hits fit in the CPU time of one nginx hit.
read -r CPU_RATIO_AC CPU_RATIO_BC < <(awk -v a="$CPU_A" -v b="$CPU_B" -v c="$CPU_C" 'BEGIN { printf "%.2f %.2f\n", (a > 0 ? c / a : 0), (b > 0 ? c / b : 0) }')
RSS_MIB=$(awk -v k="$RSS1" 'BEGIN { printf "%.1f", k / 1024 }')
{
  say "Command: \`$COMMAND\`"
  say ""
  say "Median of $ROUNDS interleaved rounds (A B C per round), wrk -t$THREADS -c$CONNECTIONS -d$DURATION, GET $REQUEST_PATH, every answer a cache hit (${#BODY}-byte JSON body)."
  say ""
  say "| target | req/s (median) | req/s range | p50 | p99 | CPU per answer | origin requests during the runs |"
  say "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for t in A B C; do
    r=RPS_$t; p=P50_$t; q=P99_$t; c=CPU_$t
    say "| ${NAME[$t]} | $(printf '%.0f' "${!r}") | $(range 3 "$t") | $(ms "${!p}") | $(ms "${!q}") | $(printf '%.1f' "${!c}") µs | $(sum 9 "$t") |"
  done
  say ""
  say "| memory store, \`max_entries: 200000\`, \`max_bytes: 256MiB\` | VmRSS | \`gateway_cache_entries\` |"
  say "| --- | ---: | ---: |"
  say "| after start and one request | $(awk -v k="$RSS0" 'BEGIN { printf "%.1f MiB", k / 1024 }') | 1 |"
  say "| after GET /path?id=1..$FILL | $RSS_MIB MiB | $ENTRIES |"
  say ""
  say "| target | measured | verdict |"
  say "| --- | ---: | --- |"
  say "| A / C (gateway memory / nginx proxy_cache) ≥ 1.2, by req/s | $RATIO_AC | $(verdict "$RATIO_AC" ">=" 1.2) |"
  say "| the same by CPU per answer (C's µs / A's µs) | $CPU_RATIO_AC | $(verdict "$CPU_RATIO_AC" ">=" 1.2) |"
  say "| RSS at $FILL entries ≤ 64 MiB | $RSS_MIB MiB | $(verdict "$RSS_MIB" "<=" 64) |"
  say ""
  say "- B / C = $RATIO_BC by req/s, $CPU_RATIO_BC by CPU per answer (B's CPU leaves out redis-server's). Non-2xx A/B/C: $(sum 7 A)/$(sum 7 B)/$(sum 7 C); socket errors: $(sum 8 A)/$(sum 8 B)/$(sum 8 C); redis store errors on B: $STORE_ERRORS_B."
} > "$TMP/summary.md"
say ""
say "== summary (markdown)"
cat "$TMP/summary.md"
say ""
say "== per-run figures (round target rps p50_us p99_us requests non2xx sockerr origin_requests cpu_us/answer)"
cat "$RESULTS"
