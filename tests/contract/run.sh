#!/usr/bin/env bash
# The contract's conformance run: schemathesis against a whole `travel up` stack (four services
# and the gateway, SQLite in a temp dir, free loopback ports), seeded with the first records of
# the original's data through `travel seed`, then every operation of docs/openapi.yaml fuzzed
# through the gateway with every check schemathesis has (server errors, statuses, content
# types, response schemas and headers, negative/positive data, auth, methods, stateful links).
# Exit status 0 only when schemathesis found nothing and every operation was answered with a
# 2xx at least once (from its HAR report): an operation only ever refused was never exercised.
#
#   tests/contract/run.sh                      # 25 examples per operation, fixed seed
#   CONTRACT_MAX_EXAMPLES=100 CONTRACT_SEED=7 tests/contract/run.sh
#
# Environment: CONTRACT_MAX_EXAMPLES (25), CONTRACT_SEED (20261128), CARGO_TARGET_DIR (the
# clone's target/), CONTRACT_VENV ($CARGO_TARGET_DIR/venv/contract, rebuilt when
# requirements.txt changes), TRAVEL_BIN (a prebuilt `travel`; default: build the debug one),
# CONTRACT_KEEP=1 keeps the work directory (logs, database, reports) even on success.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

die() { echo "tests/contract/run.sh: $*" >&2; exit 1; }
say() { echo "contract: $*"; }

MAX_EXAMPLES="${CONTRACT_MAX_EXAMPLES:-25}"
SEED="${CONTRACT_SEED:-20261128}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${CONTRACT_VENV:-$CARGO_TARGET_DIR/venv/contract}"
SEED_RECORDS=4   # users, paths and trips taken from data/seed

command -v python3 >/dev/null 2>&1 || die "python3 is missing"
started=$SECONDS

