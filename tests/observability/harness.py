"""What the observability checks (prometheus.py, admin_page.py) run against: the debug
`gateway` binary of this workspace with a config written for the check, in front of origins
the check controls (one small HTTP server per upstream, in this process, each switchable to
answering 503), a private `redis-server` as its cache store, all on loopback ephemeral
ports. Every process started here is stopped on any exit (`Processes`), Ctrl-C and SIGTERM
included. Waits are polls with a deadline, never fixed sleeps.

Standard library only, like tests/tour/run.py.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The users the fake users service knows: login -> (password, id); and any `newcomerN`
# with the password `pw-N` (id 1000 + N), so that the load can bring new logins (token
# exchanges) all along.
USERS = {"ada": ("correct-horse", 1), "grace": ("hopper-1906", 2), "alan": ("enigma-1912", 3)}


def user(login):
    """(password, id) of a login the users service knows, or None."""
    if login in USERS:
        return USERS[login]
    number = login.removeprefix("newcomer")
    if login.startswith("newcomer") and number.isdigit():
        return f"pw-{number}", 1000 + int(number)
    return None


class CheckFailed(Exception):
    """What the check found wrong; main() prints it and exits 1."""


def log(prefix):
    def say(message):
        print(f"{prefix}: {message}", flush=True)

    return say


def eventually(what, check, deadline=10.0, interval=0.05):
    """Polls `check` until it returns something truthy (returned) or the deadline passes."""
    end = time.monotonic() + deadline
    last = None
    while True:
        try:
            value = check()
        except (OSError, urllib.error.URLError, ValueError) as error:
            value, last = None, error
        if value:
            return value
        if time.monotonic() >= end:
            detail = f" (last error: {last})" if last else ""
            raise CheckFailed(f"{what}: not within {deadline:.0f} s{detail}")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def http(method, url, headers=None, body=None, timeout=10):
    """(status, headers, body bytes); an HTTP error status is an answer, not an exception, and
    a connection that broke (a stopped gateway) is an OSError."""
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()
    except HTTPException as error:
        raise ConnectionError(f"{method} {url}: {error!r}") from error


def basic(login):
    password = user(login)[0]
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()}


class Processes:
    """Every child process of the check, each in its own process group (so a child's own
    children, Chromium's renderers, go with it), stopped at exit in reverse order."""

    def __init__(self):
        self.children = []
        self.closers = []
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        raise SystemExit(128 + signum)

    def start(self, name, args, **kwargs):
        child = subprocess.Popen(args, start_new_session=True, **kwargs)
        self.children.append((name, child))
        return child

    def on_exit(self, close):
        """A non-process resource (a server thread, a WebDriver session) to close at exit."""
        self.closers.append(close)

    @staticmethod
    def stop(child, first=signal.SIGTERM, deadline=10.0):
        if child.poll() is not None:
            return
        try:
            os.killpg(child.pid, first)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            pass
        # Whatever of its group is left (it exited, its children may not have).
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()

    def close(self):
        for close in reversed(self.closers):
            try:
                close()
            except Exception as error:  # cleanup goes on whatever one closer does
                print(f"cleanup: {error}", file=sys.stderr)
        self.closers.clear()
        for _, child in reversed(self.children):
            self.stop(child)
        self.children.clear()


def build_gateway(say):
    """The debug gateway of this workspace (OBS_GATEWAY_BIN: a prebuilt one)."""
    prebuilt = os.environ.get("OBS_GATEWAY_BIN")
    if prebuilt:
        binary = Path(prebuilt).resolve()
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        say("building the gateway (debug)")
        subprocess.run(["cargo", "build", "--quiet", "--locked", "-p", "gateway", "--bin", "gateway"],
                       cwd=ROOT, check=True)
        binary = (ROOT / target / "debug" / "gateway").resolve()
    if not binary.is_file():
        raise CheckFailed(f"no gateway binary at {binary}")
    return binary


def jwt(secret, login):
    """An HS256 token as the users service signs them (id, login, exp)."""
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"id": user(login)[1], "login": login, "exp": int(time.time()) + 3600}).encode())
    signature = b64(hmac.new(secret.encode(), header + b"." + claims, hashlib.sha256).digest())
    return (header + b"." + claims + b"." + signature).decode()


