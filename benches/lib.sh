#!/usr/bin/env bash
# Shell helpers shared by the load benchmarks benches/*/run.sh (sourced, not run): messages, the
# temp dir and the processes stopped on exit, free ports, waiting for a listener, the users and
# paths services, wrk runs that notice another engineer's wrk, and the summary's arithmetic. For
# `measure` the caller defines RESULTS and measure_once.
BENCHES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { printf '%s\n' "$*"; }
die() { printf '%s: %s\n' "$0" "$*" >&2; exit 1; }
need() { local tool; for tool; do command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool"; done; }

# ---------------------------------------------------------------- temp dir and processes
STARTED=()
# started PID SIGNAL: stop this process on exit with SIGNAL (the gateway and Pingora: INT, their
# immediate shutdown; nginx: TERM, its fast shutdown, the master stopping its workers).
started() { STARTED+=("$1 $2"); }
# bench_tmp NAME: a new temp dir in $TMP, readable by nginx workers (which may run as another
# user). On exit every process registered with `started` is stopped, last started first, and
# $TMP is removed unless KEEP_TMP=1.
bench_tmp() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  chmod 755 "$TMP"
  trap on_exit EXIT
  trap 'exit 130' INT TERM
}
on_exit() {
  local rc=$? i
  trap - EXIT INT TERM
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    # shellcheck disable=SC2086 # "pid signal", split on purpose
    stop ${STARTED[i]}
  done
  if [ "${KEEP_TMP:-0}" = 1 ]; then say "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
stop() { # pid signal: waits up to 5 s, then SIGKILL
  local pid=$1 sig=$2 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- ports
free_ports() { # count -> that many distinct free loopback ports, on one line
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port pid name [seconds, default 10]
  local i seconds=${4:-10}
  for i in $(seq $((seconds * 10))); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited at start; see $TMP/*.log (KEEP_TMP=1 keeps it)"
    sleep 0.1
  done
  die "$3 did not listen on 127.0.0.1:$1 within $seconds s"
}

# ---------------------------------------------------------------- travel services
# start_users_and_paths USERS_PORT PATHS_PORT: `travel serve users`, then `travel serve paths`
# ($TRAVEL_BIN, logs users.log and paths.log in $TMP) on one SQLite file in $TMP, both stopped on
# exit. Users first: it creates and migrates the database, which paths then opens. Exports a
# random JWT_SECRET (the services sign and verify with it; a gateway reads it through
# `secret_env`), JWT_TTL=1h and RUST_LOG=warn.
start_users_and_paths() {
  local db="sqlite://$TMP/travel.db" users_pid paths_pid
  JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
  export JWT_SECRET JWT_TTL=1h RUST_LOG=warn
  "$TRAVEL_BIN" serve users --database-url "$db" --users-port "$1" > "$TMP/users.log" 2>&1 &
  users_pid=$!; started "$users_pid" INT; wait_port "$1" "$users_pid" "travel serve users"
  "$TRAVEL_BIN" serve paths --database-url "$db" --paths-port "$2" > "$TMP/paths.log" 2>&1 &
  paths_pid=$!; started "$paths_pid" INT; wait_port "$2" "$paths_pid" "travel serve paths"
}

# ---------------------------------------------------------------- wrk
wait_no_other_wrk() {
  while pgrep -x wrk >/dev/null; do say "        (another wrk is running; waiting 20 s)"; sleep 20; done
}
# run_wrk OUT ARGS...: runs wrk in the background and watches for another wrk process (another
# engineer's benchmark) starting meanwhile; sets OVERLAP=1 if one was seen.
run_wrk() {
  local out=$1 pid other; shift
  OVERLAP=0
  "$@" > "$out" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    other=$(pgrep -x wrk | grep -vx "$pid" || true)
    [ -n "$other" ] && OVERLAP=1
    sleep 0.5
  done
  wait "$pid" || die "wrk failed: $(cat "$out")"
}
measure() { # round target [duration]: measured again (up to 3 times) if another wrk overlapped
  local attempt
  for attempt in 1 2 3; do
    measure_once "$@"
    [ "$OVERLAP" = 0 ] && return 0
    say "        (another wrk ran during that run: measuring it again)"
    sed -i '$d' "$RESULTS"
  done
  die "another wrk kept overlapping; stopping"
}

# measure_retrying_noise ROUND TARGET [DURATION]: for scripts whose measure_once writes the
# share of the machine that other processes took during the run in column 16 of $RESULTS
# (benches/gateway, benches/latency). One run (round 0 = warm-up, not kept); a run during which
# others took more than NOISE_MAX % is measured again, up to NOISE_RETRIES times (the last
# attempt is kept whatever it got), counted in RETRIED.
measure_retrying_noise() {
  local attempt other
  for attempt in $(seq 0 "$NOISE_RETRIES"); do
    measure_once "$@"
    other=$(tail -n 1 "$RESULTS" | cut -f16)
    if [ "$other" -le "$NOISE_MAX" ] || [ "$attempt" -ge "$NOISE_RETRIES" ] || [ "$1" = 0 ]; then
      return 0
    fi
    say "        (other processes took $other% of the machine during that run: measuring it again)"
    sed -i '$d' "$RESULTS"
    RETRIED=$((RETRIED + 1))
  done
}

# ---------------------------------------------------------------- summary (over $RESULTS)
median() { # col target
  awk -F'\t' -v c="$1" -v t="$2" '$1 > 0 && $2 == t { print $c }' "$RESULTS" | sort -g \
    | awk '{ v[NR] = $1 } END { if (NR == 0) { print 0; exit } m = int((NR + 1) / 2); print (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2) }'
}
range() { awk -F'\t' -v c="$1" -v t="$2" '$1 > 0 && $2 == t { if (n++ == 0 || $c < lo) lo = $c; if ($c > hi) hi = $c } END { printf "%.0f–%.0f", lo, hi }' "$RESULTS"; }
sum() { awk -F'\t' -v c="$1" -v t="$2" '$1 > 0 && $2 == t { s += $c } END { print s + 0 }' "$RESULTS"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
verdict() { # value op goal (op: >= or <=) -> met / MISSED
  awk -v v="$1" -v op="$2" -v goal="$3" 'BEGIN { ok = (op == ">=") ? v >= goal : v <= goal; print ok ? "met" : "MISSED" }'
}

# ---------------------------------------------------------------- the gateway core's servers
# benches/gateway/run.sh and benches/latency/run.sh start the same origin, gateway, floor and
# nginx proxy the same way, from the templates in benches/gateway/ (origin.nginx.conf.in,
# proxy.nginx.conf.in, gateway.yaml.in), with these functions. The caller sets its options
# first: ROOT, CARGO_TARGET_DIR, PROXY_CPUS CLIENT_CPUS ORIGIN_CPUS (empty: unpinned),
# PROXY_THREADS, WORK_STEALING, ORIGIN_WORKERS, GATEWAY_BIN GATEWAY_REV REV_TARGET_DIR
# SKIP_BUILD FLOOR_BIN.
# What every target answers: the origin's small JSON path object at CORE_PATH.
CORE_PATH=/path/42
CORE_BODY='{"endpoint":"4 Pawling Point","id":42,"startpoint":"63 Sunfield Way"}'

# core_tools: nginx and wrk (installed from Debian's packages when running as root), curl,
# python3, and taskset when anything is pinned. Sets NGINX, WRK and the command prefixes
# PIN_CLIENT, PIN_PROXY, PIN_ORIGIN (empty arrays when unpinned).
core_tools() {
  local install_hint="apt-get install -y wrk nginx-light" missing=() tool
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing ${missing[*]} from Debian's packages"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null
    else
      die "missing ${missing[*]}; install them with: sudo $install_hint"
    fi
  fi
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  WRK=$(command -v wrk)
  for tool in curl python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required (apt-get install -y $tool)"
  done
  PIN_CLIENT=()
  PIN_PROXY=()
  PIN_ORIGIN=()
  if [ -n "$CLIENT_CPUS$PROXY_CPUS$ORIGIN_CPUS" ]; then
    command -v taskset >/dev/null 2>&1 || die "taskset is required for *_CPUS (apt-get install -y util-linux)"
    if [ -n "$CLIENT_CPUS" ]; then PIN_CLIENT=(taskset -c "$CLIENT_CPUS"); fi
    if [ -n "$PROXY_CPUS" ]; then PIN_PROXY=(taskset -c "$PROXY_CPUS"); fi
    if [ -n "$ORIGIN_CPUS" ]; then PIN_ORIGIN=(taskset -c "$ORIGIN_CPUS"); fi
  fi
}

# core_binaries: the gateway binary (GATEWAY_BIN as given, GATEWAY_REV built from git archive,
# or the work tree built) and the floor's (FLOOR_BIN, or the work tree's); sets GATEWAY_BIN,
# FLOOR_BIN, and SOURCE, what is measured for the record: a commit, or the work tree with a
# digest of its diff.
core_binaries() {
  local head built_with_gateway
  if [ -n "$GATEWAY_BIN" ]; then
    SKIP_BUILD=1
    SOURCE="prebuilt $GATEWAY_BIN"
  elif [ -n "$GATEWAY_REV" ]; then
    local sha src
    sha=$(git -C "$ROOT" rev-parse --verify "$GATEWAY_REV^{commit}") || die "unknown revision $GATEWAY_REV"
    src=/var/tmp/gateway-bench-src/$sha
    if [ ! -f "$src/Cargo.toml" ]; then
      mkdir -p "$src.partial"
      git -C "$ROOT" archive "$sha" | tar -x -C "$src.partial"
      mv "$src.partial" "$src"
    fi
    # git archive stamps files with the commit time, and cargo keys the gateway crate's artifact
    # by its path inside the workspace, not by checkout: an older stamp than an artifact built
    # from another tree or revision would make cargo reuse that artifact. Fresh stamps force a
    # rebuild of the gateway crate itself (about a minute) every time.
    find "$src" -path "$src/target" -prune -o -type f -exec touch {} +
    GATEWAY_BIN=$REV_TARGET_DIR/release/gateway
    BUILD_DIR=$src
    BUILD_TARGET=$REV_TARGET_DIR
    SOURCE="commit ${sha:0:10} ($(git -C "$ROOT" log -1 --format=%s "$sha" | cut -c1-60 | sed 's/ *$//')), built from git archive"
  else
    GATEWAY_BIN=$CARGO_TARGET_DIR/release/gateway
    BUILD_DIR=$ROOT
    BUILD_TARGET=$CARGO_TARGET_DIR
    head=$(git -C "$ROOT" rev-parse --short=10 HEAD 2>/dev/null || echo unknown)
    if git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null \
      && [ -z "$(git -C "$ROOT" ls-files --others --exclude-standard -- src 2>/dev/null)" ]; then
      SOURCE="work tree = commit $head"
    else
      SOURCE="work tree = commit $head + uncommitted changes to src/Cargo.* (diff digest $( \
        { git -C "$ROOT" diff HEAD -- src Cargo.toml Cargo.lock; \
          git -C "$ROOT" ls-files --others --exclude-standard -z -- src | (cd "$ROOT" && xargs -0 -r cat); \
        } | sha256sum | cut -c1-12))"
    fi
  fi
  if [ "$SKIP_BUILD" != 1 ]; then
    # The floor builds with the gateway, so both link the same dependency artifacts (built
    # alone, the floor would unify other features and rebuild Pingora). At GATEWAY_REV the
    # floor comes from the work tree (older commits have none).
    if [ "$BUILD_DIR" = "$ROOT" ] && [ -z "$FLOOR_BIN" ]; then
      say "building: (cd $BUILD_DIR && CARGO_TARGET_DIR=$BUILD_TARGET cargo build --release -p gateway -p floor)"
      (cd "$BUILD_DIR" && CARGO_TARGET_DIR=$BUILD_TARGET cargo build --release -p gateway -p floor)
    else
      say "building: (cd $BUILD_DIR && CARGO_TARGET_DIR=$BUILD_TARGET cargo build --release -p gateway)"
      (cd "$BUILD_DIR" && CARGO_TARGET_DIR=$BUILD_TARGET cargo build --release -p gateway)
    fi
  fi
  if [ -z "$FLOOR_BIN" ]; then
    FLOOR_BIN=$CARGO_TARGET_DIR/release/floor
    built_with_gateway=0
    [ "$SKIP_BUILD" != 1 ] && [ "${BUILD_DIR:-}" = "$ROOT" ] && built_with_gateway=1
    if [ "$built_with_gateway" = 0 ] && { [ "$SKIP_BUILD" != 1 ] || [ ! -x "$FLOOR_BIN" ]; }; then
      say "building: (cd $ROOT && cargo build --release -p gateway -p floor)"
      (cd "$ROOT" && cargo build --release -p gateway -p floor)
    fi
  fi
  [ -x "$GATEWAY_BIN" ] || die "no gateway binary at $GATEWAY_BIN (build it: cargo build --release -p gateway)"
  [ -x "$FLOOR_BIN" ] || die "no floor binary at $FLOOR_BIN (build it: cargo build --release -p gateway -p floor)"
}

# core_render TEMPLATE OUT: fills in a template's @VARS@ (ports from core_start, TMP, the
# thread counts, work stealing, the origin's body, and TOKEN, what the origin answers at /auth).
core_render() {
  sed -e "s|@TMP@|$TMP|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" -e "s|@GATEWAY_PORT@|$GATEWAY_PORT|g" \
    -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" -e "s|@PROXY_PORT@|$PROXY_PORT|g" -e "s|@DEAD_PORT@|$DEAD_PORT|g" \
    -e "s|@ORIGIN_WORKERS@|$ORIGIN_WORKERS|g" -e "s|@PROXY_THREADS@|$PROXY_THREADS|g" \
    -e "s|@WORK_STEALING@|$WORK_STEALING|g" -e "s|@BODY@|$CORE_BODY|g" -e "s|@TOKEN@|${TOKEN:-}|g" "$1" > "$2"
}

# core_start (after bench_tmp and core_binaries): six distinct free loopback ports
# ORIGIN_PORT GATEWAY_PORT ADMIN_PORT PROXY_PORT DEAD_PORT FLOOR_PORT (DEAD_PORT stays
# unbound: the gateway's dead backend), then the origin nginx (pinned to ORIGIN_CPUS), the
# nginx proxy, the gateway (RUST_LOG=warn) and the floor (pinned to PROXY_CPUS), each stopped
# on exit; sets ORIGIN_PID PROXY_PID GATEWAY_PID FLOOR_PID. Checks that each of the four
# answers CORE_PATH with 200 and the origin's exact body, and that the gateway is the gateway
# (x-request-id on its answer) and the floor the floor (none).
core_start() {
  local name port got headers
  read -r ORIGIN_PORT GATEWAY_PORT ADMIN_PORT PROXY_PORT DEAD_PORT FLOOR_PORT < <(free_ports 6)
  core_render "$BENCHES/gateway/origin.nginx.conf.in" "$TMP/origin.conf"
  core_render "$BENCHES/gateway/proxy.nginx.conf.in" "$TMP/proxy.conf"
  core_render "$BENCHES/gateway/gateway.yaml.in" "$TMP/gateway.yaml"
  mkdir -p "$TMP/origin-temp" "$TMP/proxy-temp"

  for name in origin proxy; do
    "$NGINX" -t -q -p "$TMP/" -e "$TMP/$name.error.log" -c "$TMP/$name.conf" \
      || die "nginx rejects $TMP/$name.conf"
  done
  "${PIN_ORIGIN[@]}" "$NGINX" -p "$TMP/" -e "$TMP/origin.error.log" -c "$TMP/origin.conf" &
  ORIGIN_PID=$!; started "$ORIGIN_PID" TERM
  "${PIN_PROXY[@]}" "$NGINX" -p "$TMP/" -e "$TMP/proxy.error.log" -c "$TMP/proxy.conf" &
  PROXY_PID=$!; started "$PROXY_PID" TERM
  "$GATEWAY_BIN" check --config "$TMP/gateway.yaml" >/dev/null || die "gateway rejects $TMP/gateway.yaml"
  RUST_LOG=warn "${PIN_PROXY[@]}" "$GATEWAY_BIN" --config "$TMP/gateway.yaml" > "$TMP/gateway.log" 2>&1 &
  GATEWAY_PID=$!; started "$GATEWAY_PID" INT
  "${PIN_PROXY[@]}" "$FLOOR_BIN" "127.0.0.1:$FLOOR_PORT" "127.0.0.1:$ORIGIN_PORT" "$PROXY_THREADS" "$WORK_STEALING" > "$TMP/floor.log" 2>&1 &
  FLOOR_PID=$!; started "$FLOOR_PID" INT
  wait_port "$ORIGIN_PORT" "$ORIGIN_PID" "origin nginx"
  wait_port "$PROXY_PORT" "$PROXY_PID" "proxy nginx"
  wait_port "$GATEWAY_PORT" "$GATEWAY_PID" "gateway"
  wait_port "$ADMIN_PORT" "$GATEWAY_PID" "gateway admin"
  wait_port "$FLOOR_PORT" "$FLOOR_PID" "floor"
  port_open "$DEAD_PORT" && die "something listens on the 'dead' port $DEAD_PORT; run again"

  # Each must answer 200 with the origin's exact body.
  for name in "origin:$ORIGIN_PORT" "gateway:$GATEWAY_PORT" "nginx proxy:$PROXY_PORT" "floor:$FLOOR_PORT"; do
    port=${name##*:}
    got=$(curl -sS --max-time 5 -w '\n%{http_code}' "http://127.0.0.1:$port$CORE_PATH") || die "${name%:*}: curl failed"
    [ "$got" = "$CORE_BODY"$'\n'"200" ] || die "${name%:*}: unexpected answer: $got"
  done
  headers=$(curl -sS -D - -o /dev/null --max-time 5 "http://127.0.0.1:$GATEWAY_PORT$CORE_PATH") || die "gateway: curl failed"
  grep -qi '^x-request-id:' <<<"$headers" || die "the gateway's answer has no x-request-id: is it really the gateway?"
  headers=$(curl -sS -D - -o /dev/null --max-time 5 "http://127.0.0.1:$FLOOR_PORT$CORE_PATH") || die "floor: curl failed"
  if grep -qi '^x-request-id:' <<<"$headers"; then die "the floor's answer has an x-request-id: is it really the floor?"; fi
  # The four targets every core benchmark measures, by letter; a script adds its own (D, F).
  declare -gA URL=(
    [A]="http://127.0.0.1:$ORIGIN_PORT$CORE_PATH"
    [B]="http://127.0.0.1:$GATEWAY_PORT$CORE_PATH"
    [C]="http://127.0.0.1:$PROXY_PORT$CORE_PATH"
    [E]="http://127.0.0.1:$FLOOR_PORT$CORE_PATH"
  )
  declare -gA NAME=(
    [A]="A origin direct"
    [B]="B gateway -> origin"
    [C]="C nginx -> origin"
    [E]="E floor (bare Pingora) -> origin"
  )
}

# ---------------------------------------------------------------- the machine's load
cpu_busy_total() { # "busy total" jiffies over all CPUs
  awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat
}
proc_ticks() { # utime+stime of the given pids (all threads); 0 for vanished ones
  local pid sum=0 stat rest
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    rest=${stat##*) }
    sum=$((sum + $(awk '{ print $12 + $13 }' <<<"$rest")))
  done
  echo "$sum"
}
tree() { echo "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); } # nginx master and its workers
# wait_quiet: waits up to QUIET_WAIT seconds (default 60; 0: not at all) for the machine to be
# at most QUIET_MAX % busy (default 10) over a 1 s sample; prints the last sample's busy %.
wait_quiet() {
  local waited=0 b0 t0 b1 t1 pct
  while :; do
    read -r b0 t0 < <(cpu_busy_total); sleep 1; read -r b1 t1 < <(cpu_busy_total)
    pct=$(( (b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1) ))
    if [ "${QUIET_WAIT:-60}" = 0 ] || [ "$pct" -le "${QUIET_MAX:-10}" ] || [ "$waited" -ge "${QUIET_WAIT:-60}" ]; then
      echo "$pct"; return
    fi
    waited=$((waited + 1))
  done
}

# ---------------------------------------------------------------- callgrind
# Instructions per request of a process run under
#   valgrind --tool=callgrind --callgrind-out-file=PREFIX
# the same figure whatever else the machine runs. cg_per_request PID PREFIX PORT PATH N zeroes
# the counters, sends N GETs of PATH (benches/compare/drive.py: one keep-alive connection,
# every answer must be 200), dumps, and does the same with 2N; it prints (I(2N) - I(N)) / N, so
# start-up, the connection's accept and the zero/dump pair cancel out. Every thread of the
# process counts (workers, admin, timers); the client and the origin do not.
cg_instructions() { # pid prefix port path n -> instructions from the zero to the dump
  local count
  callgrind_control -z "$1" > /dev/null 2>&1 || die "callgrind_control -z $1 failed"
  python3 "$BENCHES/compare/drive.py" "$3" "$4" "$5" > /dev/null || die "drive.py $4 failed"
  count=$(find "$TMP" -path "$2.*" | wc -l)
  callgrind_control -d "$1" > /dev/null 2>&1 || die "callgrind_control -d $1 failed"
  for _ in $(seq 600); do
    [ "$(find "$TMP" -path "$2.*" | wc -l)" -gt "$count" ] && break
    sleep 0.1
  done
  awk '/^(summary|totals):/ { print $2; exit }' "$(ls -t "$2".* | head -1)"
}
cg_per_request() { # pid prefix port path n
  local i1 i2
  i1=$(cg_instructions "$1" "$2" "$3" "$4" "$5")
  i2=$(cg_instructions "$1" "$2" "$3" "$4" "$(($5 * 2))")
  echo $(((i2 - i1) / $5))
}
