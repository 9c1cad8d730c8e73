#!/usr/bin/env bash
# Latency at a fixed offered rate (issue #14, goal 6; not a test): what the gateway adds to the
# origin's p50 and p99 when it is not saturated. A constant-rate generator (oha --qps, with its
# latency correction, so requests that wait for a free connection count their wait) offers
# the same rate to every target, by default 50 % of the nginx proxy's capacity measured by wrk
# at the start in the same topology. Loopback only, temp dir, free ports, all stopped on exit.
#
# Usage (from anywhere):
#   benches/latency/run.sh
#   DURATION=20s ROUNDS=3 OUT=/tmp/latency.md benches/latency/run.sh
#   RATE=12000 SKIP_BUILD=1 benches/latency/run.sh      # a given rate, no capacity run
#
# The servers are benches/gateway/run.sh's, started the same way (core_start in
# benches/lib.sh, templates in benches/gateway/): the origin nginx `return 200` with a small
# JSON body, the gateway (`auth: none`, no cache, server.threads PROXY_THREADS), the nginx
# reverse proxy (upstream keepalive), the floor (bare Pingora). Targets, measured interleaved
# A B C E F, A B C E F, ... (ROUNDS times; medians of the rounds' percentiles reported):
#   A  origin directly          the baseline: "added" latency is a target's minus A's
#   B  gateway -> origin        route /path, auth: none, no cache
#   C  nginx   -> origin        for comparison
#   E  floor   -> origin        what Pingora itself adds
#   F  gateway, cached token    a second gateway from the same template, /path `auth: required`,
#                               an auth section whose token endpoint is the origin's /auth (a
#                               fixed HS256 JWT made here, valid for a day); the client sends
#                               Basic, so every request is a token-cache hit after the first
#                               (AUTH=0 leaves it out)
# Every run: OHA_PROCS oha processes at once, each
#   oha -z DURATION -q RATE/OHA_PROCS -c CONNECTIONS/OHA_PROCS --latency-correction
#   --wait-ongoing-requests-after-deadline --no-tui --output-format csv <url> (keep-alive on),
# pinned with the origin (CLIENT_CPUS), the proxies alone on PROXY_CPUS. Several processes
# because oha paces with tokio's 1 ms timer: one process releases RATE/1000 requests at once
# every millisecond, several release smaller bursts at unrelated phases (docs/benchmarks.md).
# The percentiles are computed here, exactly, from all processes' per-request CSV lines.
# A run whose 200 answers fall short of RATE x DURATION by more than MAX_SHORTFALL % did not
# hold the rate: its latency is not reported (it would be a saturated server's queueing). If
# the origin alone does not hold it, the generator or CPU 1 is the limit and nothing is
# reported at all.
#
# Options (environment variables):
#   DURATION=10s        length of each measured oha run (oha's -z)
#   ROUNDS=3            interleaved rounds             WARMUP=2s  unmeasured run per target first
#   RATE=               offered requests/s; empty: FRACTION % of the nginx proxy's capacity,
#   FRACTION=50         ...measured first with wrk -t1 -cCAPACITY_CONNECTIONS -dCAPACITY_DURATION
#   CAPACITY_DURATION=5s  CAPACITY_CONNECTIONS=50   (after a 1 s warm-up, same topology)
#   CONNECTIONS=16      oha's connections in all (-c, shared out among the processes)
#   OHA_PROCS=4         oha processes at once      OHA_THREADS=1  tokio worker threads of each
#   MAX_SHORTFALL=1     % of the offered requests a run may miss and still be reported
#   AUTH=1              0: no target F
#   PAUSE=1             seconds of rest between runs
#   PROXY_CPUS=0 CLIENT_CPUS=1 ORIGIN_CPUS=1   taskset CPU lists as in benches/gateway/run.sh
#                       (the defaults apply on 2+ CPUs only; set one empty for no pinning)
#   PROXY_THREADS=1     worker threads of the gateways and the floor, workers of the nginx proxy
#   WORK_STEALING=true  the gateways' server.work_stealing and the floor's, alike (as in
#                       benches/gateway/run.sh)
#   ORIGIN_WORKERS=1    nginx worker processes of the origin
#   QUIET_WAIT=60 QUIET_MAX=10   before each run, wait up to QUIET_WAIT s for the machine to be
#                       at most QUIET_MAX % busy; 0 = skip
#   NOISE_MAX=15 NOISE_RETRIES=2 a run during which other processes took more than NOISE_MAX %
#                       of the machine is measured again, up to NOISE_RETRIES times
#   OHA=                the oha binary (default: oha on PATH, else /var/tmp/oha/bin/oha)
#   SKIP_BUILD=0 GATEWAY_BIN= GATEWAY_REV= REV_TARGET_DIR= FLOOR_BIN=   as in benches/gateway/run.sh
#   OUT=                also write the markdown summary to this file
#   KEEP_TMP=0          1: keep the temp dir (configs, logs, oha's JSON)
#   CARGO_TARGET_DIR    default /var/tmp/gateway-target
#
# Needs: oha (cargo install oha --locked --root /var/tmp/oha), wrk and nginx (installed from
# Debian's packages when running as root), curl, python3, taskset, cargo.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd) # read by core_binaries

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
RATE=${RATE:-}
FRACTION=${FRACTION:-50}
CAPACITY_DURATION=${CAPACITY_DURATION:-5s}
CAPACITY_CONNECTIONS=${CAPACITY_CONNECTIONS:-50}
CONNECTIONS=${CONNECTIONS:-16}
OHA_THREADS=${OHA_THREADS:-1}
OHA_PROCS=${OHA_PROCS:-4}
MAX_SHORTFALL=${MAX_SHORTFALL:-1}
AUTH=${AUTH:-1}
PAUSE=${PAUSE:-1}
if [ "$(nproc)" -ge 2 ]; then CPU_DEFAULTS=(0 1 1); else CPU_DEFAULTS=("" "" ""); fi
PROXY_CPUS=${PROXY_CPUS-${CPU_DEFAULTS[0]}}
CLIENT_CPUS=${CLIENT_CPUS-${CPU_DEFAULTS[1]}}
ORIGIN_CPUS=${ORIGIN_CPUS-${CPU_DEFAULTS[2]}}
PROXY_THREADS=${PROXY_THREADS:-1}
WORK_STEALING=${WORK_STEALING:-true}
ORIGIN_WORKERS=${ORIGIN_WORKERS:-1}
QUIET_WAIT=${QUIET_WAIT:-60}
QUIET_MAX=${QUIET_MAX:-10}
NOISE_MAX=${NOISE_MAX:-15}
NOISE_RETRIES=${NOISE_RETRIES:-2}
OHA=${OHA:-}
SKIP_BUILD=${SKIP_BUILD:-0}
GATEWAY_BIN=${GATEWAY_BIN:-}
GATEWAY_REV=${GATEWAY_REV:-}
REV_TARGET_DIR=${REV_TARGET_DIR:-/var/tmp/gateway-bench-target}
FLOOR_BIN=${FLOOR_BIN:-}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gateway-target}

