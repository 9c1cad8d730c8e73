#!/usr/bin/env bash
# CPU and memory per container under load (a benchmark, not a test): the figures behind the
# Kubernetes resource requests and limits (docs/deploy.md, "Resources").
#
#   sudo benches/containers/run.sh
#   DURATION=20 CONNECTIONS=32 sudo benches/containers/run.sh
#
# The stack is docker-compose.yml as scripts/check-containers builds and runs it (the same
# engine, stand-in base images and image cache: deploy/standins/engine.sh), so these are the
# containers' own cgroup figures, as `docker stats` reports them (memory without the page
# cache, CPU in % of one core). Phases, each DURATION seconds, sampled about once a second:
#   idle      the stack healthy, no traffic
#   reads     wrk -t2 -cCONNECTIONS: GET /path?id=N over PATHS paths with a cached token
#             (Basic credentials, one user): the gateway's proxy and Redis cache hit path
#   search    GET /path/search with a random offset: every request a cache miss, so each one
#             reaches paths and PostgreSQL (and the answer is written to Redis)
#   logins    LOGINS users registered beforehand, each logging in once with Basic
#             credentials the gateway has not seen (a token exchange each: one Argon2id
#             verification at users), LOGIN_CONCURRENCY at a time
# Each phase reports per container: mean and peak CPU, and peak memory.
#
# Environment: DURATION=20  CONNECTIONS=32  PATHS=50  LOGINS=200  LOGIN_CONCURRENCY=4
#   OUT=  also write the markdown table to this file
#   CHECK_CONTAINERS_ROOT  as for scripts/check-containers (shares its image cache and lock)
# Needs: root (dockerd), wrk, curl, python3. Binds 8888 and 127.0.0.1:9091 (the compose file's
# ports), so it cannot run beside scripts/check-containers or `scripts/run`.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/../.."

DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-32}
PATHS=${PATHS:-50}
LOGINS=${LOGINS:-200}
LOGIN_CONCURRENCY=${LOGIN_CONCURRENCY:-4}
OUT=${OUT:-}

started=$SECONDS
die() { echo "benches/containers: $*" >&2; exit 1; }
say() { printf 'containers [%4ds] %s\n' "$((SECONDS - started))" "$*"; }
command -v wrk >/dev/null 2>&1 || die "wrk is required (apt-get install -y wrk)"
# shellcheck source=deploy/standins/engine.sh
. deploy/standins/engine.sh
GATEWAY=http://127.0.0.1:8888
SAMPLER_PID=""

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null && wait "$SAMPLER_PID" 2>/dev/null
  engine_cleanup
  [ "$status" -eq 0 ] && rm -rf "$WORK"
  [ "$status" -eq 0 ] || echo "benches/containers: logs kept in $WORK (exit $status)" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

engine_init
engine_start
make_standins
say "building the image (cached layers when nothing changed)"
build_image
JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
GATEWAY_ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export JWT_SECRET GATEWAY_ADMIN_TOKEN
stack_up
say "stack healthy"

# ---- data: one reader with PATHS paths, LOGINS users for the login phase ------------------
post() { # path args...: prints the body, fails on a non-200
  local path=$1 status; shift
  status=$(curl -sS -o "$WORK/post.body" -w '%{http_code}' --max-time 30 -X POST "$@" "$GATEWAY$path")
  [ "$status" = 200 ] || die "POST $path: $status $(head -c 500 "$WORK/post.body")"
  cat "$WORK/post.body"
}
register() { # login password
  post /user --data-urlencode first_name=Bench --data-urlencode last_name=Load \
    --data-urlencode email="$1@example.org" --data-urlencode title=bench \
    --data-urlencode login="$1" --data-urlencode password="$2" >/dev/null
}
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
register benchreader "$password"
# Sequential inserts into a fresh database: consecutive ids from the first one.
first_id=""
for i in $(seq "$PATHS"); do
  id=$(post /path -u "benchreader:$password" --data-urlencode "startpoint=$i Bench Street" \
    --data-urlencode "endpoint=$i Load Avenue")
  first_id=${first_id:-$id}
done
say "registered a reader and $PATHS paths; registering $LOGINS users for the login phase"
# Registrations hash passwords too (Argon2id): in parallel, as many as the login phase uses.
seq "$LOGINS" | xargs -P "$LOGIN_CONCURRENCY" -I{} sh -c '
  status=$(curl -sS -o /dev/null -w "%{http_code}" --max-time 60 -X POST \
    --data-urlencode first_name=Bench --data-urlencode last_name=Login \
    --data-urlencode email=benchlogin{}@example.org --data-urlencode title=bench \
    --data-urlencode login=benchlogin{} --data-urlencode password=pw-{}-'"$password"' \
    '"$GATEWAY"'/user)
  [ "$status" = 200 ] || { echo "register benchlogin{}: $status" >&2; exit 255; }'

