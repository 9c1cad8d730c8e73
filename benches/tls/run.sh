#!/usr/bin/env bash
# TLS benchmark (not a test): the gateway's TLS listener beside nginx serving the same
# certificate, both proxying to the same plain origin. Everything runs on 127.0.0.1 from a
# temp dir, on free ports, and is stopped on exit.
#
# Usage (from anywhere):
#   benches/tls/run.sh
#   DURATION=5s CONNECTIONS=50 ROUNDS=3 benches/tls/run.sh
#
# Targets, measured interleaved (ROUNDS times, median reported), all with
#   wrk -tTHREADS -cCONNECTIONS -dDURATION --latency [-H 'Connection: close'] URL
#   P   gateway, plaintext, keep-alive        reference: what TLS costs the gateway
#   G   gateway TLS listener, keep-alive      requests/s over established TLS connections
#   N   nginx TLS, keep-alive                 same, nginx (proxy_pass, upstream keepalive)
#   GH  gateway TLS, Connection: close        a new connection and full handshake per request:
#   NH  nginx TLS, Connection: close          requests/s = handshakes/s
#   GF  gateway TLS, full handshakes          FULL_CLIENTS parallel `openssl s_time -new`: a new
#   NF  nginx TLS, full handshakes            connection, a full handshake (no resumption) and one
#                                             GET per connection; reported as handshakes/s and as
#                                             the server's CPU time per handshake (utime+stime of
#                                             the gateway process, or of nginx's master and workers,
#                                             over the run / handshakes), which a busy machine
#                                             distorts far less than a rate.
# The certificate is ECDSA P-256 (openssl req), the same files for both servers; TLS 1.3
# is negotiated by wrk's OpenSSL with both. wrk resumes a TLS session when it reconnects
# (nginx's $ssl_session_reused says how often; reported at the end), and both servers
# accept resumption by default (nginx: session tickets; the gateway: rustls's in-memory
# session store), so GH/NH measure mostly resumed TLS 1.3 handshakes: an ECDHE key exchange
# each, without the certificate signature of a full handshake.
# The gateway runs `server.threads: 2`, nginx `worker_processes 2`; the origin is one nginx
# worker answering `return 200`.
#
# Options (environment variables):
#   DURATION=5s  CONNECTIONS=50  THREADS=2  ROUNDS=3  WARMUP=1s  PAUSE=1
#   FULL_CLIENTS=4      parallel s_time clients for GF/NF (each runs DURATION, in whole seconds)
#   GATEWAY_BIN=        use this binary instead of building (cargo build --release -p gateway)
#   OUT=                also write the markdown summary to this file
#   KEEP_TMP=0          1: keep the temp dir (configs, logs, raw wrk output)
#   CARGO_TARGET_DIR    default /var/tmp/gateway-target
#
# Needs: wrk, nginx (apt-get install -y wrk nginx-light), openssl, curl, python3, cargo.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1s}
PAUSE=${PAUSE:-1}
FULL_CLIENTS=${FULL_CLIENTS:-4}
GATEWAY_BIN=${GATEWAY_BIN:-}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/gateway-target}
BODY='{"endpoint":"4 Pawling Point","id":42,"startpoint":"63 Sunfield Way"}'

# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

for tool in wrk curl openssl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required (apt-get install -y wrk nginx-light openssl curl python3)"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx is required (apt-get install -y nginx-light)"

if [ -z "$GATEWAY_BIN" ]; then
  say "building: (cd $ROOT && CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo build --release -p gateway)"
  (cd "$ROOT" && cargo build --release --locked -p gateway)
  GATEWAY_BIN=$CARGO_TARGET_DIR/release/gateway
fi
[ -x "$GATEWAY_BIN" ] || die "no gateway binary at $GATEWAY_BIN"

bench_tmp tls-bench
read -r ORIGIN_PORT GATEWAY_PORT GATEWAY_TLS_PORT ADMIN_PORT PROXY_PORT < <(free_ports 5)

# One certificate and key for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bench.test -addext "subjectAltName=DNS:bench.test,IP:127.0.0.1" \
  -keyout "$TMP/bench.key" -out "$TMP/bench.crt" 2>/dev/null || die "openssl could not make the certificate"

render() { # template output
  sed -e "s|@TMP@|$TMP|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" -e "s|@GATEWAY_PORT@|$GATEWAY_PORT|g" \
    -e "s|@GATEWAY_TLS_PORT@|$GATEWAY_TLS_PORT|g" -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" \
    -e "s|@PROXY_PORT@|$PROXY_PORT|g" -e "s|@ORIGIN_WORKERS@|1|g" -e "s|@BODY@|$BODY|g" "$1" > "$2"
}
render "$HERE/../gateway/origin.nginx.conf.in" "$TMP/origin.conf"
render "$HERE/proxy.nginx.conf.in" "$TMP/proxy.conf"
render "$HERE/gateway.yaml.in" "$TMP/gateway.yaml"
mkdir -p "$TMP/origin-temp" "$TMP/proxy-temp"

