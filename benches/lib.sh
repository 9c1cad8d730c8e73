#!/usr/bin/env bash
# Shell helpers shared by benches/auth/run.sh and benches/cache/run.sh (sourced, not run).
# The caller defines say, die, TMP, and for `measure` also RESULTS and measure_once.

stop() { # pid signal
  local pid=$1 sig=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port pid name
  local i
  for i in $(seq 100); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited at start; see $TMP/*.log (KEEP_TMP=1 keeps it)"
    sleep 0.1
  done
  die "$3 did not listen on 127.0.0.1:$1 within 10 s"
}
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
median() { # col target
  awk -F'\t' -v c="$1" -v t="$2" '$1 > 0 && $2 == t { print $c }' "$RESULTS" | sort -g \
    | awk '{ v[NR] = $1 } END { if (NR == 0) { print 0; exit } m = int((NR + 1) / 2); print (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2) }'
}
range() { awk -F'\t' -v c="$1" -v t="$2" '$1 > 0 && $2 == t { if (n++ == 0 || $c < lo) lo = $c; if ($c > hi) hi = $c } END { printf "%.0f–%.0f", lo, hi }' "$RESULTS"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