# ---- sampling ------------------------------------------------------------------------------
SAMPLES=$WORK/samples.tsv
PHASE_FILE=$WORK/phase
echo setup >"$PHASE_FILE"
: >"$SAMPLES"
sample_forever() {
  local phase
  while :; do
    phase=$(cat "$PHASE_FILE")
    "$DOCKER" stats --no-stream --format '{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}' 2>/dev/null \
      | awk -F'\t' -v phase="$phase" '{ print phase "\t" $0 }' >>"$SAMPLES" || true
  done
}
sample_forever & SAMPLER_PID=$!
phase() { echo "$1" >"$PHASE_FILE"; say "phase $1 (${DURATION} s)"; }

AUTH="Basic $(printf 'benchreader:%s' "$password" | base64 -w0)"
export AUTH
LUA=$WORK/reads.lua
cat >"$LUA" <<LUA
local first, n = $first_id, $PATHS
local headers = { ["Authorization"] = os.getenv("AUTH") }
local target = os.getenv("TARGET")
function request()
  local id = first + math.random(0, n - 1)
  if target == "search" then
    return wrk.format("GET", "/path/search?startpoint=" .. (id - first + 1) .. "%20Bench&offset="
      .. math.random(0, 1000000000), headers)
  end
  return wrk.format("GET", "/path?id=" .. id, headers)
end
done = function(summary)
  io.write(string.format("WRK_RESULT requests=%d non2xx=%d errors=%d\n", summary.requests,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

phase idle
sleep "$DURATION"
for target in reads search; do
  phase "$target"
  TARGET=$target wrk -t2 "-c$CONNECTIONS" "-d${DURATION}s" -s "$LUA" "$GATEWAY/" >"$WORK/wrk.$target.txt" 2>&1 \
    || die "wrk failed: $(cat "$WORK/wrk.$target.txt")"
  say "  $(grep -h 'Requests/sec' "$WORK/wrk.$target.txt") $(grep -h '^WRK_RESULT' "$WORK/wrk.$target.txt")"
done

phase logins
login_start=$SECONDS
seq "$LOGINS" | xargs -P "$LOGIN_CONCURRENCY" -I{} sh -c '
  curl -sS -o /dev/null -w "%{http_code}\n" --max-time 60 -u "benchlogin{}:pw-{}-'"$password"'" \
    '"$GATEWAY"'/auth' >"$WORK/logins.txt" || true
say "  $(sort "$WORK/logins.txt" | uniq -c | tr '\n' ' ')in $((SECONDS - login_start)) s"
echo done >"$PHASE_FILE"
kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""

# ---- the table -----------------------------------------------------------------------------
summary() {
  python3 - "$SAMPLES" <<'PY'
import collections, re, sys
units = {"b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1e3, "mb": 1e6, "gb": 1e9}
def mib(text):
    m = re.match(r"([\d.]+)\s*([a-zA-Z]+)", text.strip())
    return float(m.group(1)) * units[m.group(2).lower()] / 1024**2 if m else 0.0
cpu, mem = collections.defaultdict(list), collections.defaultdict(list)
phases, names = [], []
for line in open(sys.argv[1]):
    parts = line.rstrip("\n").split("\t")
    if len(parts) != 4 or parts[0] in ("setup", "done"):
        continue
    phase, name, cpu_text, mem_text = parts
    name = re.sub(r"^gatewaycheck_(.*)_1$", r"\1", name)
    if phase not in phases: phases.append(phase)
    if name not in names: names.append(name)
    cpu[phase, name].append(float(cpu_text.rstrip("%") or 0))
    mem[phase, name].append(mib(mem_text.split("/")[0]))
print("| container | " + " | ".join(f"{p}: CPU mean / peak, memory peak" for p in phases) + " |")
print("| --- |" + " --- |" * len(phases))
for name in names:
    cells = []
    for p in phases:
        c, m = cpu[p, name], mem[p, name]
        cells.append(f"{sum(c) / len(c):.0f} % / {max(c):.0f} %, {max(m):.1f} MiB" if c else "–")
    print(f"| {name} | " + " | ".join(cells) + " |")
print()
print(f"{sum(len(v) for v in cpu.values())} samples; CPU in % of one core (docker stats), memory without page cache.")
PY
  say "Command: DURATION=$DURATION CONNECTIONS=$CONNECTIONS PATHS=$PATHS LOGINS=$LOGINS LOGIN_CONCURRENCY=$LOGIN_CONCURRENCY benches/containers/run.sh"
}
summary
[ -z "$OUT" ] || summary >"$OUT"
stack_down
