#!/usr/bin/env python3
"""Live checks of the deployment topology: `make stack-check` (the local stack, no Docker) and
`make compose-check` (--target compose: the compose stack under a real Docker engine), both phases
of `make ci`. One checker, two targets: the checks below run on both unless marked.

On a fresh stack of its own (a temporary SOMA_STACK_DIR or SOMA_COMPOSE_DIR; nginx on 8788 as in
production):
  1. `scripts/stack.py up --instances 3`; status: every component running and answering;
  2. `nginx -t` on the rendered configuration, and on the affinity variant rendered the same way;
  3. requests through nginx: analysis over HTTP (five modules) and over HTTPS (the self-signed
     certificate verified as the trust root, hostname 127.0.0.1), requests spread over instances,
     JSON errors, the JSON access log with upstream timings, a burst past limit_req answered with
     JSON 429s, an instance killed: every request still answered (nginx retries), then `up` again
     restarts only that instance (idempotent); the affinity variant live (each user always on one
     instance), then back to least_conn;
  4. Prometheus: 3 soma targets up, Alertmanager discovered; after traffic, every recording and
     alerting rule evaluated with health "ok", every rule and every dashboard expression queried
     without error, every metric they name exported (except the counters that appear at their
     first event, listed below);
  5. compose only, under a steady background load through nginx (analyses from 100 users): a
     crashed instance (SIGKILL) is back by its restart policy and takes traffic again; Redis paused
     (`docker pause`) and PostgreSQL paused: every analysis answered, and the entries posted during
     the PostgreSQL pause (202, queued) are all present exactly once after it; a rolling update to a
     new image tag, one instance at a time: every request answered; `scale` to 4 instances and back
     to 3 (what `soma autoscale --stack compose` calls): every request answered;
  6. down: no process (local) or container, volume and network (compose) of the stack left, port
     8788 free.
On the local target the instance kill is answered by `up` (no supervisor), and the affinity
variant is checked live; on compose the gateway's `nginx -t` runs inside its container.
Every wait is bounded; everything targets 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(REPO / "scripts"))
import stack  # noqa: E402  (scripts/stack.py: process helpers, the renderer)

# Counters created at their first event (swift-metrics registers a labelled counter when it is first
# incremented), so a healthy stack under light traffic does not export them yet.
FIRST_EVENT_METRICS = {
    "soma_degraded_total": "first degraded answer",
    "soma_shed_total": "first request shed under overload",
    "soma_rate_limited_total": "first request over its rate limit",
}
# Exported by `soma autoscale`, which this check does not run (scripts/autoscale-check.py checks
# that the stack's Prometheus scrapes them while it runs).
AUTOSCALER_METRICS = {"soma_autoscale_instances", "soma_autoscale_desired_instances", "soma_autoscale_max_instances",
                      "soma_autoscale_min_instances", "soma_autoscale_decisions_total"}

failures: list[str] = []


LABEL = "stack-check"


def check(condition: bool, what: str, detail: str = "") -> bool:
    if condition:
        print(f"{LABEL}: ok   {what}", flush=True)
    else:
        print(f"{LABEL}: FAIL {what}{': ' + detail if detail else ''}", flush=True)
        failures.append(what)
    return condition


# Headers every request carries: on the compose target the service token (the compose file requires
# one: its gateway is public) and, as the token requires, a user.
DEFAULT_HEADERS: dict[str, str] = {}


def request(url: str, body: dict | None = None, headers: dict | None = None, context=None, timeout=10.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **DEFAULT_HEADERS,
                                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def prom_query(base: str, expr: str) -> tuple[bool, str, int]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            payload = json.load(response)
    except urllib.error.HTTPError as error:
        payload = json.loads(error.read() or b"{}")
    except OSError as error:
        return False, str(error), 0
    if payload.get("status") != "success":
        return False, f"{payload.get('errorType')}: {payload.get('error')}", 0
    result = payload["data"]["result"]
    return True, "", len(result) if isinstance(result, list) else 1


def grafana_to_promql(expr: str) -> str:
    """The dashboard's template variables as Grafana would expand them for job=soma, all instances."""
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
            .replace('"$job"', '"soma"').replace('"$instance"', '".*"'))


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects: ours (soma_*, process_*) and recorded ones (job:soma_...)."""
    tokens = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", re.sub(r'"[^"]*"', '""', expr))
    return {t for t in tokens if "soma_" in t or t.startswith("process_")}


def run(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description="live checks of the local or the compose stack")
    parser.add_argument("--target", choices=["local", "compose"], default="local")
    parser.add_argument("--binary", type=Path, default=REPO / ".build/release/soma")
    parser.add_argument("--model-dir", type=Path, default=REPO / ".build/models")
    parser.add_argument("--keep", action="store_true", help="leave the stack running (for debugging)")
    args = parser.parse_args()
    compose = args.target == "compose"
    global LABEL
    LABEL = "compose-check" if compose else "stack-check"

    directory = Path(tempfile.mkdtemp(prefix=f"soma-{LABEL}-"))
    directory.chmod(0o755)  # PostgreSQL runs as its own user and must reach its data directory
    if compose:
        env = dict(os.environ, SOMA_COMPOSE_DIR=str(directory), SOMA_COMPOSE_PROJECT="soma-check")
        stack_cmd = [sys.executable, str(REPO / "scripts/compose.py")]
        state_path = directory / "compose.json"
    else:
        env = dict(os.environ, SOMA_STACK_DIR=str(directory))
        stack_cmd = [sys.executable, str(REPO / "scripts/stack.py")]
        state_path = directory / "stack.json"
    t0 = time.monotonic()
    up = run(stack_cmd + ["up", "--instances", "3", "--binary", str(args.binary), "--model-dir", str(args.model_dir)],
             env, 1800)
    print(up.stderr, end="", file=sys.stderr)
    try:
        if not check(up.returncode == 0, f"{'compose' if compose else 'stack'} up (3 instances) in "
                     f"{time.monotonic() - t0:.1f} s", up.stderr[-2000:]):
            return 1
        state = json.loads(state_path.read_text())
        gateway = state["nginx"]["url"]
        if compose:
            secrets = dict(line.split("=", 1) for line in Path(state["secrets_file"]).read_text().split())
            code, _, body = request(f"{gateway}/v1/analyze", {"text": "Who is asking?"})
            check(code == 401, "compose: /v1 without the service token is 401 (the compose file requires one)",
                  f"{code} {body[:200]!r}")
            DEFAULT_HEADERS.update({"Authorization": f"Bearer {secrets['SOMA_SERVICE_TOKEN']}",
                                    "X-User-Id": "compose-check"})
        check(state["nginx"]["port"] == 8788, "nginx on 127.0.0.1:8788", str(state["nginx"]["port"]))
        check(len(state["instances"]) == 3 and len({i["port"] for i in state["instances"]}) == 3
              and all(i["port"] != 8788 for i in state["instances"]), "3 instances on distinct ports")
        status = run(stack_cmd + ["status", "--json"], env, 60)
        health = json.loads(status.stdout)["health"] if status.stdout else {}
        check(status.returncode == 0 and health.get("ok"), "status: every component running and answering",
              status.stdout[-1500:])
        names = {c.get("name") or c.get("service") for c in health.get("components", [])}
        if compose:
            timings = state.get("timings", {})
            print(f"{LABEL}: note images {state['images']['soma']} and soma-<service> from Debian's packages; "
                  f"every container healthy {timings.get('healthy_after_up_s')} s after `docker-compose up` "
                  f"({timings.get('total_s')} s in all, images included)", flush=True)
            check({"nginx-lb", "redis", "postgres", "prometheus", "alertmanager", "ml-1", "ml-2", "ml-3"} <= names,
                  "status lists nginx-lb, 3 instances, redis, postgres, prometheus, alertmanager", str(sorted(names)))
            containers = state["containers"]
            check(all(c["health"] == "healthy" for s, c in containers.items() if s != "migrate")
                  and containers.get("migrate", {}).get("exit_code") == 0,
                  "every container healthy (Docker healthchecks); migrate ran once and exited 0",
                  json.dumps(containers)[:1500])
            listening = listening_addresses()
            public = sorted(a for a in listening if not a.startswith(("127.", "[::1]")))
            check(not public, "every listener of the stack on 127.0.0.1 (host networking, nothing public)",
                  str(public))
        else:
            check(len({i["state_dir"] for i in state["instances"]}) == 3, "each instance has its own state directory")
            check({"nginx", "redis", "postgres", "prometheus", "alertmanager", "soma-1", "soma-2", "soma-3"} <= names,
                  "status lists nginx, 3 instances, redis, postgres, prometheus, alertmanager", str(sorted(names)))
            check(all(f"{i['pid']}" and stack.alive(i["pid"]) for i in state["instances"]),
                  "instance PIDs recorded and alive")

        # ---- nginx -t on the rendered configurations ----
        if compose:
            result = run(docker_cmd() + ["exec", container_of(state, "nginx-lb"), "nginx", "-t"], env, 60)
            check(result.returncode == 0, "nginx -t inside the gateway's container", result.stderr)
        conf = Path(state["nginx"]["conf"])
        if not compose:
            result = run(["nginx", "-t", "-c", str(conf), "-p", state["nginx"]["prefix"] + "/"], env, 30)
            check(result.returncode == 0, "nginx -t on the rendered least_conn configuration", result.stderr)
            scratch = stack.Stack(directory / "affinity-render", args.binary)
            scratch.state["instances"] = state["instances"]
            scratch.dir.mkdir()
            affinity_conf = scratch.render_nginx(True, state["nginx"]["tls_port"], state.get("fd_limit", 1024))
            result = run(["nginx", "-t", "-c", str(affinity_conf), "-p", f"{scratch.dir / 'nginx'}/"], env, 30)
            check(result.returncode == 0 and "hash $http_x_user_id consistent" in affinity_conf.read_text(),
                  "nginx -t on the rendered affinity (hash on X-User-Id) configuration", result.stderr)

        # ---- through nginx ----
        text = {"text": "I finally finished the marathon and I am proud, though my knees hurt."}
        code, headers, body = request(f"{gateway}/v1/analyze", text)
        results = json.loads(body).get("results", {}) if code == 200 else {}
        check(code == 200 and len(results) == 5, "POST /v1/analyze through nginx: 200 with five modules",
              f"{code} {body[:200]!r}")
        check(bool(headers.get("X-Request-Id")), "X-Request-Id returned through nginx")
        tls = ssl.create_default_context(cafile=state["nginx"]["certificate"])
        code, _, body = request(f"{state['nginx']['https_url']}/v1/analyze", text, context=tls)
        check(code == 200 and len(json.loads(body).get("results", {})) == 5,
              "HTTPS through nginx (self-signed certificate verified, hostname 127.0.0.1): 200, five modules",
              f"{code} {body[:200]!r}")
        try:
            request(f"{state['nginx']['https_url']}/health", context=ssl.create_default_context())
            check(False, "HTTPS refused by a client that does not trust the self-signed certificate")
        except urllib.error.URLError as error:
            check("CERTIFICATE_VERIFY_FAILED" in str(error),
                  "HTTPS refused by a client that does not trust the self-signed certificate", str(error))
        seen = set()
        for _ in range(12):
            code, _, body = request(f"{gateway}/health")
            if code == 200:
                seen.add(json.loads(body).get("instance_id"))
        check(len(seen) >= 2, f"requests spread over instances ({sorted(seen)})")
        code, headers, body = request(f"{gateway}/v1/analyze", {"text": 5})
        check(code == 422 and json.loads(body).get("error", {}).get("code") == "validation_failed",
              "bad input through nginx: 422 JSON error from the instance", f"{code} {body[:200]!r}")
        code, _, body = request(f"{gateway}/nope")
        check(code == 404 and body.startswith(b"{"), "unknown route through nginx: 404 JSON", f"{code} {body[:120]!r}")

        # JSON access log with upstream timings
        time.sleep(1.5)  # the log is buffered (flush=1s)
        lines = Path(state["nginx"]["access_log"]).read_text().splitlines()
        try:
            records = [json.loads(line) for line in lines[-200:]]
        except ValueError as error:
            records = []
            check(False, "nginx access log is one JSON object per line", str(error))
        analysed = [r for r in records if r.get("uri") == "/v1/analyze" and r.get("status") == 200]
        check(bool(analysed) and all(r.get("upstream_response_time") not in ("", "-") and r.get("upstream_addr")
                                     and r.get("request_id") for r in analysed),
              f"nginx access log: JSON lines with request id, upstream address and timings ({len(analysed)} analyses)")

        # Gateway rate limit: a burst far above 1000 r/s (+ burst 2000) from one address gets JSON 429s.
        # R r/s for T s is limited once R*T > 2000 + 1000*T. Through /health (proxied to an instance)
        # a busy 2-core machine reached only 1,091 r/s for 10 s, never limited; /gateway/status is
        # answered by nginx itself (stub_status), behind the same limit_req, at nginx's speed.
        lua = directory / "burst.lua"
        lua.write_text('''
local reported = false
function response(status, headers, body)
  if status == 429 and not reported then
    reported = true
    io.write("LIMITED\t" .. (headers["Content-Type"] or "") .. "\t" .. (headers["Retry-After"] or "") .. "\t" .. body)
  end
end
''')
        burst = run(["wrk", "-t2", "-c128", "-d10s", "-s", str(lua), f"{gateway}/gateway/status"], env, 40)
        limited = [line for line in burst.stdout.splitlines() if line.startswith("LIMITED\t")]
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", burst.stdout)
        body429 = {}
        if limited:
            _, content_type, retry_after, payload = limited[0].split("\t", 3)
            body429 = json.loads(payload) if payload.startswith("{") else {}
        check(bool(limited) and content_type.startswith("application/json") and retry_after == "1"
              and body429.get("error", {}).get("code") == "rate_limited" and body429["error"].get("request_id"),
              f"gateway limit_req: a burst from one address gets 429 rate_limited JSON with Retry-After "
              f"({non2xx.group(1) if non2xx else '?'} limited)", burst.stdout[-800:] + burst.stderr[-400:])
        time.sleep(2.5)  # the bucket drains at 1000 r/s

        if compose:
            compose_kill(state, gateway, env)
        else:
            victim = state["instances"][1]
            os.kill(victim["pid"], signal.SIGKILL)
            stack.wait_until(lambda: not stack.alive(victim["pid"]), 5)
            codes = [request(f"{gateway}/v1/analyze", {"text": f"Request {n} while an instance is gone."})[0]
                     for n in range(30)]
            check(codes.count(200) == 30, "an instance killed: 30 of 30 analyses through nginx answered 200 (retried)",
                  str(codes))
            again = run(stack_cmd + ["up", "--instances", "3", "--binary", str(args.binary), "--model-dir",
                                     str(args.model_dir)], env, 300)
            state2 = json.loads(state_path.read_text())
            kept = [a["pid"] == b["pid"] for a, b in zip(state["instances"], state2["instances"])]
            check(again.returncode == 0 and kept == [True, False, True] and stack.alive(state2["instances"][1]["pid"]),
                  "up again (idempotent): only the killed instance restarted", again.stderr[-1500:])
            state = state2

            # ---- the affinity variant, live: the same user always reaches the same instance ----
            affinity = run(stack_cmd + ["up", "--instances", "3", "--affinity", "--binary", str(args.binary),
                                        "--model-dir", str(args.model_dir)], env, 300)
            placement: dict[str, set] = {}
            for round_ in range(4):
                for user in range(12):
                    code, _, body = request(f"{gateway}/health", headers={"X-User-Id": f"affinity-user-{user}"})
                    if code == 200:
                        placement.setdefault(f"affinity-user-{user}", set()).add(json.loads(body).get("instance_id"))
            sticky = all(len(v) == 1 for v in placement.values()) and len(placement) == 12
            spread = {next(iter(v)) for v in placement.values() if v}
            check(affinity.returncode == 0 and json.loads(state_path.read_text())["nginx"]["affinity"] and sticky
                  and len(spread) >= 2,
                  f"affinity variant live: each of 12 users always on one instance, users spread over {sorted(spread)}",
                  affinity.stderr[-800:] + str(placement))
            back = run(stack_cmd + ["up", "--instances", "3", "--binary", str(args.binary), "--model-dir",
                                    str(args.model_dir)], env, 300)
            state = json.loads(state_path.read_text())
            check(back.returncode == 0 and not state["nginx"]["affinity"]
                  and "least_conn" in Path(state["nginx"]["conf"]).read_text(), "back to least_conn", back.stderr[-800:])

        # ---- Prometheus ----
        prom = state["prometheus"]["url"]

        expected = {f"127.0.0.1:{i['port']}" for i in state["instances"]}
        check(stack.wait_until(lambda: stack.soma_targets(prom) == expected, 60, 1), "Prometheus: 3 soma targets up",
              f"up: {sorted(stack.soma_targets(prom))}")
        def alertmanagers() -> list:
            return stack.http_json(f"{prom}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        check(stack.wait_until(lambda: any(f":{state['alertmanager']['port']}/" in m["url"] for m in alertmanagers()),
                               30, 0.5), "Prometheus sends alerts to the stack's Alertmanager", str(alertmanagers()))

        # Traffic for every panel and rule: analyses (misses, then hits), entries, profile.
        for n in range(60):
            request(f"{gateway}/v1/analyze", {"text": f"Check text number {n % 12}: I hope this works."},
                    {"X-User-Id": f"check-{n % 5}"})
        for n in range(6):
            request(f"{gateway}/v1/entries", {"text": f"Entry {n}: a calm day."}, {"X-User-Id": "check-entries"})
        request(f"{gateway}/v1/profile", headers={"X-User-Id": "check-entries"})
        traffic_done = time.time()

        def rules_evaluated() -> bool:
            groups = stack.http_json(f"{prom}/api/v1/rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            stamps = [r.get("lastEvaluation", "") for r in rules]
            return bool(rules) and all(s and not s.startswith("0001") for s in stamps) and \
                all(time_of(s) > traffic_done + 6 for s in stamps)

        check(stack.wait_until(rules_evaluated, 60, 1), "every rule group evaluated after the traffic")
        groups = stack.http_json(f"{prom}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        local_rules = (REPO / "deploy/prometheus/alerts.yml").read_text()
        check(len(rules) == local_rules.count("- record:") + local_rules.count("- alert:"),
              f"Prometheus loaded all {len(rules)} rules of deploy/prometheus/alerts.yml")
        bad = [f"{r['name']}: {r.get('lastError')}" for r in rules if r.get("health") != "ok"]
        check(not bad, f"all {len(rules)} rules evaluate with health ok", "; ".join(bad))

        exported = set(stack.http_json(f"{prom}/api/v1/label/__name__/values")["data"])
        dashboard = json.loads((REPO / "deploy/grafana/dashboards/soma.json").read_text())
        expressions = [(f"rule {r['name']}", r["query"]) for r in rules]
        expressions += [(f"panel '{p['title']}' {t.get('refId', '')}", grafana_to_promql(t["expr"]))
                        for p in dashboard["panels"] for t in p.get("targets", []) if t.get("expr")]
        for variable in dashboard.get("templating", {}).get("list", []):
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable.get("definition", ""))
            if inner:
                expressions.append((f"variable ${variable['name']}", grafana_to_promql(inner.group(1))))
        recorded = {r["name"] for r in rules if r.get("type") == "recording"}
        errors, empty, missing = [], [], set()
        for name, expr in expressions:
            ok, error, series = prom_query(prom, expr)
            if not ok:
                errors.append(f"{name}: {error}")
            elif series == 0:
                empty.append(name)
            # recorded series (job:...) exist only while their rule returns data: they must name a rule
            missing |= {m for m in metric_names(expr)
                        if (m not in exported if ":" not in m else m not in recorded)} - set(FIRST_EVENT_METRICS) - AUTOSCALER_METRICS
        check(not errors, f"all {len(expressions)} PromQL expressions (rules, dashboard panels, variables) "
              "evaluate without error", "; ".join(errors))
        check(not missing, "every metric named by the rules and the dashboard is exported", ", ".join(sorted(missing)))
        print(f"{LABEL}: note {len(expressions) - len(empty)} of {len(expressions)} expressions returned data; "
              f"empty (no such event yet, e.g. no 5xx, no alert firing): {', '.join(empty) or 'none'}", flush=True)
        must_have_data = ["panel 'Latency p50 / p95 / p99'", "panel 'Throughput by status class'",
                          "panel 'Instance health'", "panel 'Cache hit ratio'", "panel 'CPU'", "panel 'Memory (RSS)'",
                          "panel 'Disk (state dir)'", "panel 'Active users'", "panel 'Model accuracy'"]
        lacking = [m for m in must_have_data if any(e.startswith(m) for e in empty)]
        check(not lacking, "the dashboard's panels show data from the live stack", ", ".join(lacking))
        value = stack.http_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode(
            {"query": 'count(soma_instance_status{job="soma"} == 2)'}))["data"]["result"]
        check(bool(value) and value[0]["value"][1] == "3", "soma_instance_status: 3 instances ok (2)", str(value))

        if compose:
            compose_faults(state, gateway, env, stack_cmd)
    finally:
        if args.keep:
            variable = "SOMA_COMPOSE_DIR" if compose else "SOMA_STACK_DIR"
            print(f"{LABEL}: stack kept running in {directory} ({variable}={directory} "
                  f"{stack_cmd[-1]} down --purge)")
        elif compose:
            compose_down(state_path, directory, env, stack_cmd)
        else:
            before = set()
            if state_path.exists():
                recorded = stack.Stack(directory, args.binary)
                before = stack.descendants(recorded.recorded_pids())
            down = run(stack_cmd + ["down", "--purge"], env, 300)
            print(down.stderr, end="", file=sys.stderr)
            left = sorted(p for p in before if stack.alive(p)) + stack.marked_processes(directory)
            check(down.returncode == 0, "stack down", down.stderr[-1500:])
            check(bool(before) and not left, f"no process left after down (of {len(before)} in the stack's trees)",
                  str(left))
            check(not stack.port_in_use(8788), "port 8788 free after down")
            check(not directory.exists(), "stack directory removed (down --purge)")

    print(f"{LABEL}: {'FAILED: ' + str(len(failures)) + ' check(s)' if failures else 'all checks passed'}"
          f" in {time.monotonic() - t0:.1f} s")
    return 1 if failures else 0


# ---- the compose target ------------------------------------------------------------------------

def docker_cmd() -> list[str]:
    return ["/usr/bin/docker"] if Path("/usr/bin/docker").exists() else ["docker"]


def project_of(env: dict) -> str:
    return env.get("SOMA_COMPOSE_PROJECT", "soma-ml")


def containers_of(env: dict) -> dict[str, dict]:
    """service -> {name, state, health, restarts, pid, image} for the check's compose project."""
    ids = subprocess.run(docker_cmd() + ["ps", "-a", "-q", "--filter",
                                         f"label=com.docker.compose.project={project_of(env)}"],
                         capture_output=True, text=True, timeout=30).stdout.split()
    if not ids:
        return {}
    found = {}
    for item in json.loads(subprocess.run(docker_cmd() + ["inspect", *ids], capture_output=True, text=True,
                                          timeout=30).stdout):
        service = item["Config"]["Labels"].get("com.docker.compose.service", "?")
        found[service] = {"name": item["Name"].lstrip("/"), "state": item["State"]["Status"],
                          "health": (item["State"].get("Health") or {}).get("Status", "none"),
                          "restarts": item.get("RestartCount", 0), "pid": item["State"].get("Pid", 0),
                          "image": item["Config"]["Image"], "started": item["State"].get("StartedAt")}
    return found


