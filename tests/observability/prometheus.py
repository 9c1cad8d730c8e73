#!/usr/bin/env python3
"""The Grafana dashboard and the alert rules, run against a real Prometheus scraping a real
gateway.

Starts the debug gateway (tests/observability/harness.py: origins this script breaks and
mends, a private Redis) and Debian's `prometheus` on loopback ephemeral ports, Prometheus
scraping the admin port every second and evaluating a copy of deploy/prometheus/alerts.yml
every second, with every `for:` shortened to 2 s (the expressions are the shipped ones).
Under background traffic on every route, it then:

1. edits the config (a reload that applies);
2. makes the paths backend answer 503: its breaker opens, and GatewayBreakerOpen must go
   pending, then firing; mends it: the breaker closes, and the alert must resolve;
3. writes a broken config: GatewayConfigReloadFailed must fire; restores it: it must resolve;
4. kills the private Redis: GatewayCacheStoreDown must fire; restarts it: it must resolve;
5. runs every PromQL expression of deploy/grafana/dashboards/gateway.json and every alert
   expression through Prometheus's /api/v1/query: each must parse and evaluate, every panel
   must return at least one series, and the panels that show what this run did (the
   transition, the rejections, the stale answers, the reloads...) must show it; every
   metric an alert reads must be in the gateway's scrape.

    tests/observability/prometheus.py          # builds the debug gateway (CARGO_TARGET_DIR)
    OBS_GATEWAY_BIN=path/to/gateway tests/observability/prometheus.py
    OBS_KEEP=1 tests/observability/prometheus.py   # keep the work directory (logs, configs)

Exit status 0 only when every check passed.
"""

import json
import math
import re
import shutil
import sys
import time
import urllib.parse
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the clone
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, CheckFailed, Load, eventually, free_port, http, log, run_check, start_all  # noqa: E402

say = log("prometheus")

DASHBOARD = ROOT / "deploy/grafana/dashboards/gateway.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
SHORT_FOR = "2s"

# What the run did, as each panel must show it: (panel title, label values one series must
# have, whether its value must be above 0). Every other panel must merely return a series.
EXPECTED = [
    ("Breaker state per backend", {"upstream": "paths"}, False),
    ("Breaker transitions", {"upstream": "paths", "to": "open"}, True),
    ("Breaker transitions", {"upstream": "paths", "to": "closed"}, True),
    ("Breaker rejections", {"upstream": "paths"}, True),
    ("Request rate by route", {"route": "/path"}, True),
    ("5xx share by route", {"route": "/path/search"}, True),
    ("Upstream attempts by outcome", {"upstream": "paths", "outcome": "failure_status"}, True),
    ("Upstream attempts by outcome", {"upstream": "trips", "outcome": "success"}, True),
    ("Response cache by result", {"route": "/path", "result": "hit"}, True),
    ("Response cache by result", {"route": "/path", "result": "miss"}, True),
    ("Response cache by result", {"route": "/path", "result": "stale"}, True),
    ("Cache store available", {"store": "redis"}, True),
    ("Token cache by result", {"result": "hit"}, True),
    ("Token cache by result", {"result": "miss"}, True),
    ("Token exchanges by outcome", {"outcome": "ok"}, True),
    ("Token exchanges by outcome", {"outcome": "rejected"}, True),
    ("Config reloads", {"result": "success"}, True),
    ("Config reloads", {"result": "failure"}, True),
]


