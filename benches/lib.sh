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