class QuietServer(ThreadingHTTPServer):
    """Says nothing when the gateway drops a connection (it is stopped on purpose)."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Origin:
    """One upstream's backend: answers every request with a small JSON document (and, for the
    users service, `GET /auth` with a token for known Basic credentials, 401 otherwise), or
    with 503 while `failing` is set: a backend the check breaks and mends at will."""

    def __init__(self, name, secret, processes):
        self.name = name
        self.failing = False
        self.calls = 0
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def answer(self):
                origin.calls += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if origin.failing:
                    return self.send(503, b'{"error":"failing on purpose"}', "application/json")
                if self.path.split("?")[0] == "/auth":
                    login, password = self.credentials()
                    known = user(login or "")
                    if known and known[0] == password:
                        return self.send(200, jwt(secret, login).encode(), "text/plain")
                    return self.send(401, b'{"error":"wrong credentials"}', "application/json")
                body = json.dumps({"origin": origin.name, "path": self.path}).encode()
                return self.send(200, body, "application/json")

            def credentials(self):
                value = self.headers.get("Authorization", "")
                if not value.startswith("Basic "):
                    return None, None
                login, _, password = base64.b64decode(value[6:]).decode().partition(":")
                return login, password

            def send(self, status, body, content_type):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = answer

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        processes.on_exit(self.close)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Redis:
    """A private redis-server on an ephemeral port: the gateway's cache store."""

    def __init__(self, work, processes):
        self.work, self.processes = work, processes
        for _ in range(3):
            self.port = free_port()
            try:
                self.start()
                return
            except CheckFailed:
                if self.child.poll() is None:
                    raise
        raise CheckFailed("redis-server could not start on a free port three times in a row")

    def start(self):
        self.child = self.processes.start("redis-server", [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.work),
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        eventually("redis-server answers PING", self.ping, deadline=10)

    def stop(self):
        """An outage of the store: the process killed (its port stays ours to restart on)."""
        self.processes.stop(self.child, signal.SIGKILL)

    def ping(self):
        if self.child.poll() is not None:
            raise CheckFailed("redis-server exited")
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


class Gateway:
    """The gateway binary with a config written for the check, and what the check does to it:
    requests, config edits (written whole, then renamed, so the watcher never sees half a
    file), the admin JSON."""

    UPSTREAMS = ("users", "paths", "trips", "parties")

    def __init__(self, binary, work, origins, redis, secret, processes, open_for="1s"):
        self.binary, self.work, self.origins, self.redis = binary, work, origins, redis
        self.secret, self.processes = secret, processes
        self.open_for = open_for
        self.admin_token = secrets.token_hex(24)
        self.config_path = work / "gateway.yaml"
        self.log_path = work / "gateway.log"

    def config(self, comment="as started"):
        o = self.origins
        return f"""# Written by tests/observability ({comment}).
server:
  listen: 127.0.0.1:{self.port}
  threads: 2
  grace_period: 1s
  watch_interval: 100ms

# As deploy/compose/gateway.yaml: a token for everything but the probe and the scrape.
admin:
  listen: 127.0.0.1:{self.admin_port}
  token_env: GATEWAY_ADMIN_TOKEN
  open_paths: [/healthz, /metrics]

upstreams:
  users:   {{ backends: [{o['users'].address}], breaker: default }}
  paths:   {{ backends: [{o['paths'].address}] }}
  trips:   {{ backends: [{o['trips'].address}, {o['trips-2'].address}] }}
  parties: {{ backends: [{o['parties'].address}] }}

# Trips quickly and probes soon: the check waits for the breaker, not the other way round.
breakers:
  default:
    consecutive_failures: 3
    failure_rate: 50%
    minimum_calls: 10
    window: 30s
    open_for: {self.open_for}
    max_open_for: {self.open_for}
    half_open_probes: 1
    failure_statuses: [500, 502, 503, 504]

cache:
  store: redis
  redis_url: {self.redis.url}
  redis_timeout: 200ms
  key_prefix: "observability-check:"

auth:
  token_endpoint: {{ upstream: users, path: /auth }}
  jwt: {{ secret_env: JWT_SECRET, algorithms: [HS256], leeway: 5s }}

routes:
  - {{ path: /auth, upstream: users, auth: none }}
  - {{ path: /user, upstream: users, cache: {{ ttl: 10s, scope: user }} }}
  - {{ path: /path, upstream: paths, cache: {{ ttl: 1s, scope: shared, stale_if_error: 10m }} }}
  - {{ path: /path/search, upstream: paths }}
  - {{ path: /trip, upstream: trips, cache: {{ ttl: 30s, scope: user }} }}
  - {{ path: /party, upstream: parties }}
"""

    def start(self, same_ports=False):
        """Starts the gateway on free ports (or on the ports of the last start: a restart)."""
        env = dict(os.environ, JWT_SECRET=self.secret, GATEWAY_ADMIN_TOKEN=self.admin_token,
                   RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        for _ in range(1 if same_ports else 3):
            if not same_ports:
                self.port, self.admin_port = free_port(), free_port()
            self.write(self.config())
            log_file = open(self.log_path, "a")
            self.child = self.processes.start(
                "gateway", [str(self.binary), "--config", str(self.config_path)],
                cwd=self.work, env=env, stdout=log_file, stderr=log_file)
            log_file.close()
            try:
                eventually("the gateway's /healthz answers 200", self.healthy, deadline=30)
                return
            except CheckFailed:
                if self.child.poll() is None:
                    raise
                # A port taken between free_port() and the gateway's bind: try others.
                if "in use" not in self.log_path.read_text(errors="replace"):
                    raise CheckFailed(f"the gateway exited at start-up:\n{self.log_tail()}")
        raise CheckFailed("the gateway found its ports taken three times in a row")

    def restart(self):
        """Stops the gateway (SIGINT: at once) and starts it again on the same ports."""
        self.processes.stop(self.child, signal.SIGINT)
        self.start(same_ports=True)

    def healthy(self):
        if self.child.poll() is not None:
            raise CheckFailed("the gateway exited")
        return http("GET", self.admin_url("/healthz"), timeout=2)[0] == 200

    def log_tail(self, lines=20):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def admin_url(self, path):
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def admin_json(self, path):
        status, _, body = http("GET", self.admin_url(path),
                               headers={"Authorization": f"Bearer {self.admin_token}"})
        if status != 200:
            raise CheckFailed(f"GET {path} on the admin port answered {status}")
        return json.loads(body)

    def write(self, text):
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config_path)
        return sha256(text.encode())

    def reload(self, text, what):
        """Writes a config and waits until the watcher applied it (or rejected it: then
        returns the reload's errors)."""
        digest = self.write(text)

        def seen():
            status = self.admin_json("/admin/config")
            last = status.get("last_reload") or {}
            if status.get("hash") == digest:
                return {"applied": True, "errors": []}
            if last.get("hash") == digest:
                return last
            return None

        return eventually(f"the gateway picks up {what}", seen, deadline=10)

    def breaker_state(self, upstream, backend):
        for u in self.admin_json("/admin/breakers")["upstreams"]:
            if u["name"] == upstream:
                for b in u["backends"]:
                    if b["backend"] == backend:
                        return b["state"]
        raise CheckFailed(f"/admin/breakers has no backend {backend} of {upstream}")


def start_all(work, processes, say, **gateway_options):
    """Origins, Redis and the gateway, started; returns the gateway."""
    binary = build_gateway(say)
    secret = secrets.token_hex(32)
    origins = {name: Origin(name, secret, processes)
               for name in ("users", "paths", "trips", "trips-2", "parties")}
    redis = Redis(work, processes)
    gateway = Gateway(binary, work, origins, redis, secret, processes, **gateway_options)
    gateway.start()
    say(f"gateway up: proxy :{gateway.port}, admin :{gateway.admin_port}, redis :{redis.port}")
    return gateway


class Load:
    """Background traffic through the gateway, a few rounds a second until stopped: every
    route, three users (token exchanges, then token cache hits), cached and uncached reads,
    a wrong password now and then (a refused exchange, then a remembered refusal), and a
    path no route takes. What each panel and the page need to have something to show."""

    def __init__(self, gateway, pace=0.05):
        self.gateway, self.pace = gateway, pace
        self.statuses = {}
        self.stopped = threading.Event()
        self.rounds = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        gateway.processes.on_exit(self.stop)

    def run(self):
        g = self.gateway
        while not self.stopped.is_set():
            n = self.rounds
            requests = [
                ("GET", "/path?id=1", "ada"),
                ("GET", f"/path/search?startpoint={n % 50}", "grace"),  # uncached: sees every 503
                ("GET", f"/trip?id={n // 2}", "alan"),  # a new trip every other round: half hits
                ("GET", "/party?id=1", "ada"),
                ("GET", "/user?id=2", "grace"),
                ("GET", "/auth", "alan"),
                ("GET", "/nowhere", None),
            ]
            if n % 10 == 0:
                requests.append(("GET", "/party?id=2", f"newcomer{n // 10}"))
            for method, path, login in requests:
                try:
                    status, _, _ = http(method, g.url(path), headers=basic(login) if login else {})
                except OSError:
                    status = "error"
                self.statuses[status] = self.statuses.get(status, 0) + 1
            if n % 25 == 0:
                try:
                    http("GET", g.url("/path?id=1"), headers={
                        "Authorization": "Basic " + base64.b64encode(b"mallory:guess").decode()})
                except OSError:
                    pass
            self.rounds += 1
            self.stopped.wait(self.pace)

    def stop(self):
        self.stopped.set()
        self.thread.join(timeout=15)


def run_check(name, logs, body):
    """Runs `body(work, processes, say)` in a fresh work directory and exits: 0 when it
    returned, 1 when it raised CheckFailed (printed, with the last lines of each of `logs`
    in the work directory). Every process it started is stopped either way; the work
    directory is kept on failure or with OBS_KEEP=1."""
    say = log(name)
    processes = Processes()
    work = Path(tempfile.mkdtemp(prefix=f"gateway-{name.replace(' ', '-')}."))
    started = time.monotonic()
    ok = False
    try:
        body(work, processes, say)
        say(f"passed in {time.monotonic() - started:.0f} s")
        ok = True
    except CheckFailed as error:
        print(f"{Path(sys.argv[0]).name}: {error}", file=sys.stderr)
        for log_name in logs:
            path = work / log_name
            if path.exists() and path.stat().st_size:
                print(f"--- last lines of {path}:", file=sys.stderr)
                print("\n".join(path.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
    finally:
        processes.close()
        if ok and not os.environ.get("OBS_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"{name}: work directory kept: {work}", file=sys.stderr)
    sys.exit(0 if ok else 1)