def container_of(state: dict, service: str) -> str:
    env = {"SOMA_COMPOSE_PROJECT": state["project"]}
    return containers_of(env)[service]["name"]


def listening_addresses() -> list[str]:
    """Local addresses of every listening TCP socket owned by a process of a Docker container."""
    shims = [pid for pid in stack.parents() if "containerd-shim" in " ".join(stack.cmdline(pid))]
    owned = stack.descendants(shims) - set(shims)
    out = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True, timeout=30).stdout
    addresses = []
    for line in out.splitlines():
        pids = {int(m) for m in re.findall(r"pid=(\d+)", line)}
        if pids & owned:
            addresses.append(line.split()[3])
    return addresses


class Load:
    """A steady background load through nginx while a fault happens: THREADS threads, each sending
    RATE analyses a second (one in four on a new text) for 100 users; every request is recorded
    with its send time and status (or the error), so a fault's window can be read off afterwards."""

    def __init__(self, gateway: str, threads: int = 4, rate: float = 8.0):
        self.gateway, self.threads, self.interval = gateway, threads, 1.0 / rate
        self.records: list[tuple[float, object, float]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.workers: list[threading.Thread] = []

    def _run(self, index: int) -> None:
        n = 0
        next_at = time.monotonic()
        while not self.stopping.is_set():
            n += 1
            text = (f"Load text {n % 40}: the train was late again and I am tired of it." if n % 4
                    else f"New text {index}-{n}-{time.monotonic_ns()}: a quiet day at the lake.")
            sent = time.monotonic()
            try:
                status = request(f"{self.gateway}/v1/analyze", {"text": text},
                                 {"X-User-Id": f"compose-load-{(index * 31 + n) % 100}"}, timeout=10)[0]
            except Exception as error:  # noqa: BLE001  (a failed request is a record, not a crash)
                status = type(error).__name__
            with self.lock:
                self.records.append((sent, status, time.monotonic() - sent))
            next_at += self.interval
            self.stopping.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> "Load":
        self.workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)]
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for worker in self.workers:
            worker.join(timeout=15)

    def between(self, start: float, end: float) -> list[tuple[float, object, float]]:
        with self.lock:
            return [r for r in self.records if start <= r[0] <= end]

    @staticmethod
    def summary(records: list) -> str:
        codes: dict = {}
        for _, status, _ in records:
            codes[status] = codes.get(status, 0) + 1
        latencies = sorted(r[2] for r in records)
        p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else 0
        worst = latencies[-1] * 1000 if latencies else 0
        return f"{len(records)} requests {dict(sorted(codes.items(), key=str))}, p99 {p99:.0f} ms, max {worst:.0f} ms"