class Prometheus:
    """Debian's prometheus on a free loopback port, with a config and rules of the check's."""

    def __init__(self, work, processes, target, rules):
        self.work = work
        config = work / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {rules}\n"
            "scrape_configs:\n  - job_name: gateway\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        self.log_path = work / "prometheus.log"
        for _ in range(3):
            self.port = free_port()
            log_file = open(self.log_path, "a")
            self.child = processes.start("prometheus", [
                "prometheus", f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
            ], cwd=work, stdout=log_file, stderr=log_file)
            log_file.close()
            try:
                eventually("Prometheus is ready", self.ready, deadline=30)
                return
            except CheckFailed:
                if self.child.poll() is None or "address already in use" not in self.log_path.read_text():
                    raise CheckFailed(f"Prometheus did not start:\n{self.log_path.read_text()[-2000:]}")
        raise CheckFailed("Prometheus found its port taken three times in a row")

    def ready(self):
        if self.child.poll() is not None:
            raise CheckFailed(f"prometheus exited:\n{self.log_path.read_text()[-2000:]}")
        return http("GET", f"http://127.0.0.1:{self.port}/-/ready", timeout=2)[0] == 200

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, _, body = http("GET", url)
        answer = json.loads(body)
        if answer.get("status") != "success":
            raise CheckFailed(f"{path} {params}: {status} {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def query(self, expr):
        """The instant vector (or scalar) `expr` gives now; CheckFailed if it does not parse
        or evaluate."""
        return self.api("query", query=expr)

    def alerts(self, name):
        return [a for a in self.api("alerts")["alerts"] if a["labels"].get("alertname") == name]


def short_rules(work):
    """alerts.yml with every `for:` shortened; nothing else changed."""
    text = ALERTS.read_text()
    shortened, count = re.subn(r"(?m)^(\s+for:\s*)\S+", rf"\g<1>{SHORT_FOR}", text)
    if count == 0:
        raise CheckFailed(f"{ALERTS} has no `for:` to shorten")
    path = work / "alerts.yml"
    path.write_text(shortened)
    return path


def watch_alert(prom, name, labels, want, deadline):
    """Polls the alert (the instance matching `labels`) until its state is want[-1], the
    states it went through, in order, being `want`; returns them."""
    seen = []

    def state():
        mine = [a for a in prom.alerts(name) if all(a["labels"].get(k) == v for k, v in labels.items())]
        current = mine[0]["state"] if mine else "inactive"
        if not seen or seen[-1] != current:
            seen.append(current)
        return current == want[-1]

    eventually(f"{name} {labels} becomes {want[-1]}", state, deadline=deadline, interval=0.1)
    if seen != want:
        raise CheckFailed(f"{name} {labels}: states {seen}, expected {want}")
    return seen


def scraped_since(prom, moment):
    """Until Prometheus holds a scrape of the gateway taken after `moment` (Unix time)."""
    def fresh():
        result = prom.query('timestamp(up{job="gateway"})')["result"]
        return result and float(result[0]["value"][1]) > moment
    eventually("a scrape newer than the last step", fresh, deadline=10)


def dashboard_queries():
    dash = json.loads(DASHBOARD.read_text())
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        yield panel["title"], [(t["refId"], t["expr"]) for t in panel["targets"]]


def check_dashboard(prom, window):
    """Every panel's queries evaluated now, `$__rate_interval` standing for the whole run
    (what the panels show over the run's time range) and `$instance` for every gateway."""
    problems, results = [], {}
    for title, targets in dashboard_queries():
        series = []
        for ref, expr in targets:
            query = expr.replace("$__rate_interval", window).replace("$instance", ".*")
            try:
                data = prom.query(query)
            except CheckFailed as error:
                problems.append(f"panel {title!r} query {ref}: {error}")
                continue
            if data["resultType"] != "vector":
                problems.append(f"panel {title!r} query {ref}: a {data['resultType']}, not a vector")
                continue
            series += [(s["metric"], float(s["value"][1])) for s in data["result"]]
        numbers = [value for _, value in series if not math.isnan(value)]
        say(f"  panel {title!r}: {len(series)} series")
        if not numbers:
            problems.append(f"panel {title!r}: no series with a value ({len(series)} series, all NaN)")
        results.setdefault(title, []).extend(series)
    titles = set(results)
    for title, labels, positive in EXPECTED:
        if title not in titles:
            problems.append(f"panel {title!r} is expected by this check but not in the dashboard")
            continue
        matching = [v for m, v in results[title] if all(m.get(k) == x for k, x in labels.items())]
        if not matching:
            problems.append(f"panel {title!r}: no series with {labels}")
        elif positive and not any(v > 0 for v in matching):
            problems.append(f"panel {title!r}: the series with {labels} reads {matching}, expected above 0")
    return problems


def check_alert_expressions(prom):
    """Every alert rule as Prometheus loaded it: evaluated without error by the rule manager
    and through /api/v1/query."""
    names = re.findall(r"(?m)^\s+- alert:\s*(\S+)", ALERTS.read_text())
    rules = [r for g in prom.api("rules")["groups"] for r in g["rules"] if r["type"] == "alerting"]
    problems = []
    if sorted(r["name"] for r in rules) != sorted(names):
        problems.append(f"Prometheus loaded {sorted(r['name'] for r in rules)}, alerts.yml has {sorted(names)}")
    for rule in rules:
        if rule["health"] != "ok":
            problems.append(f"alert {rule['name']}: rule health {rule['health']}: {rule.get('lastError')}")
        try:
            data = prom.query(rule["query"])
        except CheckFailed as error:
            problems.append(f"alert {rule['name']}: {error}")
            continue
        # A misspelt metric parses and never fires: every metric an alert reads must exist.
        metrics = sorted(set(re.findall(r"\bgateway_[a-z0-9_]+", rule["query"])))
        unknown = [m for m in metrics if not prom.query(f'count({{__name__="{m}"}})')["result"]]
        if unknown:
            problems.append(f"alert {rule['name']}: no series of {unknown} in a gateway's scrape")
        say(f"  alert {rule['name']}: parses, reads {', '.join(metrics)}; {len(data['result'])} series now")
    return problems


def check(work, processes, say):
    """The run the module docstring describes."""
    if not shutil.which("prometheus"):
        raise CheckFailed("prometheus is missing: sudo apt-get install prometheus")
    gateway = start_all(work, processes, say)
    rules = short_rules(work)
    prom = Prometheus(work, processes, f"127.0.0.1:{gateway.admin_port}", rules)
    say(f"prometheus up on :{prom.port}, scraping every 1 s, rules every 1 s (for: {SHORT_FOR})")
    eventually("Prometheus scrapes the gateway",
               lambda: any(s["value"][1] == "1" for s in prom.query('up{job="gateway"}')["result"]),
               deadline=15)
    run_start = time.time()
    load = Load(gateway)

    # 1. A reload that applies.
    if not gateway.reload(gateway.config("edited once"), "an edited config")["applied"]:
        raise CheckFailed("a valid edit of the config was rejected")
    say("config edited: reload applied")

    # 2. A breaker trips and recovers.
    paths = gateway.origins["paths"]
    backend = paths.address
    eventually("traffic reaches the paths backend", lambda: paths.calls > 0)
    paths.failing = True
    eventually("the breaker of paths opens",
               lambda: gateway.breaker_state("paths", backend) != "closed", deadline=10)
    say(f"paths backend {backend} answers 503: breaker open")
    labels = {"upstream": "paths", "backend": backend}
    watch_alert(prom, "GatewayBreakerOpen", labels, ["inactive", "pending", "firing"], deadline=20)
    say("GatewayBreakerOpen: inactive -> pending -> firing")
    paths.failing = False
    eventually("the breaker of paths closes again",
               lambda: gateway.breaker_state("paths", backend) == "closed", deadline=15)
    say("paths backend mended: breaker closed")
    watch_alert(prom, "GatewayBreakerOpen", labels, ["firing", "inactive"], deadline=15)
    say("GatewayBreakerOpen: firing -> resolved")

    # 3. A rejected reload, then a good one.
    broken = gateway.config("broken").replace("upstream: trips", "upstream: nowhere")
    result = gateway.reload(broken, "a broken config")
    if result["applied"]:
        raise CheckFailed("a config naming an unknown upstream was applied")
    say(f"broken config rejected: {result['errors'][0]}")
    watch_alert(prom, "GatewayConfigReloadFailed", {}, ["inactive", "pending", "firing"], deadline=15)
    say("GatewayConfigReloadFailed: inactive -> pending -> firing")
    if not gateway.reload(gateway.config("mended"), "the mended config")["applied"]:
        raise CheckFailed("the mended config was rejected")
    watch_alert(prom, "GatewayConfigReloadFailed", {}, ["firing", "inactive"], deadline=15)
    say("config mended: GatewayConfigReloadFailed resolved")

    # 4. The cache store goes away and comes back.
    gateway.redis.stop()
    eventually("the gateway sees its cache store down", lambda: not gateway.admin_json("/admin/cache")["up"])
    watch_alert(prom, "GatewayCacheStoreDown", {"store": "redis"}, ["inactive", "pending", "firing"], deadline=15)
    say("redis-server killed: GatewayCacheStoreDown inactive -> pending -> firing")
    gateway.redis.start()
    eventually("the gateway reconnects to its cache store", lambda: gateway.admin_json("/admin/cache")["up"])
    watch_alert(prom, "GatewayCacheStoreDown", {"store": "redis"}, ["firing", "inactive"], deadline=15)
    say("redis-server back: GatewayCacheStoreDown resolved")

    # 5. Every expression, against what Prometheus now holds.
    scraped_since(prom, time.time())
    load.stop()
    window = f"{math.ceil(time.time() - run_start) + 5}s"
    say(f"dashboard queries ($__rate_interval = {window}, the whole run):")
    problems = check_dashboard(prom, window)
    say("alert expressions:")
    problems += check_alert_expressions(prom)
    if problems:
        raise CheckFailed("\n  ".join(["the dashboard or the alerts are wrong:"] + problems))
    say(f"load: {load.rounds} rounds, statuses {dict(sorted(load.statuses.items(), key=str))}")


def main():
    run_check("prometheus", ("gateway.log", "prometheus.log"), check)


if __name__ == "__main__":
    main()