for name in origin proxy; do
  "$NGINX" -t -q -p "$TMP/" -e "$TMP/$name.error.log" -c "$TMP/$name.conf" || die "nginx rejects $TMP/$name.conf"
done
"$NGINX" -p "$TMP/" -e "$TMP/origin.error.log" -c "$TMP/origin.conf" & ORIGIN_PID=$!; started $! TERM
"$NGINX" -p "$TMP/" -e "$TMP/proxy.error.log" -c "$TMP/proxy.conf" & PROXY_PID=$!; started $! TERM
"$GATEWAY_BIN" check --config "$TMP/gateway.yaml" >/dev/null || die "gateway rejects $TMP/gateway.yaml"
RUST_LOG=warn "$GATEWAY_BIN" --config "$TMP/gateway.yaml" > "$TMP/gateway.log" 2>&1 & GATEWAY_PID=$!; started $! INT
wait_port "$ORIGIN_PORT" "$ORIGIN_PID" "origin nginx"
wait_port "$PROXY_PORT" "$PROXY_PID" "nginx TLS proxy"
wait_port "$GATEWAY_TLS_PORT" "$GATEWAY_PID" "gateway TLS listener"
wait_port "$GATEWAY_PORT" "$GATEWAY_PID" "gateway"

PATH_=/path/42
declare -A URL=(
  [P]="http://127.0.0.1:$GATEWAY_PORT$PATH_"
  [G]="https://127.0.0.1:$GATEWAY_TLS_PORT$PATH_"
  [N]="https://127.0.0.1:$PROXY_PORT$PATH_"
  [GH]="https://127.0.0.1:$GATEWAY_TLS_PORT$PATH_"
  [NH]="https://127.0.0.1:$PROXY_PORT$PATH_"
)
declare -A NAME=(
  [P]="P gateway plaintext, keep-alive"
  [G]="G gateway TLS, keep-alive"
  [N]="N nginx TLS, keep-alive"
  [GH]="GH gateway TLS, handshake/request"
  [NH]="NH nginx TLS, handshake/request"
  [GF]="GF gateway TLS, full handshakes"
  [NF]="NF nginx TLS, full handshakes"
)
declare -A HOSTPORT=([GF]="127.0.0.1:$GATEWAY_TLS_PORT" [NF]="127.0.0.1:$PROXY_PORT")
TARGETS=(P G N GH NH GF NF)

# Both TLS servers answer with the origin's body, over the generated certificate.
for t in G N; do
  got=$(curl -sS --cacert "$TMP/bench.crt" --max-time 5 -w '\n%{http_code}' "${URL[$t]}") \
    || die "${NAME[$t]}: curl failed"
  [ "$got" = "$BODY"$'\n'"200" ] || die "${NAME[$t]}: unexpected answer: $got"
done
curl -sS --cacert "$TMP/bench.crt" -o /dev/null -D - "${URL[G]}" | grep -qi '^x-request-id:' \
  || die "the TLS answer has no x-request-id: is it really the gateway?"