def compose_kill(state: dict, gateway: str, env: dict) -> None:
    """An instance crashes (its process SIGKILLed from the host, as the kernel's OOM killer would):
    nginx answers every request meanwhile, the restart policy brings the instance back, and it takes
    traffic again. (`docker kill` is not a crash to Docker: it marks the container as stopped by
    the operator, and no restart policy restarts it; replacing such an instance is a supervisor's
    job.)"""
    victim = state["instances"][1]
    service = victim["service"]
    before = containers_of(env)[service]
    killed_at = time.monotonic()
    try:
        os.kill(before["pid"], signal.SIGKILL)
        check(True, f"{before['name']} crashed: its process (host pid {before['pid']}) SIGKILLed")
    except OSError as error:
        check(False, f"SIGKILL to {before['name']}'s process", str(error))
    codes = [request(f"{gateway}/v1/analyze", {"text": f"Request {n} while an instance is gone."},
                     {"X-User-Id": f"kill-{n % 10}"})[0] for n in range(30)]
    check(codes.count(200) == 30, "an instance killed: 30 of 30 analyses through nginx answered 200 (retried)",
          str(codes))
    back = stack.wait_until(lambda: containers_of(env)[service]["restarts"] > before["restarts"]
                            and stack.http_status(f"{victim['url']}/ready") == 200, 90, 0.2)
    seconds = time.monotonic() - killed_at
    check(back, f"the killed instance is back by its restart policy (restart: unless-stopped), ready "
          f"{seconds:.1f} s after the kill", json.dumps(containers_of(env).get(service)))

    def served() -> float:
        try:
            with urllib.request.urlopen(f"{victim['url']}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        return sum(float(m) for m in re.findall(r'^soma_http_requests_total\{[^}]*route="/v1/analyze"[^}]*\} (\S+)',
                                                 text, re.M))
    # nginx's passive check: after max_fails failures the server sits out fail_timeout (30 s in
    # deploy/nginx-upstreams*.conf) before it gets requests again.
    start, sent, rejoined = served(), 0, None
    while time.monotonic() - killed_at < 60 and rejoined is None:
        for n in range(10):
            sent += 1
            request(f"{gateway}/v1/analyze", {"text": f"After the restart {sent}."}, {"X-User-Id": f"kill-{n}"})
        if served() > start:
            rejoined = time.monotonic() - killed_at
        else:
            time.sleep(1)
    check(rejoined is not None, f"the restarted instance takes traffic again through nginx, "
          f"{rejoined or 0:.0f} s after the kill (nginx's fail_timeout is 30 s; {served() - start:.0f} of the "
          f"{sent} analyses sent since)")