# 1. schemathesis, pinned, in its own venv.
req=tests/contract/requirements.txt
want=$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$req")
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  say "installing $req into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "cannot create a venv (Debian/Ubuntu: apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" >"$VENV/.requirements.sha256"
fi
PY="$VENV/bin/python"

# 2. The stack's binary.
TRAVEL="${TRAVEL_BIN:-}"
if [ -z "$TRAVEL" ]; then
  cargo build --quiet --locked -p stack --bin travel
  TRAVEL="$CARGO_TARGET_DIR/debug/travel"
fi
[ -x "$TRAVEL" ] || die "no travel binary at $TRAVEL"

WORK=$(mktemp -d /var/tmp/gateway-contract.XXXXXX)
PID=""
status=1
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  if [ "$status" -eq 0 ] && [ -z "${CONTRACT_KEEP:-}" ]; then
    rm -rf "$WORK"
  else
    echo "contract: logs, database and reports kept in $WORK" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export JWT_SECRET
JWT_SECRET=$("$PY" -c 'import secrets; print(secrets.token_hex(32))')

# 3. `travel up` on six free loopback ports (retried if another process takes one first).
free_ports() {
  "$PY" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
# The shipped config with its per-address limits lifted: schemathesis sends hundreds of token
# requests and wrong credentials a second from one address, where a client within the limits
# sees the answers the contract describes (the limits themselves, and their 429, are tested in
# tests/it/rate_limit.rs and tests/it/exchange_limits.rs). Every other key stays as shipped.
python3 - "$ROOT/gateway.yaml" "$WORK/gateway.yaml" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
lifted = {
    r"token_requests: \{[^}]*\}": "token_requests: { key: client, rate: 100000/s, burst: 100000 }",
    r"exchange_limits: \{[^}]*\}": "exchange_limits: { max_in_flight_per_client: off, failures_per_client: off, failures_per_login: off }",
}
for pattern, replacement in lifted.items():
    text, count = re.subn(pattern, replacement, text)
    if count != 1:
        sys.exit(f"contract: gateway.yaml has no single {pattern!r} to lift; update tests/contract/run.sh")
open(sys.argv[2], "w").write(text)
EOF
for attempt in 1 2 3; do
  read -r GW ADMIN USERS PATHS TRIPS PARTIES < <(free_ports)
  RUST_LOG="${RUST_LOG:-warn}" "$TRAVEL" up --config "$WORK/gateway.yaml" --data-dir "$WORK/data" \
    --gateway-listen "127.0.0.1:$GW" --admin-listen "127.0.0.1:$ADMIN" \
    --users-port "$USERS" --paths-port "$PATHS" --trips-port "$TRIPS" --parties-port "$PARTIES" \
    >"$WORK/up.out" 2>"$WORK/up.err" &
  PID=$!
  ready=""
  for _ in $(seq 600); do
    if grep -q "^travel up: ready" "$WORK/up.out" 2>/dev/null; then ready=1; break; fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$ready" ] && break
  if kill -0 "$PID" 2>/dev/null; then
    tail -n 20 "$WORK/up.err" >&2
    die "travel up did not get ready within 60 s"
  fi
  wait "$PID" 2>/dev/null || true
  PID=""
  tail -n 5 "$WORK/up.err" >&2
  [ "$attempt" -lt 3 ] || die "travel up could not start (see $WORK/up.err)"
done
URL="http://127.0.0.1:$GW"
ADMIN_URL="http://127.0.0.1:$ADMIN"
say "stack up at $URL (admin $ADMIN_URL)"

# 4. Seed data: the first records of data/seed, loaded through the gateway by `travel seed`.
mkdir -p "$WORK/seed"
"$PY" - "$ROOT/data/seed" "$WORK/seed" "$SEED_RECORDS" <<'EOF'
import json, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for name in ("users_init.json", "paths_init.json", "trips_init.json"):
    with open(f"{src}/{name}") as f:
        records = json.load(f)[:n]
    with open(f"{dst}/{name}", "w") as f:
        json.dump(records, f)
EOF
"$TRAVEL" seed --data "$WORK/seed" --gateway "$URL" --admin "$ADMIN_URL" --json \
  >"$WORK/seed.json" 2>"$WORK/seed.err" || { cat "$WORK/seed.err" >&2; die "travel seed failed"; }

# The fuzzing account is the first seed user (`purple`, the spec's example); its token serves
# the Bearer-only operation.
read -r CONTRACT_LOGIN CONTRACT_PASSWORD < <("$PY" -c '
import json, sys
u = json.load(open(sys.argv[1]))[0]
print(u["login"], u["password"])' "$WORK/seed/users_init.json")
CONTRACT_TOKEN=$("$PY" - "$URL" "$CONTRACT_LOGIN" "$CONTRACT_PASSWORD" <<'EOF'
import sys, requests
r = requests.get(f"{sys.argv[1]}/auth", auth=(sys.argv[2], sys.argv[3]), timeout=30)
if r.status_code != 200:
    sys.exit(f"GET /auth as the seed user: {r.status_code} {r.text}")
print(r.text)
EOF
) || die "cannot get a token for the seed user"
export CONTRACT_LOGIN CONTRACT_PASSWORD CONTRACT_TOKEN

# A trip of another seed user, which the fuzzing account does not belong to: the example of
# POST /party/join in docs/openapi.yaml, so that a join can succeed at least once.
JOIN_TRIP=$("$PY" - "$URL" "$WORK/seed/users_init.json" "$ROOT/docs/openapi.yaml" <<'EOF'
import json, sys, requests, yaml
url, users, spec = sys.argv[1], json.load(open(sys.argv[2])), yaml.safe_load(open(sys.argv[3]))
other = (users[1]["login"], users[1]["password"])
r = requests.post(f"{url}/trip", auth=other, timeout=30, data={
    "id_path": 1, "name": "joinable", "start_time": "9:00 AM", "fin_time": "5:00 PM"})
if r.status_code != 200:
    sys.exit(f"POST /trip as {other[0]}: {r.status_code} {r.text}")
params = spec["paths"]["/party/join"]["post"]["parameters"]
example = next(p["example"] for p in params if p.get("name") == "id_trip")
if int(r.text) != example:
    sys.exit(f"the joinable trip got id {r.text}, but docs/openapi.yaml's example for "
             f"POST /party/join is {example}: make them agree")
print(example)
EOF
) || die "cannot create the trip that POST /party/join joins"
say "trip $JOIN_TRIP belongs to another seed user: POST /party/join can succeed"

gateway_requests() {
  "$PY" - "$ADMIN_URL/metrics" <<'EOF'
import sys, requests
total = 0
for line in requests.get(sys.argv[1], timeout=10).text.splitlines():
    if line.startswith("gateway_requests_total{"):
        total += float(line.rsplit(" ", 1)[1])
print(int(total))
EOF
}
before=$(gateway_requests)

# 5. The run. ASCII strings only: the services count lengths in bytes, JSON Schema in
# characters; the two agree on ASCII (docs/openapi.yaml says so).
say "schemathesis: every operation, every check, --max-examples $MAX_EXAMPLES, --seed $SEED"
set +e
(
  cd "$WORK"   # schemathesis and hypothesis keep their databases in the working directory
  "$VENV/bin/schemathesis" --config-file "$ROOT/tests/contract/schemathesis.toml" \
    run "$ROOT/docs/openapi.yaml" \
    --url "$URL" \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --generation-codec ascii \
    --generation-database none \
    --workers 1 \
    --request-timeout 30 \
    --no-color \
    --report junit,har --report-dir "$WORK/report" \
    "$@"
) 2>&1 | tee "$WORK/schemathesis.log"
st_status=${PIPESTATUS[0]}
set -e
after=$(gateway_requests)

cases=$(grep -Eo '[0-9]+ generated' "$WORK/schemathesis.log" | tail -n 1 | cut -d' ' -f1 || true)
say "${cases:-?} test cases generated; the gateway answered $((after - before)) requests; $((SECONDS - started)) s in all"
if grep -q "panicked" "$WORK/up.err"; then
  grep -m 5 "panicked" "$WORK/up.err" >&2
  die "the stack panicked during the run"
fi
if [ "$st_status" -ne 0 ]; then
  die "schemathesis found failures (exit status $st_status); the stack's log is $WORK/up.err"
fi
# An operation never answered with a success was never really exercised (only its
# refusals were): that is a failure of the run, not a warning.
"$PY" - "$ROOT/docs/openapi.yaml" "$WORK/report" <<'EOF' || die "some operations were never answered with a 2xx (the HAR is in $WORK/report)"
import glob, json, re, sys, yaml
from urllib.parse import urlsplit
spec = yaml.safe_load(open(sys.argv[1]))
operations = {}
for path, item in spec["paths"].items():
    pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
    for method in item:
        if method in ("get", "put", "post", "delete", "patch", "head", "options"):
            operations[(method.upper(), path)] = (pattern, set())
hars = glob.glob(f"{sys.argv[2]}/har-*.json")
if not hars:
    sys.exit("no HAR report was written")
for har in hars:
    for entry in json.load(open(har))["log"]["entries"]:
        method, path = entry["request"]["method"], urlsplit(entry["request"]["url"]).path
        for (m, p), (pattern, statuses) in operations.items():
            if m == method and pattern.match(path):
                statuses.add(entry["response"]["status"])
never = [(m, p, sorted(s)) for (m, p), (_, s) in operations.items() if not any(200 <= x < 300 for x in s)]
for m, p, s in never:
    print(f"contract: {m} {p} was never answered with a 2xx (statuses seen: {s or 'none'})", file=sys.stderr)
if not never:
    print(f"contract: each of the {len(operations)} operations was answered with a 2xx at least once")
sys.exit(1 if never else 0)
EOF
status=0
say "passed"