# shellcheck source=../lib.sh
. "$HERE/../lib.sh" # core_tools, core_binaries, core_start: the same servers as benches/gateway

seconds() { # a duration as oha and wrk take it (10s, 2m, 500ms, or bare seconds) -> seconds
  awk -v d="$1" 'BEGIN {
    if (d ~ /^[0-9.]+ms$/) { sub(/ms$/, "", d); print d / 1000 }
    else if (d ~ /^[0-9.]+s$/) { sub(/s$/, "", d); print d + 0 }
    else if (d ~ /^[0-9.]+m$/) { sub(/m$/, "", d); print d * 60 }
    else if (d ~ /^[0-9.]+$/) { print d + 0 }
    else { print "bad"; exit 1 } }'
}
seconds "$DURATION" >/dev/null || die "DURATION=$DURATION: give it as 10s, 2m or 500ms"
seconds "$WARMUP" >/dev/null || die "WARMUP=$WARMUP: give it as 2s"
[ -z "$RATE" ] || [[ "$RATE" =~ ^[0-9]+$ ]] || die "RATE=$RATE: a whole number of requests per second"
# shellcheck disable=SC2015 # die when either fails
[[ "$OHA_PROCS" =~ ^[1-9][0-9]*$ ]] && [ "$OHA_PROCS" -le "$CONNECTIONS" ] \
  || die "OHA_PROCS=$OHA_PROCS: a whole number from 1 to CONNECTIONS ($CONNECTIONS)"