def compose_faults(state: dict, gateway: str, env: dict, stack_cmd: list[str]) -> None:
    docker = docker_cmd()
    containers = containers_of(env)
    with Load(gateway) as load:
        time.sleep(3)
        base = load.between(0, time.monotonic())
        check(bool(base) and all(s == 200 for _, s, _ in base), f"background load before any fault: {Load.summary(base)}")

        # Redis paused (hung, not stopped): every analysis answered from the fallbacks.
        name = containers["redis"]["name"]
        start = time.monotonic()
        try:
            run(docker + ["pause", name], env, 30)
            time.sleep(12)
        finally:
            run(docker + ["unpause", name], env, 30)
        end = time.monotonic()
        time.sleep(3)
        during = load.between(start, end)
        check(bool(during) and all(s == 200 for _, s, _ in during),
              f"Redis paused 12 s: every analysis answered ({Load.summary(during)})")

        # PostgreSQL paused: analyses answered, entries queued (202) and all present exactly once after.
        name = containers["postgres"]["name"]
        user = f"compose-entries-{int(time.time())}"
        acknowledged: list[str] = []
        statuses: list = []
        start = time.monotonic()
        try:
            run(docker + ["pause", name], env, 30)
            for n in range(20):
                code, _, body = request(f"{gateway}/v1/entries", {"text": f"Entry {n} written while the database is paused."},
                                        {"X-User-Id": user, "Idempotency-Key": f"{user}-{n}"}, timeout=15)
                statuses.append(code)
                if code in (201, 202):
                    acknowledged.append(json.loads(body)["entry"]["id"])
                time.sleep(0.4)
        finally:
            run(docker + ["unpause", name], env, 30)
        end = time.monotonic()
        during = load.between(start, end)
        check(bool(during) and all(s == 200 for _, s, _ in during),
              f"PostgreSQL paused {end - start:.0f} s: every analysis answered ({Load.summary(during)})")
        check(len(acknowledged) == 20, f"PostgreSQL paused: 20 of 20 entries acknowledged "
              f"({statuses.count(202)} queued with 202, {statuses.count(201)} stored with 201)", str(statuses))

        def listed() -> list[str]:
            ids, cursor = [], None
            for _ in range(20):
                query = "limit=200" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
                code, _, body = request(f"{gateway}/v1/entries?{query}", headers={"X-User-Id": user})
                if code != 200:
                    return []
                page = json.loads(body)
                ids += [e["id"] for e in page["entries"]]
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            return ids
        stack.wait_until(lambda: len(listed()) >= len(acknowledged), 60, 1)
        found = listed()
        check(sorted(found) == sorted(acknowledged) and len(set(found)) == len(found),
              f"after the pause every acknowledged entry is in PostgreSQL exactly once "
              f"({len(found)} listed, {len(set(found))} distinct, {len(acknowledged)} acknowledged)")

        # A rolling update to a new image tag, one instance at a time.
        current = state["images"]["soma"]
        new_tag = current.split(":")[0] + ":rollout-" + str(int(time.time()))
        built = subprocess.run(docker + ["build", "-q", "-t", new_tag, "-"], input=f"FROM {current}\nLABEL "
                               f"soma.rollout={new_tag.split(':')[1]}\n", capture_output=True, text=True, timeout=120,
                               env=dict(env, DOCKER_BUILDKIT="1"))
        check(built.returncode == 0, f"a new soma image {new_tag} (a new image id)", built.stderr[-500:])
        start = time.monotonic()
        rollout = run(stack_cmd + ["rollout", new_tag], env, 600)
        end = time.monotonic()
        time.sleep(2)
        during = load.between(start, end)
        images = {s: c["image"] for s, c in containers_of(env).items() if s.startswith("ml-")}
        check(rollout.returncode == 0 and set(images.values()) == {new_tag},
              f"rolling update in {end - start:.0f} s: every instance on {new_tag}", rollout.stderr[-1500:] + str(images))
        check(bool(during) and all(s == 200 for _, s, _ in during),
              f"rolling update: every analysis answered ({Load.summary(during)})")

        # What `soma autoscale --stack compose` does: scale 3 -> 4 -> 3 on the recorded images (the
        # rollout's tag by now).
        for count in (4, 3):
            start = time.monotonic()
            rescale = run(stack_cmd + ["scale", "--instances", str(count)], env, 300)
            end = time.monotonic()
            time.sleep(2)
            during = load.between(start, end)
            described = json.loads(run(stack_cmd + ["instances", "--json"], env, 60).stdout or "{}")
            urls = [i["url"] for i in described.get("instances", [])]
            check(rescale.returncode == 0 and len(urls) == count
                  and all(stack.http_status(f"{u}/ready") == 200 for u in urls),
                  f"scale to {count} instances in {end - start:.1f} s (every one ready)", rescale.stderr[-1500:])
            check(all(s == 200 for _, s, _ in during), f"scale to {count}: every analysis answered ({Load.summary(during)})")
        # Only now: the instances run on it (scale used it too); `down --purge` would leave it.
        subprocess.run(docker + ["rmi", "-f", new_tag], capture_output=True, timeout=60)
    total = load.between(0, time.monotonic())
    print(f"{LABEL}: note background load over the faults: {Load.summary(total)}", flush=True)


