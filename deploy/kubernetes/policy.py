"""Policy check of rendered Kubernetes manifests (scripts/check-deploy runs it on every
overlay after `kubectl kustomize` and the schema check).

    python3 deploy/kubernetes/policy.py rendered.yaml...

Every workload container must have readiness and liveness probes, CPU and memory requests
and limits (requests within limits), a pinned image tag (no `latest`, no tag-less image),
run as a non-root user without privilege escalation, and take secrets from Secrets, never
from literal env values. The gateway must also fit its own config: the ConfigMap mounted as
a directory (a subPath mount never sees an update), both probes on the admin /healthz, a
termination grace period longer than server.shutdown_delay + server.grace_period, worker
threads matching its CPU limit, at least two replicas from the HorizontalPodAutoscaler and
a PodDisruptionBudget that selects it. Prints every problem and exits 1 if there is any.
"""

import os
import re
import sys

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
# Env names whose values are credentials, or may carry them (URLs with a password).
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|_URL$|_KEY$")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def seconds(text):
    """A humantime duration as the gateway's config writes them: 5s, 500ms, 1m."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", str(text).strip())
    if not match:
        raise ValueError(f"unsupported duration {text!r}")
    return int(match.group(1)) * UNITS[match.group(2)]


def cpu(text):
    text = str(text)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory(text):
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", str(text))
    if not match:
        raise ValueError(f"unsupported quantity {text!r}")
    return int(match.group(1)) * {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}[match.group(2)]


def check_container(where, pod, container, problems):
    for probe in ("readinessProbe", "livenessProbe"):
        if probe not in container:
            problems.append(f"{where}: no {probe}")
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(kind, {}):
                problems.append(f"{where}: no {resource} {kind[:-1]}")
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    if "cpu" in requests and "cpu" in limits and cpu(requests["cpu"]) > cpu(limits["cpu"]):
        problems.append(f"{where}: cpu request above its limit")
    if "memory" in requests and "memory" in limits and memory(requests["memory"]) > memory(limits["memory"]):
        problems.append(f"{where}: memory request above its limit")

    image = container.get("image", "")
    name, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
    if not tag or "/" in tag or tag == "latest":
        problems.append(f"{where}: image {image!r} needs a pinned tag (not latest) or a digest")

    pod_security = pod.get("securityContext", {})
    security = container.get("securityContext", {})
    non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    if non_root is not True or user in (None, 0):
        problems.append(f"{where}: must set runAsNonRoot: true and a non-zero runAsUser")
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation must be false")
    if "ALL" not in security.get("capabilities", {}).get("drop", []):
        problems.append(f"{where}: capabilities must drop ALL")

    for env in container.get("env", []):
        if SECRET_NAME.search(env["name"]) and "value" in env:
            value = str(env["value"])
            # A URL without credentials (http://parties:8084) is not a secret.
            if not re.fullmatch(r"[a-z]+://[^@/]+(/.*)?", value):
                problems.append(f"{where}: env {env['name']} must come from a Secret")


def check_gateway(docs, problems):
    gateways = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gateway"]
    if len(gateways) != 1:
        problems.append("no Deployment named gateway")
        return
    deployment = gateways[0]
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = next(c for c in pod["containers"] if c["name"] == "gateway")
    where = "Deployment/gateway"

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = [m for m in container.get("volumeMounts", []) if "configMap" in volumes.get(m["name"], {})]
    config_map = None
    if not mounts:
        problems.append(f"{where}: gateway.yaml must come from a mounted ConfigMap")
    for mount in mounts:
        if "subPath" in mount:
            problems.append(f"{where}: the ConfigMap is mounted with subPath, so updates never reach the gateway")
        config_map = volumes[mount["name"]]["configMap"]["name"]
        if not container.get("args") or f"{mount['mountPath'].rstrip('/')}/gateway.yaml" not in container["args"]:
            problems.append(f"{where}: --config must name gateway.yaml in the mounted ConfigMap")

    maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == config_map]
    if config_map and not maps:
        problems.append(f"{where}: ConfigMap {config_map} is not in the manifests")
    if maps:
        config = yaml.safe_load(maps[0]["data"]["gateway.yaml"])
        server = config.get("server", {})
        needed = seconds(server.get("shutdown_delay", "0s")) + seconds(server.get("grace_period", "5s")) + 1
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace <= needed:
            problems.append(
                f"{where}: terminationGracePeriodSeconds {grace} must exceed shutdown_delay + grace_period + 1 s ({needed:g} s)"
            )
        limit = container.get("resources", {}).get("limits", {}).get("cpu")
        if limit is not None and server.get("threads") != max(1, round(cpu(limit))):
            problems.append(f"{where}: server.threads {server.get('threads')} does not match the CPU limit {limit}")
        admin_port = int(str(config.get("admin", {}).get("listen", "127.0.0.1:9091")).rsplit(":", 1)[1])
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe"):
            get = container.get(probe, {}).get("httpGet", {})
            port = ports.get(get.get("port"), get.get("port"))
            if get.get("path") != "/healthz" or port != admin_port:
                problems.append(f"{where}: {probe} must GET /healthz on the admin port {admin_port}")
        for env in ("secret_env",):
            name = config.get("auth", {}).get("jwt", {}).get(env, "JWT_SECRET")
            if name not in {e["name"] for e in container.get("env", [])}:
                problems.append(f"{where}: auth.jwt.{env} names {name}, which the container does not set")
        admin = config.get("admin", {})
        token_env = admin.get("token_env")
        if token_env and token_env not in {e["name"] for e in container.get("env", [])}:
            problems.append(f"{where}: admin.token_env names {token_env}, which the container does not set")
        if not token_env and not admin.get("open") and "/healthz" not in admin.get("open_paths", ["/healthz"]):
            problems.append(f"{where}: the probes need /healthz in admin.open_paths")
        redis_env = config.get("cache", {}).get("redis_url_env")
        if config.get("cache", {}).get("redis_url"):
            problems.append(f"{where}: cache.redis_url is a literal; use redis_url_env and the Secret")
        if redis_env and redis_env not in {e["name"] for e in container.get("env", [])}:
            problems.append(f"{where}: cache.redis_url_env names {redis_env}, which the container does not set")

    def selects(selector):
        return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())

    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler" and d["spec"]["scaleTargetRef"]["name"] == "gateway"]
    if not hpas:
        if deployment["spec"].get("replicas", 1) < 2:
            problems.append(f"{where}: fewer than two replicas and no HorizontalPodAutoscaler")
    elif hpas[0]["spec"].get("minReplicas", 1) < 2:
        problems.append(f"{where}: the HorizontalPodAutoscaler allows a single replica")
    elif "replicas" in deployment["spec"]:
        problems.append(f"{where}: replicas is set although an HorizontalPodAutoscaler scales it (apply would reset it)")
    if not any(d["kind"] == "PodDisruptionBudget" and selects(d["spec"]["selector"]) for d in docs):
        problems.append(f"{where}: no PodDisruptionBudget selects the gateway pods")


def main(files):
    problems = []
    for file_name in files:
        # Rendered overlays are named after the overlay: report them by that name.
        path = "overlay " + os.path.basename(file_name).removesuffix(".yaml")
        with open(file_name) as file:
            docs = [d for d in yaml.safe_load_all(file) if d]
        before = len(problems)
        for doc in docs:
            if doc["kind"] not in WORKLOADS:
                continue
            pod = doc["spec"]["template"]["spec"]
            for container in pod.get("initContainers", []) + pod["containers"]:
                where = f"{path}: {doc['kind']}/{doc['metadata']['name']} container {container['name']}"
                check_container(where, pod, container, problems)
        check_gateway(docs, problems)
        problems[before:] = [p if p.startswith(path) else f"{path}: {p}" for p in problems[before:]]
        if len(problems) == before:
            print(f"{path}: policy ok ({sum(d['kind'] in WORKLOADS for d in docs)} workloads)")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