# ---------------------------------------------------------------- tools and binaries
core_tools
if [ -z "$OHA" ]; then OHA=$(command -v oha || echo /var/tmp/oha/bin/oha); fi
[ -x "$OHA" ] || die "no oha at $OHA; install it: cargo install oha --locked --root /var/tmp/oha (or set OHA=)"
OHA_VERSION=$("$OHA" --version 2>/dev/null | head -1)
"$OHA" --help | grep -q -- '--latency-correction' || die "$OHA_VERSION has no --latency-correction"
core_binaries

# ---------------------------------------------------------------- temp dir, servers
bench_tmp latency-bench
# Target F's token: an HS256 JWT with the claims the gateway requires (id, login, exp), signed
# with a secret made for this run; the origin answers it at /auth (TOKEN, rendered into its
# config by core_render).
LATENCY_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
# shellcheck disable=SC2034 # read by core_render
TOKEN=$(python3 - "$LATENCY_JWT_SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = b64(json.dumps({"id": 42, "login": "latency", "exp": int(time.time()) + 86400}).encode())
signature = hmac.new(sys.argv[1].encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
print(f"{header}.{claims}.{b64(signature)}")
PY
)
core_start

# URL and NAME of A B C E: core_start; F is this script's (its URL once its gateway runs).
NAME[F]="F gateway, cached token -> origin"
declare -A PIDS=([A]="" [B]=$GATEWAY_PID [C]=$PROXY_PID [E]=$FLOOR_PID [F]="")
declare -A HEADER=()
TARGETS=(A B C E)

if [ "$AUTH" = 1 ]; then
  read -r AUTH_PORT AUTH_ADMIN_PORT < <(free_ports 2)
  if [ "$AUTH_PORT" = "$DEAD_PORT" ] || [ "$AUTH_ADMIN_PORT" = "$DEAD_PORT" ]; then
    die "a free port for target F is the gateway's dead port; run again"
  fi
  # The same template as B, on its own ports; /path made `auth: required` and an auth section
  # added after the routes (a top-level key after the last list item is valid YAML).
  (GATEWAY_PORT=$AUTH_PORT ADMIN_PORT=$AUTH_ADMIN_PORT core_render "$BENCHES/gateway/gateway.yaml.in" "$TMP/gateway-auth.yaml")
  sed -i 's|{ path: /path, upstream: origin, auth: none }|{ path: /path, upstream: origin, auth: required }|' "$TMP/gateway-auth.yaml"
  grep -q '{ path: /path, upstream: origin, auth: required }' "$TMP/gateway-auth.yaml" \
    || die "benches/gateway/gateway.yaml.in has no '{ path: /path, upstream: origin, auth: none }' route to make auth: required"
  cat >> "$TMP/gateway-auth.yaml" <<'YAML'

# Added by benches/latency/run.sh for target F: Basic credentials exchanged once at the
# origin's /auth (a fixed JWT), then answered from the token cache.
auth:
  token_endpoint: { upstream: origin, path: /auth }
  jwt: { secret_env: LATENCY_JWT_SECRET, algorithms: [HS256], leeway: 5s }
  token_cache: { capacity: 1000, refresh_before_expiry: 30s, negative_ttl: 5s }
YAML
  LATENCY_JWT_SECRET=$LATENCY_JWT_SECRET "$GATEWAY_BIN" check --config "$TMP/gateway-auth.yaml" >/dev/null \
    || die "gateway rejects $TMP/gateway-auth.yaml"
  LATENCY_JWT_SECRET=$LATENCY_JWT_SECRET RUST_LOG=warn "${PIN_PROXY[@]}" "$GATEWAY_BIN" --config "$TMP/gateway-auth.yaml" \
    > "$TMP/gateway-auth.log" 2>&1 &
  AUTH_PID=$!; started "$AUTH_PID" INT
  wait_port "$AUTH_PORT" "$AUTH_PID" "cached-token gateway"
  wait_port "$AUTH_ADMIN_PORT" "$AUTH_PID" "cached-token gateway admin"
  URL[F]="http://127.0.0.1:$AUTH_PORT$CORE_PATH"
  PIDS[F]=$AUTH_PID
  HEADER[F]="Authorization: Basic $(printf 'latency:latency-password' | base64 | tr -d '\n')"
  TARGETS+=(F)
  got=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "${URL[F]}") || die "F: curl failed"
  [ "$got" = 401 ] || die "F answered $got without credentials (want 401): is /path really auth: required?"
  got=$(curl -sS --max-time 5 -H "${HEADER[F]}" -w '\n%{http_code}' "${URL[F]}") || die "F: curl failed"
  [ "$got" = "$CORE_BODY"$'\n'"200" ] || die "F: unexpected answer with Basic credentials: $got"