busy_pct() { # % of the machine busy over 1 s (other engineers' builds share it)
  local a b
  a=$(awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat); sleep 1
  b=$(awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%d", (d > 0 ? (y[1] - x[1]) * 100 / d : 0) }'
}

RESULTS=$TMP/results.tsv
: > "$RESULTS"
cpu_ticks() { # pid...: utime+stime of these processes, in clock ticks
  local pid total=0
  for pid in "$@"; do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
server_pids() { # target: the processes that serve it
  case $1 in
    G*) echo "$GATEWAY_PID" ;;
    N*) echo "$PROXY_PID $(pgrep -P "$PROXY_PID" | tr '\n' ' ')" ;;
  esac
}
# Full handshakes: FULL_CLIENTS `openssl s_time -new` in parallel, each a new TLS connection
# without resumption and one GET per connection, for DURATION; the server's CPU over the same
# span. Columns as run_one's, with p50/p99 left 0 and the server's CPU µs per handshake last.
run_full() { # round target duration
  local round=$1 t=$2 secs=${3%s} before pids clients=() t0 t1 i n=0 line
  before=$(busy_pct)
  read -ra pids <<<"$(server_pids "$t")"
  t0=$(cpu_ticks "${pids[@]}")
  for i in $(seq "$FULL_CLIENTS"); do
    openssl s_time -connect "${HOSTPORT[$t]}" -CAfile "$TMP/bench.crt" -new -time "$secs" \
      -www "$PATH_" > "$TMP/s_time.$round.$t.$i.txt" 2>&1 &
    clients+=($!)
  done
  wait "${clients[@]}" || true
  t1=$(cpu_ticks "${pids[@]}")
  for i in $(seq "$FULL_CLIENTS"); do
    # "1234 connections in 5 real seconds, 69 bytes read per connection"
    line=$(grep -m1 'connections in .* real seconds' "$TMP/s_time.$round.$t.$i.txt") \
      || die "openssl s_time against ${NAME[$t]} failed: $(cat "$TMP/s_time.$round.$t.$i.txt")"
    n=$((n + ${line%% *}))
    case $line in *" 0 bytes read per connection"*) die "${NAME[$t]}: s_time read no body: $line" ;; esac
  done
  [ "$n" -gt 0 ] || die "${NAME[$t]}: no handshake completed"
  [ "$round" = 0 ] && return 0
  awk -v round="$round" -v t="$t" -v n="$n" -v secs="$secs" -v busy="$before" -v ticks=$((t1 - t0)) \
    -v hz="$(getconf CLK_TCK)" 'BEGIN {
      printf "%s\t%s\t%.0f\t0\t0\t0\t0\t%s\t%.0f\n", round, t, n / secs, busy, ticks / hz * 1e6 / n }' >> "$RESULTS"
  tail -n 1 "$RESULTS" | awk -F'\t' -v name="${NAME[$t]}" '{
    printf "  r%s %-36s %8s handshakes/s  server CPU %5s µs/handshake  (machine %s%% busy before)\n",
      $1, name, $3, $9, $8 }'
  sleep "$PAUSE"
}
run_one() { # round target duration
  local round=$1 t=$2 dur=$3 out extra=() before line
  [[ $t == *F ]] && { run_full "$@"; return; }
  out=$TMP/wrk.$round.$t.txt
  [[ $t == *H ]] && extra=(-H "Connection: close")
  before=$(busy_pct)
  wrk "-t$THREADS" "-c$CONNECTIONS" "-d$dur" --latency -s "$HERE/../gateway/report.lua" "${extra[@]}" \
    "${URL[$t]}" > "$out" 2>&1 || die "wrk failed: $(cat "$out")"
  line=$(grep '^WRK_RESULT' "$out") || die "no WRK_RESULT in $out: $(cat "$out")"
  [ "$round" = 0 ] && return 0
  awk -v round="$round" -v t="$t" -v busy="$before" -v line="$line" 'BEGIN {
      n = split(line, kv, /[ =]/); for (i = 2; i < n; i += 2) r[kv[i]] = kv[i + 1]
      errs = r["connect_err"] + r["read_err"] + r["write_err"] + r["timeout_err"]
      printf "%s\t%s\t%.0f\t%d\t%d\t%d\t%d\t%s\n", round, t, r["requests"] / (r["duration_us"] / 1e6),
        r["p50_us"], r["p99_us"], r["non2xx"], errs, busy }' >> "$RESULTS"
  tail -n 1 "$RESULTS" | awk -F'\t' -v name="${NAME[$t]}" '{
    printf "  r%s %-36s %8s req/s  p50 %6.2f ms  p99 %6.2f ms  non2xx %s  sockerr %s  (machine %s%% busy before)\n",
      $1, name, $3, $4 / 1000, $5 / 1000, $6, $7, $8 }'
  sleep "$PAUSE"
}

say "gateway: $GATEWAY_BIN ($(git -C "$ROOT" rev-parse --short=10 HEAD 2>/dev/null || echo unknown))"
say "warm-up ($WARMUP each)"
for t in "${TARGETS[@]}"; do run_one 0 "$t" "$WARMUP"; done
for round in $(seq "$ROUNDS"); do
  say "round $round"
  for t in "${TARGETS[@]}"; do run_one "$round" "$t" "$DURATION"; done
done

# How many handshakes were resumptions (nginx's side; the gateway does not log it).
sleep 1.5 # nginx flushes its access log buffer every second
reused=$(grep -c '^r$' "$TMP/proxy.access.log" || true)
total=$(wc -l < "$TMP/proxy.access.log")

summary() {
  say "| target | req/s (median of $ROUNDS) | p50 | p99 | non-2xx | socket errors |"
  say "| --- | --- | --- | --- | --- | --- |"
  for t in "${TARGETS[@]}"; do
    [[ $t == *F ]] && continue
    awk -v name="${NAME[$t]}" -v rps="$(median 3 "$t")" -v p50="$(median 4 "$t")" -v p99="$(median 5 "$t")" \
      -v bad="$(awk -F'\t' -v t="$t" '$2 == t { s += $6 } END { print s + 0 }' "$RESULTS")" \
      -v err="$(awk -F'\t' -v t="$t" '$2 == t { s += $7 } END { print s + 0 }' "$RESULTS")" \
      'BEGIN { printf "| %s | %.0f | %.2f ms | %.2f ms | %d | %d |\n", name, rps, p50 / 1000, p99 / 1000, bad, err }'
  done
  say ""
  say "| full handshakes ($FULL_CLIENTS × openssl s_time -new) | handshakes/s (median of $ROUNDS) | server CPU per handshake (median) |"
  say "| --- | --- | --- |"
  for t in GF NF; do
    say "| ${NAME[$t]} | $(median 3 "$t") | $(median 9 "$t") µs |"
  done
  say ""
  say "nginx requests on resumed TLS sessions: $reused of $total (over all targets; NH opens a connection per request and may resume, NF never does)."
  say "Command: DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS FULL_CLIENTS=$FULL_CLIENTS benches/tls/run.sh"
}
say ""
summary
[ -n "$OUT" ] && summary > "$OUT"
exit 0
