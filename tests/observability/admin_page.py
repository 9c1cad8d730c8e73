#!/usr/bin/env python3
"""The live admin page in a real browser: headless Chromium, driven through chromedriver's
W3C WebDriver HTTP API (plain JSON over HTTP), loads `GET /` of a real gateway's admin port
(tests/observability/harness.py: the debug gateway, origins this script breaks and mends, a
private Redis, background traffic on every route). Then:

1. the page asks for the admin token (the config sets `admin.token_env`, as compose does),
   refuses a wrong one, takes the right one, goes live and lists every backend, closed;
2. the paths backend answers 503: once the gateway reports its breaker open, the page must
   show it open within 2 s;
3. a broken config is written: once the gateway has rejected it, the page must show the
   reload error within 2 s; the screenshot is taken then (one backend open, a rejected
   reload, the other backends closed, routes with traffic) and written to
   $CARGO_TARGET_DIR/artifacts/admin-page.png (the path is printed);
4. config and backend mended: once the gateway reports the breaker closed, the page must
   show it closed within 2 s, and the error gone;
5. the gateway restarts on the same ports: the page must reconnect by itself, without
   asking for the token again, and show the new process (no transitions since its start).

    tests/observability/admin_page.py          # builds the debug gateway (CARGO_TARGET_DIR)
    OBS_GATEWAY_BIN=path/to/gateway tests/observability/admin_page.py
    OBS_KEEP=1 tests/observability/admin_page.py   # keep the work directory (logs, configs)

docs/admin-page.png is a copy of the screenshot. Exit status 0 only when every check passed.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the clone
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, CheckFailed, Load, eventually, free_port, http, log, run_check, start_all  # noqa: E402

say = log("admin page")

SHOWN_WITHIN = 2.0  # seconds from the gateway's report to the page's
WINDOW = (1400, 900)


def chromium_binary():
    # Debian's /usr/bin/chromium is a shell wrapper around this binary.
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise CheckFailed("chromium is missing: sudo apt-get install chromium chromium-driver")


class Browser:
    """chromedriver on a free loopback port, and one headless Chromium session through it."""

    def __init__(self, work, processes):
        driver = shutil.which("chromedriver")
        if not driver:
            raise CheckFailed("chromedriver is missing: sudo apt-get install chromium-driver")
        self.log_path = work / "chromedriver.log"
        for _ in range(3):
            self.port = free_port()
            self.child = processes.start("chromedriver", [
                driver, f"--port={self.port}", "--allowed-ips=127.0.0.1", "--log-level=WARNING",
                f"--log-path={self.log_path}",
            ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                eventually("chromedriver is ready", self.ready, deadline=20)
                break
            except CheckFailed:
                if self.child.poll() is None:
                    raise
        else:
            raise CheckFailed("chromedriver could not start on a free port three times in a row")
        args = ["--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={work / 'chromium-profile'}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "--hide-scrollbars", "--no-first-run", "--no-default-browser-check"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
        session = self.call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium_binary(), "args": args},
        }}})
        self.session = session["sessionId"]
        processes.on_exit(self.quit)

    def ready(self):
        if self.child.poll() is not None:
            raise CheckFailed("chromedriver exited")
        return self.call("GET", "/status", timeout=2)["ready"]

    def call(self, method, path, body=None, timeout=60):
        data = json.dumps(body).encode() if body is not None else None
        status, _, answer = http(method, f"http://127.0.0.1:{self.port}{path}",
                                 headers={"Content-Type": "application/json"}, body=data, timeout=timeout)
        value = json.loads(answer or b"{}").get("value")
        if status != 200:
            error = value.get("error") if isinstance(value, dict) else value
            message = value.get("message", "") if isinstance(value, dict) else ""
            raise CheckFailed(f"WebDriver {method} {path}: {status} {error}: {message[:500]}")
        return value

    def session_call(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def open(self, url):
        self.session_call("POST", "/url", {"url": url})

    def script(self, source, *args):
        return self.session_call("POST", "/execute/sync", {"script": source, "args": list(args)})

    def element(self, css):
        found = self.session_call("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(found.values()))  # {"element-6066-...": id}

    def type_into(self, css, text):
        self.session_call("POST", f"/element/{self.element(css)}/value", {"text": text})

    def click(self, css):
        self.session_call("POST", f"/element/{self.element(css)}/click", {})

    def screenshot(self, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.session_call("GET", "/screenshot")))

    def quit(self):
        if getattr(self, "session", None):
            try:
                self.call("DELETE", f"/session/{self.session}", timeout=10)
            finally:
                self.session = None


# What the page shows, read from its DOM: the connection badge, each breaker row's state
# (data-state, which also sets its colour), the reload error box.
PAGE_STATE = """
const rows = Array.from(document.querySelectorAll('#breakers tr')).map(tr =>
  [tr.dataset.upstream, tr.dataset.backend, tr.dataset.state, tr.querySelector('.state').textContent]);