def compose_down(state_path: Path, directory: Path, env: dict, stack_cmd: list[str]) -> None:
    before = containers_of(env)
    pids = stack.descendants([c["pid"] for c in before.values() if c["pid"]])
    down = run(stack_cmd + ["down", "--purge"], env, 600)
    print(down.stderr, end="", file=sys.stderr)
    check(down.returncode == 0, "compose down --purge", down.stderr[-1500:])
    label = f"label=com.docker.compose.project={project_of(env)}"
    left = {kind: subprocess.run(docker_cmd() + [kind, "ls", "-q", "--filter", label] if kind != "container"
                                 else docker_cmd() + ["ps", "-a", "-q", "--filter", label],
                                 capture_output=True, text=True, timeout=30).stdout.split()
            for kind in ("container", "volume", "network")}
    check(not any(left.values()), "no container, volume or network of the project left", str(left))
    alive = sorted(p for p in pids if stack.alive(p))
    check(bool(pids) and not alive, f"no process of the stack's containers left (of {len(pids)})", str(alive))
    check(not stack.port_in_use(8788), "port 8788 free after down")
    check(not directory.exists(), "state directory removed (down --purge)")


def time_of(stamp: str) -> float:
    """Prometheus' RFC 3339 timestamps (nanoseconds, Z or offset) as Unix seconds."""
    from datetime import datetime
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


if __name__ == "__main__":
    sys.exit(main())