fi
token_cache() { # "hits misses" of the cached-token gateway's token cache so far
  curl -sS --max-time 5 "http://127.0.0.1:$AUTH_ADMIN_PORT/metrics" | awk '
    /^gateway_token_cache_total\{/ && /result="hit"/ { h += $NF }
    /^gateway_token_cache_total\{/ && /result="miss"/ { m += $NF }
    END { printf "%d %d\n", h, m }'
}

# ---------------------------------------------------------------- the rate
CLK_TCK=$(getconf CLK_TCK)
CAPACITY_NOTE=""
if [ -z "$RATE" ]; then
  wait_quiet >/dev/null
  "${PIN_CLIENT[@]}" "$WRK" -t1 "-c$CAPACITY_CONNECTIONS" -d1s "${URL[C]}" > /dev/null 2>&1 || die "wrk warm-up failed"
  run_wrk "$TMP/capacity.txt" "${PIN_CLIENT[@]}" "$WRK" -t1 "-c$CAPACITY_CONNECTIONS" "-d$CAPACITY_DURATION" --latency \
    -s "$BENCHES/gateway/report.lua" "${URL[C]}"
  line=$(grep '^WRK_RESULT' "$TMP/capacity.txt") || die "no WRK_RESULT in $TMP/capacity.txt: $(cat "$TMP/capacity.txt")"
  read -r CAPACITY CAP_NON2XX < <(awk -v line="$line" 'BEGIN {
    n = split(line, kv, /[ =]/); for (i = 2; i < n; i += 2) r[kv[i]] = kv[i + 1]
    printf "%.0f %d\n", r["requests"] / (r["duration_us"] / 1e6), r["non2xx"] }')
  [ "$CAP_NON2XX" = 0 ] || die "the nginx proxy answered $CAP_NON2XX non-2xx during the capacity run"
  RATE=$(awk -v c="$CAPACITY" -v f="$FRACTION" 'BEGIN { printf "%.0f", c * f / 100 }')
  CAPACITY_NOTE="$FRACTION % of the nginx proxy's capacity, $CAPACITY req/s (wrk -t1 -c$CAPACITY_CONNECTIONS -d$CAPACITY_DURATION)"
  if [ "$OVERLAP" = 1 ]; then CAPACITY_NOTE+="; another wrk ran during the capacity run"; fi
else
  CAPACITY_NOTE="given (RATE=$RATE)"
fi
[ "$RATE" -gt 0 ] || die "rate $RATE: nothing to offer"
OHA_RATE=$(awk -v r="$RATE" -v n="$OHA_PROCS" 'BEGIN { printf "%.3f", r / n }') # each oha process's

# ---------------------------------------------------------------- measuring
RESULTS=$TMP/results.tsv
: > "$RESULTS"
RETRIED=0
run=0
# measure ROUND TARGET [DURATION]: one oha run, one line in $RESULTS, measured again while
# other processes took too much of the machine (benches/lib.sh).
measure() { measure_retrying_noise "$@"; }
ours() { # every process of ours that runs during a measurement, oha aside
  tree "$ORIGIN_PID"; tree "$PROXY_PID"; echo "$GATEWAY_PID $FLOOR_PID ${AUTH_PID:-}"
}
proxy_ticks() { # target -> CPU ticks so far of the proxy under test (0 for the origin alone)
  # shellcheck disable=SC2046
  if [ -n "${PIDS[$1]}" ]; then proc_ticks $(tree "${PIDS[$1]}"); else echo 0; fi
}
measure_once() {
  local round=$1 t=$2 dur=${3:-$DURATION} out idle b0 t0 b1 t1 all0 all1 px0 px1 tc0="0 0" tc1="0 0" header=()
  local k conns failed=0 pids=()
  run=$((run + 1))
  out=$TMP/oha.$run.$t
  [ -n "${HEADER[$t]:-}" ] && header=(-H "${HEADER[$t]}")
  idle=$(wait_quiet)
  [ "$t" = F ] && tc0=$(token_cache)
  read -r b0 t0 < <(cpu_busy_total)
  # shellcheck disable=SC2046 # pid lists, split on purpose
  all0=$(proc_ticks $(ours)); px0=$(proxy_ticks "$t")
  # OHA_PROCS processes at RATE/OHA_PROCS each, the connections shared out among them; `time`
  # of the group is their CPU time (children reaped inside it).
  { TIMEFORMAT='%U %S'; time {
      for ((k = 1; k <= OHA_PROCS; k++)); do
        conns=$((CONNECTIONS / OHA_PROCS + (k <= CONNECTIONS % OHA_PROCS ? 1 : 0)))
        "${PIN_CLIENT[@]}" "$OHA" -z "$dur" -q "$OHA_RATE" -c "$conns" --latency-correction \
          --wait-ongoing-requests-after-deadline --no-tui --output-format csv -o "$out.$k.csv" \
          --worker-threads "$OHA_THREADS" "${header[@]}" "${URL[$t]}" > "$out.$k.log" 2>&1 &
        pids+=($!)
      done
      for k in "${pids[@]}"; do wait "$k" || failed=1; done
    }; } 2> "$out.time"
  [ "$failed" = 0 ] || die "oha failed: $(cat "$out".*.log)"
  read -r b1 t1 < <(cpu_busy_total)
  # shellcheck disable=SC2046
  all1=$(proc_ticks $(ours)); px1=$(proxy_ticks "$t")
  [ "$t" = F ] && tc1=$(token_cache)
  # round target offered achieved p50 p90 p99 p99.9 max (µs) ok non200 missing shortfall%
  # proxy_us/req proxy_busy% other% idle_before% oha_us/req token_cache_hits,misses
  python3 - "$out" "$OHA_PROCS" "$round" "$t" "$RATE" "$(seconds "$dur")" "$CLK_TCK" "$((b1 - b0))" "$((t1 - t0))" \
      "$((all1 - all0))" "$((px1 - px0))" "$(cat "$out.time")" "$idle" "$tc0" "$tc1" >> "$RESULTS" <<'PY' || die "could not read oha's output $out.*.csv: $(head -c 2000 "$out".*.log)"
import csv, math, sys
(prefix, procs, rnd, t, rate, dur, hz, busy, total, ours, proxy, oha_cpu, idle, tc0, tc1) = sys.argv[1:]
rate, dur, hz, busy, total, ours, proxy = float(rate), float(dur), int(hz), int(busy), int(total), int(ours), int(proxy)
# Every answered request of every oha process (oha's CSV lists answers, not client errors):
# its latency from its scheduled start (--latency-correction) and its status.
latencies, ok, non200 = [], 0, 0
for k in range(1, int(procs) + 1):
    with open("%s.%d.csv" % (prefix, k)) as f:
        rows = csv.reader(f)
        head = next(rows)
        col_latency, col_status = head.index("request-duration"), head.index("status")
        for row in rows:
            latencies.append(float(row[col_latency]))
            if row[col_status] == "200":
                ok += 1
            else:
                non200 += 1
latencies.sort()
n = len(latencies)
def pct(q):  # nearest rank, in µs
    return latencies[max(0, math.ceil(q / 100 * n) - 1)] * 1e6 if n else 0
offered = rate * dur
missing = max(0, round(offered) - n)
shortfall = max(0.0, (offered - ok) * 100 / offered)
oha_j = sum(float(x) for x in oha_cpu.split()) * hz
per = 1e6 / hz / ok if ok else 0
other = max(0.0, (busy - ours - oha_j) * 100 / total) if total > 0 else 0
h0, m0 = (int(x) for x in tc0.split()); h1, m1 = (int(x) for x in tc1.split())
print("\t".join([rnd, t, "%.0f" % rate, "%.1f" % (ok / dur)] + ["%.0f" % pct(q) for q in (50, 90, 99, 99.9)]
      + ["%.0f" % (latencies[-1] * 1e6 if n else 0), str(ok), str(non200), str(missing), "%.2f" % shortfall,
         "%.1f" % (proxy * per), "%.0f" % (proxy * 100 / (hz * dur)), "%.0f" % other, idle, "%.1f" % (oha_j * per),
         "%d,%d" % (h1 - h0, m1 - m0)]))
PY
  # One line per answer, ~80 bytes x RATE x DURATION per run: the figures are in $RESULTS.
  rm -f "$out".*.csv
  tail -n 1 "$RESULTS" | awk -F'\t' -v name="${NAME[$t]}" '{
    printf "  %-5s %-34s offered %s/s achieved %8.1f/s  p50 %5.3f  p90 %5.3f  p99 %5.3f  p99.9 %5.3f  max %6.3f ms  non200 %s missing %s | proxy %s us/req, %s%% of its CPU | oha %s us/req | other %s%%, %s%% before%s\n",
      ($1 == 0 ? "warm" : "r" $1), name, $3, $4, $5 / 1000, $6 / 1000, $7 / 1000, $8 / 1000, $9 / 1000, $11, $12,
      ($2 == "A" ? "-" : $14), ($2 == "A" ? "-" : $15), $18, $16, $17, ($2 == "F" ? " | token cache hits,misses " $19 : "") }'
  sleep "$PAUSE"
}

# ---------------------------------------------------------------- header
COMMAND="DURATION=$DURATION ROUNDS=$ROUNDS WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS OHA_PROCS=$OHA_PROCS OHA_THREADS=$OHA_THREADS"
if [ "$CAPACITY_NOTE" = "given (RATE=$RATE)" ]; then COMMAND+=" RATE=$RATE"; else
  COMMAND+=" FRACTION=$FRACTION CAPACITY_DURATION=$CAPACITY_DURATION CAPACITY_CONNECTIONS=$CAPACITY_CONNECTIONS"; fi
COMMAND+=" MAX_SHORTFALL=$MAX_SHORTFALL AUTH=$AUTH QUIET_WAIT=$QUIET_WAIT QUIET_MAX=$QUIET_MAX NOISE_MAX=$NOISE_MAX"
COMMAND+=" NOISE_RETRIES=$NOISE_RETRIES PROXY_CPUS=$PROXY_CPUS CLIENT_CPUS=$CLIENT_CPUS ORIGIN_CPUS=$ORIGIN_CPUS"
COMMAND+=" PROXY_THREADS=$PROXY_THREADS WORK_STEALING=$WORK_STEALING ORIGIN_WORKERS=$ORIGIN_WORKERS"
[ -n "$GATEWAY_REV" ] && COMMAND+=" GATEWAY_REV=$GATEWAY_REV"
COMMAND+=" benches/latency/run.sh"
OHA_CMD="$OHA_PROCS x ${PIN_CLIENT[*]:+${PIN_CLIENT[*]} }oha -z $DURATION -q $OHA_RATE -c $((CONNECTIONS / OHA_PROCS))"
[ $((CONNECTIONS % OHA_PROCS)) = 0 ] || OHA_CMD+="|$((CONNECTIONS / OHA_PROCS + 1))"
OHA_CMD+=" --latency-correction --wait-ongoing-requests-after-deadline --no-tui --output-format csv --worker-threads $OHA_THREADS"
say "== latency at a fixed rate"
say "command:  $COMMAND"
say "rate:     $RATE req/s, $CAPACITY_NOTE"
say "oha:      $OHA_CMD <url>   (at once; same for every target; F adds -H 'Authorization: Basic ...')"
for t in "${TARGETS[@]}"; do say "  ${NAME[$t]}: ${URL[$t]}"; done
say "machine:  $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
say "versions: $OHA_VERSION, $("$WRK" -v 2>&1 | head -1 | cut -d' ' -f1-2), $("$NGINX" -v 2>&1 | cut -d' ' -f3), gateway binary $GATEWAY_BIN"
say "measured: $SOURCE"
say "pinning:  oha CPU ${CLIENT_CPUS:-unpinned}, origin CPU ${ORIGIN_CPUS:-unpinned}, proxies under test CPU ${PROXY_CPUS:-unpinned}; origin nginx $ORIGIN_WORKERS worker(s), proxy nginx $PROXY_THREADS worker(s), gateways server.threads $PROXY_THREADS, floor $PROXY_THREADS thread(s), work stealing $WORK_STEALING"
say "floor:    $FLOOR_BIN"
say "temp dir: $TMP"
say ""
say "== warm-up ($WARMUP each, not kept)"
for t in "${TARGETS[@]}"; do measure 0 "$t" "$WARMUP"; done
say "== $ROUNDS rounds of $DURATION per target at $RATE req/s, interleaved"
for round in $(seq "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do measure "$round" "$t"; done
done

# ---------------------------------------------------------------- summary
held() { # target -> "yes", or "no: ..." when a kept run missed more than MAX_SHORTFALL %
  awk -F'\t' -v t="$1" -v max="$MAX_SHORTFALL" '$1 > 0 && $2 == t {
      n++; if ($13 > max) { bad++; if (lo == "" || $4 < lo) lo = $4 } }
    END { if (bad) printf "no: %d of %d runs short, lowest %.0f/s\n", bad, n, lo; else print "yes" }' "$RESULTS"
}
maxcol() { awk -F'\t' -v c="$1" -v t="$2" '$1 > 0 && $2 == t { if ($c > m) m = $c } END { print m + 0 }' "$RESULTS"; }
mincol() { awk -F'\t' -v c="$1" -v t="$2" '$1 > 0 && $2 == t { if (n++ == 0 || $c < m) m = $c } END { printf "%.0f\n", m }' "$RESULTS"; }
msf() { awk -v us="$1" 'BEGIN { printf "%.3f ms", us / 1000 }'; }
for t in "${TARGETS[@]}"; do
  declare "HELD_$t=$(held "$t")"
  declare "P50_$t=$(median 5 "$t")" "P90_$t=$(median 6 "$t")" "P99_$t=$(median 7 "$t")" "P999_$t=$(median 8 "$t")"
done
NON200=0 MISSING=0
for t in "${TARGETS[@]}"; do NON200=$((NON200 + $(sum 11 "$t"))); MISSING=$((MISSING + $(sum 12 "$t"))); done
BG_MAX=$(awk -F'\t' '$1 > 0 { if ($16 > m) m = $16 } END { print m + 0 }' "$RESULTS")

{
  say "Command: \`$COMMAND\`"
  say ""
  say "Offered rate $RATE req/s ($CAPACITY_NOTE) by $OHA_PROCS oha $(cut -d' ' -f2 <<<"$OHA_VERSION") processes at once, \`-q $OHA_RATE --latency-correction\` each, $CONNECTIONS keep-alive connections in all, GET $CORE_PATH (${#CORE_BODY}-byte JSON body); $ROUNDS interleaved rounds of $DURATION per target, medians of the rounds' percentiles, max of the maxima."
  say ""
  say "| target | achieved req/s (lowest run) | p50 | p90 | p99 | p99.9 | max | proxy CPU per request, busy |"
  say "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  for t in "${TARGETS[@]}"; do
    h=HELD_$t; p50=P50_$t; p90=P90_$t; p99=P99_$t; p999=P999_$t
    cpu="$(median 14 "$t") µs, $(median 15 "$t") %"
    [ "$t" = A ] && cpu="(origin only)"
    if [ "${!h}" = yes ]; then
      say "| ${NAME[$t]/->/→} | $(mincol 4 "$t") | $(msf "${!p50}") | $(msf "${!p90}") | $(msf "${!p99}") | $(msf "${!p999}") | $(msf "$(maxcol 9 "$t")") | $cpu |"
    else
      say "| ${NAME[$t]/->/→} | $(mincol 4 "$t") | rate not held (${!h#no: }): not reported | | | | | $cpu |"
    fi
  done
  say ""
  if [ "$HELD_A" != yes ]; then
    say "**Not reported: the origin alone did not hold $RATE req/s (${HELD_A#no: }), so the generator or its CPU is the limit, not a proxy. Lower RATE or FRACTION.**"
  else
    say "| added over the origin alone (goal: p50 ≤ 0.1 ms, p99 ≤ 0.5 ms) | p50 | p99 | verdict |"
    say "| --- | ---: | ---: | --- |"
    for t in B F C E; do
      [[ " ${TARGETS[*]} " == *" $t "* ]] || continue
      h=HELD_$t; p50=P50_$t; p99=P99_$t
      if [ "${!h}" != yes ]; then
        say "| ${NAME[$t]/->/→} | – | – | not judged: did not hold the rate |"
        continue
      fi
      read -r a50 a99 < <(awk -v b50="${!p50}" -v b99="${!p99}" -v o50="$P50_A" -v o99="$P99_A" \
        'BEGIN { printf "%.3f %.3f\n", (b50 - o50) / 1000, (b99 - o99) / 1000 }')
      v="p50 $(verdict "$a50" "<=" 0.1), p99 $(verdict "$a99" "<=" 0.5)"
      case $t in C | E) v="(for comparison) $v" ;; esac
      say "| ${NAME[$t]/->/→} | $a50 ms | $a99 ms | $v |"
    done
  fi
  say ""
  say "- Non-200 answers over all kept runs: $NON200; offered requests not answered (unsent by the end, or client errors): $MISSING."
  if [ "$AUTH" = 1 ]; then
    say "- F's token cache over its kept runs (hits,misses per run): $(awk -F'\t' '$1 > 0 && $2 == "F" { printf "%s%s", s, $19; s = " " }' "$RESULTS")."
  fi
  say "- Gateway measured: $SOURCE."
  say "- Pinning: oha CPU ${CLIENT_CPUS:-unpinned} with the origin (CPU ${ORIGIN_CPUS:-unpinned}), proxies under test CPU ${PROXY_CPUS:-unpinned}, $PROXY_THREADS thread(s)/worker(s) each. Highest CPU share of other processes during a kept run: ${BG_MAX}% of the machine; runs measured again because others took > ${NOISE_MAX}%: $RETRIED."
} > "$TMP/summary.md"

say ""
say "== summary (markdown)"
cat "$TMP/summary.md"
say ""
say "== per-run figures (round target offered achieved p50_us p90_us p99_us p999_us max_us ok non200 missing shortfall% proxy_us/req proxy_busy% other% idle_before% oha_us/req token_cache_hits,misses)"
cat "$RESULTS"
if [ -n "$OUT" ]; then
  cp "$TMP/summary.md" "$OUT"
  say "summary written to $OUT"
fi
[ "$HELD_A" = yes ] || die "the origin alone did not hold the rate: no latency reported"