const error = document.getElementById('config-error');
return {
  locked: !document.getElementById('login').hidden && document.getElementById('app').hidden,
  login_error: document.getElementById('login-error').textContent,
  conn: document.getElementById('conn').textContent,
  rows: rows,
  error: error.hidden ? null : error.textContent,
  transitions: Array.from(document.querySelectorAll('#transitions tr')).map(tr => tr.textContent),
  routes: Array.from(document.querySelectorAll('#routes tr')).map(tr => tr.dataset.route),
  window: document.getElementById('window').textContent,
  updated: document.getElementById('updated').textContent,
};
"""


def page(browser):
    return browser.script(PAGE_STATE)


def row_state(state, upstream, backend):
    for u, b, s, _ in state["rows"]:
        if u == upstream and b == backend:
            return s
    return None


def shown_within(what, browser, check, since):
    """The page must show `check` within SHOWN_WITHIN seconds of `since` (monotonic)."""
    left = SHOWN_WITHIN - (time.monotonic() - since)
    try:
        eventually(what, lambda: check(page(browser)), deadline=max(left, 0), interval=0.02)
    except CheckFailed:
        raise CheckFailed(f"the page did not show {what} within {SHOWN_WITHIN:.0f} s "
                          f"of the gateway; it shows: {page(browser)}")
    return time.monotonic() - since


def artifact_path():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return (ROOT / target / "artifacts" / "admin-page.png").resolve()


def check(work, processes, say):
    """The run the module docstring describes."""
    # Open for 5 s: long enough to hold the breaker open through the screenshot.
    gateway = start_all(work, processes, say, open_for="5s")
    load = Load(gateway)
    browser = Browser(work, processes)
    say(f"chromedriver on :{browser.port}, headless Chromium session {browser.session[:8]}")

    # 1. The admin token asked for (as in compose), a wrong one refused; then live, every
    #    backend listed and closed.
    browser.open(gateway.admin_url("/"))
    eventually("the page asks for the admin token", lambda: (
        (state := page(browser))["locked"] and state["conn"] == "locked" and not state["rows"]))
    browser.type_into("#token", "not-the-token")
    browser.click("#login button")
    eventually("the page refuses a wrong token", lambda: page(browser)["login_error"] == "Wrong token.")
    browser.type_into("#token", gateway.admin_token)
    browser.click("#login button")
    say("the page asked for the admin token and refused a wrong one")
    backends = [(u["name"], b["backend"]) for u in gateway.admin_json("/admin/breakers")["upstreams"]
                for b in u["backends"]]
    eventually("the page goes live with every backend closed", lambda: (
        (state := page(browser))["conn"] == "live"
        and sorted((u, b) for u, b, s, _ in state["rows"] if s == "closed") == sorted(backends)),
        deadline=15)
    say(f"page live: {len(backends)} backends closed")
    # Rates over (nearly) the page's full 10 s window before anything breaks, as on a
    # gateway that has been up a while.
    eventually("the page's route rates cover 9 s or more", lambda: (
        "/path" in (state := page(browser))["routes"]
        and int(re.sub(r"\D", "", state["window"]) or 0) >= 9), deadline=20)

    # 2. A breaker opens.
    paths = gateway.origins["paths"]
    backend = paths.address
    paths.failing = True
    eventually("the breaker of paths opens", lambda: gateway.breaker_state("paths", backend) == "open",
               deadline=10, interval=0.01)
    opened = time.monotonic()
    took = shown_within(f"paths {backend} open", browser,
                        lambda s: row_state(s, "paths", backend) == "open", opened)
    say(f"paths backend answers 503: the page shows it open {took:.2f} s after the gateway reports it")

    # 3. A rejected reload.
    broken = gateway.config("broken").replace("upstream: trips", "upstream: nowhere")
    result = gateway.reload(broken, "a broken config")
    rejected = time.monotonic()
    if result["applied"]:
        raise CheckFailed("a config naming an unknown upstream was applied")
    took = shown_within("the reload error", browser,
                        lambda s: s["error"] and 'unknown upstream "nowhere"' in s["error"], rejected)
    say(f"broken config: the page shows the rejected reload {took:.2f} s after the gateway")
    if row_state(page(browser), "paths", backend) != "open":
        raise CheckFailed("the breaker left open before the screenshot (open_for too short for this machine?)")
    # The screenshot after the next periodic snapshot, so that the breaker's figures are
    # the ones after its opening (a pushed transition redraws only its state).
    updated = page(browser)["updated"]
    eventually("the next snapshot", lambda: page(browser)["updated"] != updated, deadline=3)
    height = browser.script("return document.documentElement.scrollHeight;")
    browser.session_call("POST", "/window/rect", {"width": WINDOW[0], "height": max(WINDOW[1], height + 20)})
    screenshot = artifact_path()
    browser.screenshot(screenshot)
    say(f"screenshot: {screenshot}")

    # 4. Mended: closed, and no error.
    if not gateway.reload(gateway.config("mended"), "the mended config")["applied"]:
        raise CheckFailed("the mended config was rejected")
    paths.failing = False
    eventually("the breaker of paths closes again",
               lambda: gateway.breaker_state("paths", backend) == "closed", deadline=20, interval=0.01)
    closed = time.monotonic()
    took = shown_within(f"paths {backend} closed and no reload error", browser,
                        lambda s: row_state(s, "paths", backend) == "closed" and s["error"] is None, closed)
    say(f"mended: the page shows the breaker closed {took:.2f} s after the gateway reports it")

    # 5. The gateway restarts: the page reconnects and shows the new process.
    gateway.restart()
    eventually("the page reconnects to the restarted gateway", lambda: (
        (state := page(browser))["conn"] == "live"
        and any("none since start" in t for t in state["transitions"])
        and row_state(state, "paths", backend) == "closed"), deadline=15)
    say("gateway restarted: the page reconnected by itself")

    load.stop()
    say(f"load: {load.rounds} rounds, statuses {dict(sorted(load.statuses.items(), key=str))}")


def main():
    run_check("admin page", ("gateway.log", "chromedriver.log"), check)


if __name__ == "__main__":
    main()
