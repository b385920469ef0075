#!/usr/bin/env python3
"""Offline checks of the deployment artefacts (deploy/): no cluster and no container runtime.

1. every Kubernetes manifest validates against the Kubernetes schemas (kubernetes-validate,
   strict: unknown fields are errors) for each version in KUBERNETES_VERSIONS;
2. the Dockerfile passes hadolint;
3. the platform rules hold: every container runs as non-root on a read-only root filesystem,
   without privilege escalation or capabilities, with memory limits; the service has startup,
   readiness (/readyz) and liveness (/healthz) probes on its HTTP port; Prometheus is pointed at
   the metrics port the site config listens on; the kustomization lists every manifest; the
   NetworkPolicy lets the pods reach, on 443, every network the site config's [egress] allows.

Usage: check_deploy.py DEPLOY_DIR ; exit status 0 when all hold, 1 with the failures printed.
       check_deploy.py DEPLOY_DIR --site-toml ; prints the site config the manifests carry (the
       service's own tests load it as its settings).
"""
import glob
import ipaddress
import os
import subprocess
import sys
import tomllib

import yaml

KUBERNETES_VERSIONS = ["1.29.0", "1.33.0"]


def main(deploy):
    k8s = os.path.join(deploy, "kubernetes")
    bindir = os.path.dirname(sys.executable)
    failures = []
    manifests = sorted(f for f in glob.glob(os.path.join(k8s, "*.yaml")) if not f.endswith("kustomization.yaml"))
    for version in KUBERNETES_VERSIONS:
        r = subprocess.run([os.path.join(bindir, "kubernetes-validate"), "--strict", "--quiet", "-k", version, *manifests], capture_output=True, text=True)
        if r.returncode != 0:
            failures.append(f"kubernetes-validate {version}:\n{r.stdout}{r.stderr}")
    r = subprocess.run([os.path.join(bindir, "hadolint"), os.path.join(deploy, "container", "Dockerfile")], capture_output=True, text=True)
    if r.returncode != 0:
        failures.append(f"hadolint:\n{r.stdout}{r.stderr}")

    docs = [d for f in manifests for d in yaml.safe_load_all(open(f)) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    kustomization = yaml.safe_load(open(os.path.join(k8s, "kustomization.yaml")))
    listed = set(kustomization["resources"])
    present = {os.path.basename(f) for f in manifests}
    if listed != present:
        failures.append(f"kustomization resources {sorted(listed)} != manifests {sorted(present)}")

    def pod_specs():
        for d in docs:
            spec = d.get("spec", {})
            if d["kind"] in ("Deployment", "Job"):
                yield d, spec["template"]["spec"]
            elif d["kind"] == "CronJob":
                yield d, spec["jobTemplate"]["spec"]["template"]["spec"]

    for d, pod in pod_specs():
        name = f'{d["kind"]}/{d["metadata"]["name"]}'
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
            failures.append(f"{name}: the pod must run as a non-root user")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            failures.append(f"{name}: seccompProfile RuntimeDefault")
        if pod.get("automountServiceAccountToken") is not False:
            failures.append(f"{name}: no service account token (the service never calls the API server)")
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                failures.append(f"{name}/{c['name']}: readOnlyRootFilesystem")
            if sc.get("allowPrivilegeEscalation") is not False:
                failures.append(f"{name}/{c['name']}: allowPrivilegeEscalation false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                failures.append(f"{name}/{c['name']}: drop ALL capabilities")
            if not c.get("resources", {}).get("limits", {}).get("memory"):
                failures.append(f"{name}/{c['name']}: a memory limit")
            if ":" in c["image"] and c["image"].endswith(":latest"):
                failures.append(f"{name}/{c['name']}: never :latest")

    site = None
    for s in by_kind.get("Secret", []):
        if "site.toml" in s.get("stringData", {}):
            site = tomllib.loads(s["stringData"]["site.toml"])
    if site is None:
        failures.append("no Secret carries site.toml")
        site = {}

    serve = next((d for d in by_kind.get("Deployment", []) if d["metadata"]["name"] == "neurocds-serve"), None)
    if serve is None:
        failures.append("no neurocds-serve Deployment")
    else:
        c = serve["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            got = c.get(probe, {}).get("httpGet", {})
            if got.get("path") != path or got.get("port") != "http":
                failures.append(f"serve: {probe} must GET {path} on the http port, not {got}")
        listen = site.get("server", {}).get("listen", "")
        if not listen.endswith(f":{ports.get('http')}"):
            failures.append(f"serve: server.listen {listen!r} is not the http containerPort {ports.get('http')}")
        metrics = site.get("metrics", {}).get("listen", "")
        annotations = serve["spec"]["template"]["metadata"].get("annotations", {})
        if not metrics.endswith(f":{ports.get('metrics')}") or annotations.get("prometheus.io/port") != str(ports.get("metrics")):
            failures.append(f"serve: metrics.listen {metrics!r}, the metrics containerPort {ports.get('metrics')} and prometheus.io/port {annotations.get('prometheus.io/port')} must agree")
        if serve["spec"]["replicas"] > 1 and site.get("trust", {}).get("shared_replay_check") is not True:
            failures.append("serve: several replicas need trust.shared_replay_check = true")

    workers = [d for d in by_kind.get("Deployment", []) if d["spec"]["template"]["spec"]["containers"][0].get("args") == ["worker"]]
    if not workers:
        failures.append("no worker Deployment (args: [worker])")
    for w in workers:
        c = w["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            got = c.get(probe, {}).get("httpGet", {})
            if got.get("path") != path or got.get("port") != "health":
                failures.append(f"{w['metadata']['name']}: {probe} must GET {path} on the health port, not {got}")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        listen = env.get("NEUROCDS_WORKER__LISTEN") or site.get("worker", {}).get("listen", "")
        annotations = w["spec"]["template"]["metadata"].get("annotations", {})
        if not listen.endswith(f":{ports.get('health')}") or annotations.get("prometheus.io/port") != str(ports.get("health")):
            failures.append(f"{w['metadata']['name']}: worker.listen {listen!r}, the health containerPort {ports.get('health')} and prometheus.io/port must agree")
    if workers and serve is not None:
        env = {e["name"]: e.get("value") for e in serve["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        if env.get("NEUROCDS_WORKER__EMBEDDED") != "false" and site.get("worker", {}).get("embedded") is not False:
            failures.append("serve: with worker Deployments, serve runs no embedded worker (worker.embedded = false)")

    reachable_443 = []
    for policy in by_kind.get("NetworkPolicy", []):
        for rule in policy["spec"].get("egress", []):
            if any(p.get("port") == 443 for p in rule.get("ports", [])):
                reachable_443 += [ipaddress.ip_network(t["ipBlock"]["cidr"]) for t in rule.get("to", []) if "ipBlock" in t]
    for allowed in site.get("egress", {}).get("allowed_networks", []):
        net = ipaddress.ip_network(allowed, strict=False)
        if not any(net.subnet_of(r) for r in reachable_443 if r.version == net.version):
            failures.append(f"egress: {allowed} is allowed by the service but not reachable on 443 by the NetworkPolicy")

    for f in failures:
        print("FAIL", f)
    print(f"{len(manifests)} manifests, {len(docs)} resources, Kubernetes {', '.join(KUBERNETES_VERSIONS)}: {'ok' if not failures else f'{len(failures)} failure(s)'}")
    return 0 if not failures else 1


def site_toml(deploy):
    for f in sorted(glob.glob(os.path.join(deploy, "kubernetes", "*.yaml"))):
        for d in yaml.safe_load_all(open(f)):
            if d and d.get("kind") == "Secret" and "site.toml" in d.get("stringData", {}):
                sys.stdout.write(d["stringData"]["site.toml"])
                return 0
    return 1


if __name__ == "__main__":
    if sys.argv[2:] == ["--site-toml"]:
        sys.exit(site_toml(sys.argv[1]))
    sys.exit(main(sys.argv[1]))
