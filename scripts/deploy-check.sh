#!/usr/bin/env bash
# Static validation of the deployment files under deploy/ (a phase of `make ci`). Nothing is
# started: no containers, no cluster. Every check runs even when an earlier one failed; the exit
# status is 1 when any check failed.
#
#   scripts/deploy-check.sh [--binary PATH]
#
#   --binary PATH  a soma binary built the way deploy/Dockerfile builds it
#                  (swift build -c release --product soma --static-swift-stdlib); its shared
#                  libraries are checked against the runtime stage's apt-get install list.
#                  Without it that check is skipped with a loud note, and fails under CI=true.
#
# Checks:
#   prometheus    promtool check config / check rules / test rules; amtool check-config
#   compose       docker-compose-ml.yml against the compose-spec schema vendored by
#                 check-jsonschema, then assertions on services, healthchecks, environment,
#                 volumes, resources, dependencies and mounted files
#   k8s           deploy/k8s/*.yaml with kubernetes-validate --strict (Kubernetes $K8S_VERSION,
#                 offline), then assertions on the HPA, the StatefulSet, the PDB and the Services
#   dockerfile    stages, build command, non-root USER, HEALTHCHECK; with --binary: ldd of the
#                 binary, every library mapped to its Debian package (dpkg -S) and that package
#                 required to be in the Depends/Pre-Depends closure of the runtime stage's list
#
# Needs: Debian packages from `scripts/ensure-deps.sh deploy` (prometheus, prometheus-alertmanager,
# python3-venv) and the PyPI tools below, installed into .venv-deploy (created when missing).
# Output: one `deploy-check: ok WHAT` / `deploy-check: FAIL WHAT: WHY` line per check (details
# indented under it), then `deploy-check: N passed, N failed, N skipped`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CHECK_JSONSCHEMA_VERSION=0.39.0
KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_VERSION=1.33.0
VENV="$ROOT/.venv-deploy"
STATE_DIR=/var/lib/soma
# stdlib-only inline python runs on Debian's python3; the venv is created from it too
if [[ -x /usr/bin/python3 ]]; then SYS_PY=/usr/bin/python3; else SYS_PY=python3; fi

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
binary=""
while (($#)); do
  case "$1" in
    --binary) [[ $# -ge 2 ]] || { echo "deploy-check: --binary needs a PATH" >&2; exit 2; }
              binary="$2"; shift 2 ;;
    --binary=*) binary="${1#--binary=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "deploy-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

t_start=$SECONDS
passed=0 failed=0 skipped=0
ok()   { passed=$((passed + 1));   echo "deploy-check: ok $1"; }
fail() { failed=$((failed + 1));   echo "deploy-check: FAIL $1: $2"; }
skip() { skipped=$((skipped + 1)); echo "deploy-check: SKIP $1: $2"; }
indent() { sed 's/^/      | /'; }

# reason_of OUTPUT: the lines of a tool's output that say what is wrong (first 3, deduplicated,
# consequences last), joined on one line; else its last non-empty line.
REASON_PY='
import re, sys
lines = [l.strip() for l in sys.stdin.read().splitlines() if l.strip()]
generic = re.compile(r"^(Checking\s+\S+$|Unit Testing:|SUCCESS|INFO |Schema validation errors were encountered|amtool: error: failed to validate)")
key = re.compile(r"fail|error|invalid|unknown|not found|does not|not allowed|unexpected|required|cannot|unable|missing|mismatch|alertname:", re.I)
picked, skip = [], False
for i, l in enumerate(lines):
    if skip:
        skip = False; continue
    l = re.sub(r"^Checking\s+\S+\s+(?=FAILED)", "", l)
    if re.fullmatch(r"FAILED:?", l) and i + 1 < len(lines):
        l, skip = "FAILED: " + lines[i + 1].rstrip(", "), True
    if key.search(l) and not generic.match(l) and l not in picked:
        picked.append(l)
picked.sort(key=lambda l: "Unevaluated properties" in l)
r = "; ".join(picked[:3]) + (f" (+{len(picked) - 3} more, below)" if len(picked) > 3 else "")
r = r or (lines[-1] if lines else "no output")
print(r if len(r) <= 500 else r[:500] + "...")
'
reason_of() { "$SYS_PY" -c "$REASON_PY" <<<"$1"; }

# run_tool WHAT CMD...: ok when CMD exits 0, else FAIL with the reason and the full output indented.
run_tool() {
  local what="$1" out rc; shift
  if ! command -v "$1" >/dev/null 2>&1; then fail "$what" "$1 not found"; return; fi
  out=$("$@" 2>&1) && rc=0 || rc=$?
  if ((rc == 0)); then ok "$what"; else fail "$what" "exit $rc: $(reason_of "$out")"; indent <<<"$out"; fi
}

# run_py WHAT PYTHON [ARGS...] < program: the program prints protocol lines
#   ok<TAB>WHAT | FAIL<TAB>WHAT<TAB>WHY | SKIP<TAB>WHAT<TAB>WHY | anything else = detail line
# and exits 0; a non-zero exit (a crash) is a failure of WHAT.
run_py() {
  local what="$1" out rc line kind w why n_fail=0; shift
  out=$("$@" 2>&1) && rc=0 || rc=$?
  while IFS= read -r line; do
    IFS=$'\t' read -r kind w why <<<"$line" || true
    case "$kind" in
      ok)   ok "$w" ;;
      FAIL) fail "$w" "$why"; n_fail=$((n_fail + 1)) ;;
      SKIP) skip "$w" "$why" ;;
      *)    [[ -z "$line" ]] || printf '      %s\n' "$line" ;;
    esac
  done <<<"$out"
  if ((rc != 0)); then fail "$what" "assertion program exited $rc (see the traceback above)"; fi
}

echo "deploy-check: validating $ROOT/deploy"

# ---- tools -------------------------------------------------------------------------------------
if deps_out=$(scripts/ensure-deps.sh deploy 2>&1); then
  [[ -z "$deps_out" ]] || indent <<<"$deps_out"
else
  fail "tools: Debian packages" "scripts/ensure-deps.sh deploy failed: $(reason_of "$deps_out")"
  indent <<<"$deps_out"
fi

venv_ready() {
  "$VENV/bin/python" - "$CHECK_JSONSCHEMA_VERSION" "$KUBERNETES_VALIDATE_VERSION" <<'PY' >/dev/null 2>&1
import importlib.metadata as m, sys
sys.exit(0 if (m.version("check-jsonschema"), m.version("kubernetes-validate")) == tuple(sys.argv[1:3]) else 1)
PY
  [[ -x "$VENV/bin/check-jsonschema" && -x "$VENV/bin/kubernetes-validate" ]]
}
if ! venv_ready; then
  echo "deploy-check: installing check-jsonschema==$CHECK_JSONSCHEMA_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $VENV"
  venv_log=$(
    { [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null \
        || "$SYS_PY" -m venv --clear "$VENV"; } 2>&1 &&
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
      "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" 2>&1
  ) || true
  if ! venv_ready; then
    fail "tools: PyPI venv" "could not install check-jsonschema==$CHECK_JSONSCHEMA_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $VENV"
    indent <<<"$venv_log"
  fi
fi
version_of() { command -v "$1" >/dev/null 2>&1 && "$1" --version 2>&1 | head -n 1 | grep -o -E '[0-9]+\.[0-9]+\.[0-9]+' | head -n 1 || echo missing; }
echo "deploy-check: tools: promtool $(version_of promtool), amtool $(version_of amtool)," \
  "check-jsonschema $CHECK_JSONSCHEMA_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION (Kubernetes $K8S_VERSION schemas)"
PATH="$VENV/bin:$PATH"

# ---- 1. Prometheus and Alertmanager --------------------------------------------------------------
prom_config_check() {
  local what="prometheus: promtool check config deploy/prometheus/prometheus.yml" out rc missing
  if ! command -v promtool >/dev/null; then fail "$what" "promtool not found"; return; fi
  out=$(promtool check config deploy/prometheus/prometheus.yml 2>&1) && rc=0 || rc=$?
  # a file_sd file that does not exist is only a WARNING for promtool; Prometheus would scrape nothing
  missing=$(grep -E 'WARNING: file .* does not exist' <<<"$out" | sed -E 's/^[[:space:]]+//' | paste -sd ';' - || true)
  if ((rc != 0)); then fail "$what" "exit $rc: $(reason_of "$out")"; indent <<<"$out"
  elif [[ -n "$missing" ]]; then fail "$what" "${missing//;/; }"; indent <<<"$out"
  else ok "$what"; fi
}
prom_config_check
run_tool "prometheus: promtool check rules deploy/prometheus/alerts.yml" promtool check rules deploy/prometheus/alerts.yml
run_tool "prometheus: promtool test rules deploy/prometheus/alerts_test.yml" promtool test rules deploy/prometheus/alerts_test.yml
run_tool "alertmanager: amtool check-config deploy/alertmanager/alertmanager.yml" amtool check-config deploy/alertmanager/alertmanager.yml
# Routing: every severity the alerts use reaches the receiver of that name; no severity -> ticket.
am_route() {  # am_route EXPECTED_RECEIVER LABEL=VALUE...
  local expected="$1"; shift
  run_tool "alertmanager: {$(IFS=,; echo "$*")} routes to receiver $expected" \
    amtool config routes test --config.file=deploy/alertmanager/alertmanager.yml --verify.receivers="$expected" "$@"
}
severities=$(sed -n -E 's/^[[:space:]]+severity:[[:space:]]*"?([a-z]+)"?[[:space:]]*$/\1/p' deploy/prometheus/alerts.yml | sort -u)
if [[ "$severities" == $'page\nticket' ]]; then ok "prometheus: alerts use the severities page and ticket only"
else fail "prometheus: alerts use the severities page and ticket only" "found: $(echo $severities)"; fi
for severity in $severities; do am_route "$severity" severity="$severity" alertname=SomaRouteCheck job=soma; done
am_route ticket alertname=SomaRouteCheck job=soma

# ---- 1b. Grafana ---------------------------------------------------------------------------------
# The brief's six panels with their lines and colours, plus active users and model accuracy; the
# datasource uid the panels use is the provisioned one; the provider path is where compose mounts
# the dashboards. (The expressions themselves are evaluated live by scripts/stack-check.py.)
run_py "grafana: assertions" "$VENV/bin/python" - <<'PY'
import json, re, sys, yaml
ok = lambda w: print(f"ok\t{w}")
bad = lambda w, why: print(f"FAIL\t{w}\t{why}")
d = json.load(open("deploy/grafana/dashboards/soma.json"))
panels = {p["title"]: p for p in d["panels"]}
def steps(p):
    return [(s["color"], s["value"]) for s in p.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])]
def exprs(p):
    return [t.get("expr", "") for t in p.get("targets", [])]
def want(title, predicate, what):
    p = next((p for t, p in panels.items() if t.startswith(title)), None)
    if p is None:
        bad(f"grafana: panel '{title}'", f"missing (panels: {sorted(panels)})"); return
    why = predicate(p)
    (ok(f"grafana: panel '{p['title']}': {what}") if not why else bad(f"grafana: panel '{p['title']}'", why))
def line(p):
    return p.get("fieldConfig", {}).get("defaults", {}).get("custom", {}).get("thresholdsStyle", {}).get("mode") in ("line", "line+area", "dashed")
want("Latency", lambda p: None if sorted(re.findall(r"histogram_quantile\((0\.\d+)", " ".join(exprs(p)))) == ["0.5", "0.95", "0.99"]
     and ("red", 0.2) in steps(p) and line(p) and p["fieldConfig"]["defaults"].get("unit") == "s"
     else f"want p50/p95/p99 and a 0.2 s red line, got {exprs(p)} {steps(p)}", "p50/p95/p99, 200 ms line")
want("Throughput", lambda p: None if any('"class"' in e and "xx" in e for e in exprs(p)) else f"no status class: {exprs(p)}",
     "by status class")
want("Instance health", lambda p: None if {(c, v) for c, v in steps(p)} >= {("red", None), ("yellow", 1), ("green", 2)}
     and "up{" in " ".join(exprs(p)) and "soma_instance_status" in " ".join(exprs(p))
     else f"want red/yellow/green from up and soma_instance_status, got {steps(p)}", "green/yellow/red from up and soma_instance_status")
want("Cache hit", lambda p: None if p["type"] == "gauge" and "soma_cache_requests_total" in " ".join(exprs(p)) else "not a gauge on soma_cache_requests_total",
     "gauge")
want("Error rate", lambda p: None if ("red", 0.05) in steps(p) and line(p) else f"want a 5 % red line, got {steps(p)}", "5 % line")
for title, metric in (("CPU", "process_cpu_seconds_total"), ("Memory", "process_resident_memory_bytes"),
                      ("Disk", "soma_state_dir_bytes"), ("Active users", "soma_active_users"), ("Model accuracy", "soma_model_accuracy")):
    want(title, lambda p, m=metric: None if m in " ".join(exprs(p)) else f"does not query {m}", f"per instance from {metric}")
uids = {t.get("datasource", {}).get("uid") for p in d["panels"] for t in p.get("targets", [])} | {p.get("datasource", {}).get("uid") for p in d["panels"]}
uids.discard(None)
sources = yaml.safe_load(open("deploy/grafana/provisioning/datasources/prometheus.yml"))["datasources"]
provisioned = {s.get("uid") for s in sources}
(ok(f"grafana: the panels' datasource uid {sorted(uids)} is provisioned") if uids and uids <= provisioned
 else bad("grafana: datasource uid", f"panels use {sorted(uids)}, provisioned {sorted(provisioned)}"))
providers = yaml.safe_load(open("deploy/grafana/provisioning/dashboards/soma.yml"))["providers"]
compose = yaml.safe_load(open("deploy/docker-compose-ml.yml"))
mounts = [v.split(":")[1] for v in compose["services"]["grafana"].get("volumes", []) if v.startswith("./grafana/dashboards:")]
path = providers[0]["options"]["path"]
(ok(f"grafana: the dashboard provider reads {path}, where compose mounts grafana/dashboards") if path in mounts
 else bad("grafana: dashboard provider path", f"{path} is not the compose mount {mounts}"))
PY

# ---- 2. Compose ----------------------------------------------------------------------------------
run_tool "compose: deploy/docker-compose-ml.yml matches the compose-spec schema (check-jsonschema vendor.compose-spec)" \
  check-jsonschema --builtin-schema vendor.compose-spec deploy/docker-compose-ml.yml

run_py "compose: assertions" "$VENV/bin/python" - deploy/docker-compose-ml.yml "$STATE_DIR" "$binary" <<'PY'
import os, re, shlex, subprocess, sys, tempfile

path, state_dir, binary = sys.argv[1], sys.argv[2], sys.argv[3]
deploy_dir = os.path.dirname(path)

def ok(what): print(f"ok\tcompose: {what}")
def fail(what, why): print(f"FAIL\tcompose: {what}\t{why}")

# Parse with check-jsonschema's own loader (ruamel.yaml, safe): the schema check above saw exactly
# this data, so it is what must have its anchors and merge keys resolved.
try:
    from check_jsonschema.parsers.yaml import construct_yaml_implementation, impl2loader
    load = impl2loader(construct_yaml_implementation(), construct_yaml_implementation(pure=True))
    loader = "check-jsonschema's loader"
except ImportError:
    import ruamel.yaml
    load = lambda f: ruamel.yaml.YAML(typ="safe", pure=True).load(f)
    loader = "ruamel.yaml (safe)"
with open(path, "rb") as f:
    doc = load(f)

# -- anchors / merge keys
def merge_keys_left(node, at="$"):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "<<":
                yield at
            yield from merge_keys_left(v, f"{at}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from merge_keys_left(v, f"{at}[{i}]")

services = doc.get("services") or {}
ml = sorted((n for n in services if re.fullmatch(r"ml-\d+", n)), key=lambda n: int(n[3:]))
left = list(merge_keys_left(doc))
common, envcommon = doc.get("x-ml-common") or {}, doc.get("x-ml-env") or {}
missing = [f"{n}.{k}" for n in ml for k in common if k not in services[n]]
missing += [f"{n}.environment.{k}" for n in ml for k in envcommon
            if not isinstance(services[n].get("environment"), dict) or k not in services[n]["environment"]]
if left:
    fail("anchors and merge keys resolved", f"{loader} left '<<' keys at {', '.join(left)}")
elif missing:
    fail("anchors and merge keys resolved", f"keys of x-ml-common / x-ml-env not merged into: {', '.join(missing)}")
else:
    ok(f"anchors and merge keys resolved by {loader} (x-ml-common/x-ml-env merged into {', '.join(ml) or 'no ml-N'})")

# -- helpers
def env_of(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, sep, v = str(item).partition("=")
            out[k] = v if sep else None
        return out
    return dict(env)

def volumes_of(svc):
    """[(type, source, target)] for short and long syntax."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            src, tgt = v.get("source"), v.get("target")
            typ = v.get("type") or ("bind" if src and str(src)[0] in "./~" else "volume")
        else:
            parts = str(v).split(":")
            if len(parts) == 1:
                src, tgt, typ = None, parts[0], "volume"
            else:
                src, tgt = parts[0], parts[1]
                typ = "bind" if src[:1] in (".", "/", "~") else "volume"
        out.append((typ, src, tgt))
    return out

def depends_of(svc):
    d = svc.get("depends_on") or {}
    if isinstance(d, list):
        return {n: "service_started" for n in d}
    return {n: (c or {}).get("condition", "service_started") for n, c in d.items()}

def words(cmd):
    if cmd is None:
        return []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]

# -- services
need = ["nginx-lb", "redis", "postgres", "prometheus", "alertmanager", "grafana", "migrate"]
absent = [n for n in need if n not in services]
if len(ml) < 3:
    absent.append(f"ml-N (need >= 3, found {len(ml)}: {', '.join(ml) or 'none'})")
if absent:
    fail("required services", f"missing {', '.join(absent)}")
else:
    ok(f"required services present ({', '.join(need[:1] + ml + need[1:])})")

# -- healthchecks
bad = []
long_running = [n for n in services if n != "migrate"]
for n in long_running:
    hc = services[n].get("healthcheck")
    if not isinstance(hc, dict):
        bad.append(f"{n}: no healthcheck"); continue
    if hc.get("disable") is True:
        bad.append(f"{n}: healthcheck.disable is true"); continue
    t = hc.get("test")
    if t is None or t == [] or t == "":
        bad.append(f"{n}: healthcheck has no test"); continue
    if isinstance(t, list) and t[0] == "NONE":
        bad.append(f"{n}: healthcheck test is [\"NONE\"] (disabled)"); continue
    if isinstance(t, list) and (t[0] not in ("CMD", "CMD-SHELL") or len(t) < 2):
        bad.append(f"{n}: healthcheck test {t!r} does not start with CMD/CMD-SHELL and a command")
if bad:
    fail("healthchecks on every long-running service", "; ".join(bad))
else:
    ok(f"healthchecks on every long-running service ({len(long_running)}: all but migrate)")

# -- ml-N environment, state volume, resources
bad, ids = [], {}
for n in ml:
    env = env_of(services[n])
    for k in ("REDIS_URL", "DATABASE_URL", "INSTANCE_ID"):
        if not env.get(k):
            bad.append(f"{n}: environment {k} missing or empty")
    if env.get("INSTANCE_ID"):
        ids.setdefault(str(env["INSTANCE_ID"]), []).append(n)
dups = {i: ns for i, ns in ids.items() if len(ns) > 1}
bad += [f"INSTANCE_ID {i!r} shared by {', '.join(ns)}" for i, ns in dups.items()]
if bad:
    fail("ml-N environment (REDIS_URL, DATABASE_URL, distinct INSTANCE_ID)", "; ".join(bad))
else:
    ok(f"ml-N environment: REDIS_URL, DATABASE_URL and distinct INSTANCE_IDs ({', '.join(ids)})")

# -- every ml-N environment through the service's own parser (`soma config check --env-file`):
# a bad value or an unknown SOMA_* name (a typo that would leave a default in force) fails here.
if binary:
    bad = []
    for n in ml:
        env = env_of(services[n])
        command = services[n].get("command") or []
        if isinstance(command, list) and "--host" in command[:-1]:
            env.setdefault("SOMA_HOST", command[command.index("--host") + 1])
        with tempfile.NamedTemporaryFile("w", suffix=".env", delete=False) as f:
            for k, v in env.items():
                if v is None:
                    # Pass-through: the tokens are set at deploy time (the instances refuse to start
                    # on 0.0.0.0 without one); other pass-throughs stay unset, as by default.
                    if not k.endswith("_TOKEN"):
                        continue
                    v = "set-at-deploy"
                # Interpolations get a stand-in.
                value = re.sub(r"\$\{[^}]*\}", "check", str(v))
                f.write(f"{k}={value}\n")
        r = subprocess.run([binary, "config", "check", "--env-file", f.name], capture_output=True, text=True, timeout=60)
        os.unlink(f.name)
        if r.returncode != 0:
            bad.append(f"{n}: " + " ".join(l for l in r.stdout.splitlines() if "invalid" in l or "unknown" in l or "error" in l.lower())[:300])
    if bad:
        fail("ml-N environment accepted by `soma config check`", "; ".join(bad))
    else:
        ok(f"ml-N environment accepted by `soma config check` ({', '.join(ml)})")

bad, sources, declared = [], {}, set((doc.get("volumes") or {}).keys())
for n in ml:
    st = [(typ, src) for typ, src, tgt in volumes_of(services[n]) if tgt == state_dir]
    if not st:
        bad.append(f"{n}: no volume mounted on {state_dir}"); continue
    typ, src = st[0]
    if src is None:
        bad.append(f"{n}: {state_dir} is an anonymous volume (lost on re-create)")
    elif typ == "volume" and src not in declared:
        bad.append(f"{n}: volume {src!r} is not declared under top-level volumes")
    if src is not None:
        sources.setdefault(src, []).append(n)
bad += [f"{', '.join(ns)} share the state volume {s!r}" for s, ns in sources.items() if len(ns) > 1]
if bad:
    fail(f"ml-N persistent volume on {state_dir}", "; ".join(bad))
else:
    ok(f"ml-N persistent volume on {state_dir}, one per instance ({', '.join(sources)})")

bad = []
for n in ml:
    res = ((services[n].get("deploy") or {}).get("resources") or {})
    for k in ("limits", "reservations"):
        if not res.get(k):
            bad.append(f"{n}: deploy.resources.{k} missing or empty")
if bad:
    fail("ml-N deploy.resources limits and reservations", "; ".join(bad))
else:
    r = (services[ml[0]].get("deploy") or {}).get("resources") if ml else {}
    ok(f"ml-N deploy.resources limits and reservations (e.g. {r.get('limits')} / {r.get('reservations')})" if ml
       else "ml-N deploy.resources (no ml-N service)")

# -- redis
if "redis" in services:
    w = words(services["redis"].get("command"))
    bad = [f"{flag} {val}" for flag, val in (("--maxmemory", "2gb"), ("--maxmemory-policy", "allkeys-lru"))
           if not any(w[i] == flag and w[i + 1] == val for i in range(len(w) - 1))]
    if bad:
        fail("redis command", f"command {' '.join(w) or '(none)'} lacks {' and '.join(bad)}")
    else:
        ok("redis command has --maxmemory 2gb --maxmemory-policy allkeys-lru")

# -- postgres: volume, password from the environment (and no literal password in any DATABASE_URL)
if "postgres" in services:
    bad = []
    pg = services["postgres"]
    if not volumes_of(pg):
        bad.append("postgres has no volume (data lost on re-create)")
    env = env_of(pg)
    ref = re.compile(r"\$\{POSTGRES_PASSWORD(?:[:]?\?[^}]*)?\}")
    pw = env.get("POSTGRES_PASSWORD")
    if "POSTGRES_PASSWORD" not in env:
        bad.append("postgres environment has no POSTGRES_PASSWORD")
    elif pw is None:
        pass  # `POSTGRES_PASSWORD:` passes the caller's value through
    elif not ref.fullmatch(str(pw)):
        bad.append(f"postgres POSTGRES_PASSWORD is {pw!r}, not ${{POSTGRES_PASSWORD}} / ${{POSTGRES_PASSWORD:?...}} "
                   "(a literal or a :- default puts a password in the file)")
    for n, svc in services.items():
        url = env_of(svc).get("DATABASE_URL")
        m = re.match(r"^[a-z]+://[^:/@]+:(.*)@", str(url or ""))
        if m and not ref.fullmatch(m.group(1)):
            bad.append(f"{n}: DATABASE_URL password is {m.group(1)!r}, not ${{POSTGRES_PASSWORD...}}")
    if bad:
        fail("postgres volume and password from the environment", "; ".join(bad))
    else:
        ok("postgres has a volume; its password (and every DATABASE_URL's) comes from ${POSTGRES_PASSWORD}")

# -- depends_on
bad = []
for a, targets in [("nginx-lb", ml)] + [(n, ["redis", "postgres"]) for n in ml]:
    if a not in services:
        continue
    d = depends_of(services[a])
    for b in targets:
        if d.get(b) != "service_healthy":
            bad.append(f"{a} -> {b}: " + (f"condition {d[b]}" if b in d else "no depends_on entry"))
if bad:
    fail("depends_on condition service_healthy (nginx-lb -> ml-N -> redis, postgres)", "; ".join(bad))
else:
    ok("depends_on condition service_healthy: nginx-lb -> ml-N, ml-N -> redis and postgres")

bad = [f"{a} -> {b}: no such service" for a, s in services.items() for b in depends_of(s) if b not in services]
state = {}
def cycle(n, stack):
    state[n] = 1
    for b in depends_of(services[n]):
        if b in services:
            if state.get(b) == 1:
                return stack + [n, b]
            if b not in state:
                c = cycle(b, stack + [n])
                if c:
                    return c
    state[n] = 2
for n in services:
    if n not in state:
        c = cycle(n, [])
        if c:
            bad.append("cycle " + " -> ".join(c)); break
if bad:
    fail("depends_on graph", "; ".join(bad))
else:
    ok("depends_on graph: every target exists, no cycle")

# -- files the services mount: the bind sources exist (./tls is created by the operator)
bad, notes, seen = [], [], 0
for n, svc in services.items():
    for typ, src, tgt in volumes_of(svc):
        if typ != "bind":
            continue
        seen += 1
        p = os.path.normpath(os.path.join(deploy_dir, os.path.expanduser(src)))
        if os.path.normpath(src) == "tls":
            notes.append(f"{n}: {src} -> {tgt} is created by the operator (see the header); "
                         + ("present here" if os.path.isdir(p) else "absent here (expected in CI)"))
        elif not os.path.exists(p):
            bad.append(f"{n}: bind source {src} ({p}) does not exist")
    b = svc.get("build")
    if isinstance(b, dict):
        ctx = os.path.normpath(os.path.join(deploy_dir, b.get("context", ".")))
        df = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
        if not os.path.isfile(df):
            bad.append(f"{n}: build dockerfile {df} does not exist")
if "nginx-lb" in services:
    tg = {tgt: src for _, src, tgt in volumes_of(services["nginx-lb"])}
    for tgt in ("/etc/nginx/nginx.conf", "/etc/nginx/soma-upstreams.conf", "/etc/nginx/tls"):
        if tgt not in tg:
            bad.append(f"nginx-lb: nothing mounted at {tgt}")
    up = tg.get("/etc/nginx/soma-upstreams.conf")
    if up:
        p = os.path.join(deploy_dir, up)
        if os.path.isfile(p):
            servers = re.findall(r"^\s*server\s+(\S+)", open(p).read(), re.M)
            want = [f"127.0.0.1:{env_of(services[n]).get('SOMA_PORT')}" for n in ml]
            if sorted(servers) != sorted(want):
                bad.append(f"{up} lists {servers}, expected one server per ml-N (its SOMA_PORT on loopback): {want}")
if bad:
    fail("mounted files and build context", "; ".join(bad))
else:
    ok(f"mounted files and build context exist ({seen} bind mounts; nginx upstreams = the ml-N services)")
for line in notes:
    print(f"note: {line}")

# -- host networking, one machine: every service on the host's network, nothing published (ports:
# cannot be combined with network_mode: host on Compose 1.29), internal listeners on loopback only,
# and no top-level `name:` (Compose 1.29 refuses it; the project name is given with -p).
bad = []
if "name" in doc:
    bad.append("top-level `name:` (Compose 1.29 rejects it; use -p soma-ml)")
for n, svc in services.items():
    if svc.get("network_mode") != "host":
        bad.append(f"{n}: network_mode is {svc.get('network_mode')!r}, not host")
    for key in ("ports", "expose", "networks"):
        if key in svc:
            bad.append(f"{n}: `{key}` (host networking publishes nothing)")
loopback = {"redis": ["--bind", "127.0.0.1"], "postgres": ["listen_addresses=127.0.0.1"],
            "prometheus": ["--web.listen-address=127.0.0.1:9090"], "alertmanager": ["--web.listen-address=127.0.0.1:9093"]}
for n, needed in loopback.items():
    w = words(services.get(n, {}).get("command"))
    if not all(x in w for x in needed):
        bad.append(f"{n}: command {' '.join(w)} does not bind loopback ({' '.join(needed)})")
if "--cluster.listen-address=" not in words(services.get("alertmanager", {}).get("command")):
    bad.append("alertmanager: the gossip port is not disabled (--cluster.listen-address=)")
if env_of(services.get("grafana", {})).get("GF_SERVER_HTTP_ADDR") != "127.0.0.1":
    bad.append("grafana: GF_SERVER_HTTP_ADDR is not 127.0.0.1")
ports = {}
for n in ml:
    e = env_of(services[n])
    if e.get("SOMA_HOST") != "127.0.0.1":
        bad.append(f"{n}: SOMA_HOST is {e.get('SOMA_HOST')!r}, not 127.0.0.1")
    ports.setdefault(str(e.get("SOMA_PORT")), []).append(n)
bad += [f"{', '.join(ns)} share SOMA_PORT {p_}" for p_, ns in ports.items() if len(ns) > 1 or p_ in ("None", "8788", "8443")]
import json as _json
targets = sorted(t_ for group in _json.load(open(os.path.join(deploy_dir, "prometheus/soma-targets.json")))
                 for t_ in group["targets"])
if targets != sorted(f"127.0.0.1:{env_of(services[n]).get('SOMA_PORT')}" for n in ml):
    bad.append(f"prometheus/soma-targets.json lists {targets}, not the ml-N loopback ports")
if bad:
    fail("host networking: network_mode host, nothing published, internal listeners on loopback", "; ".join(bad))
else:
    ok(f"host networking: {len(services)} services on network_mode host, nothing published, Redis, PostgreSQL, "
       f"Prometheus, Alertmanager, Grafana and {len(ml)} instances on loopback (distinct ports), targets = instances")
PY

# ---- 3. Kubernetes -------------------------------------------------------------------------------
shopt -s nullglob
k8s_files=(deploy/k8s/*.yaml)
shopt -u nullglob
if ((${#k8s_files[@]} == 0)); then
  fail "k8s: manifests" "no deploy/k8s/*.yaml"
else
  run_tool "k8s: kubernetes-validate --strict -k $K8S_VERSION (${#k8s_files[@]} files)" \
    kubernetes-validate --strict --quiet -k "$K8S_VERSION" "${k8s_files[@]}"
fi

run_py "k8s: assertions" "$VENV/bin/python" - "$STATE_DIR" "${k8s_files[@]}" <<'PY'
import re, sys
from decimal import Decimal
import ruamel.yaml

state_dir, files = sys.argv[1], sys.argv[2:]
def ok(what): print(f"ok\tk8s: {what}")
def fail(what, why): print(f"FAIL\tk8s: {what}\t{why}")

objs = []
for f in files:
    with open(f, "rb") as fh:
        for d in ruamel.yaml.YAML(typ="safe", pure=True).load_all(fh):
            if isinstance(d, dict):
                objs.append((f, d))
def of_kind(kind):
    return [(f, o) for f, o in objs if o.get("kind") == kind]
def name(o):
    return (o.get("metadata") or {}).get("name")

def quantity(v):
    """Kubernetes resource.Quantity (as used by HPA tolerance) -> Decimal."""
    if isinstance(v, bool) or v is None:
        raise ValueError(f"not a quantity: {v!r}")
    if isinstance(v, (int, float)):
        return Decimal(str(v))
    m = re.fullmatch(r"\s*([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?\s*", str(v))
    if not m:
        raise ValueError(f"not a quantity: {v!r}")
    num, exp, suf = m.groups()
    x = Decimal(num)
    if exp:
        x *= Decimal(10) ** int(exp)
    if suf:
        dec = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
        x *= (Decimal(10) ** dec[suf]) if suf in dec else Decimal(1024) ** ("KMGTPE".index(suf[0]) + 1)
    return x

# -- HPA
hpas = of_kind("HorizontalPodAutoscaler")
workload = None
if len(hpas) != 1:
    fail("HorizontalPodAutoscaler", f"expected exactly one, found {len(hpas)}")
else:
    f, h = hpas[0]
    spec = h.get("spec") or {}
    bad = []
    if h.get("apiVersion") != "autoscaling/v2":
        bad.append(f"apiVersion {h.get('apiVersion')!r}, expected autoscaling/v2")
    if spec.get("minReplicas") != 2:
        bad.append(f"minReplicas {spec.get('minReplicas')!r}, expected 2")
    if spec.get("maxReplicas") != 10:
        bad.append(f"maxReplicas {spec.get('maxReplicas')!r}, expected 10")
    cpu = [m for m in spec.get("metrics") or []
           if m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"]
    tgt = ((cpu[0].get("resource") or {}).get("target") or {}) if cpu else {}
    if not cpu:
        bad.append("no Resource metric on cpu")
    elif tgt.get("type") != "Utilization" or tgt.get("averageUtilization") != 70:
        bad.append(f"cpu target {tgt}, expected type Utilization averageUtilization 70")
    beh = spec.get("behavior") or {}
    for d, window, tol_ok, tol_text in (
        ("scaleUp", 300, lambda t: t == 0, "0"),
        ("scaleDown", 600, lambda t: Decimal(29) <= 70 * (1 - t) <= Decimal(31), "with 70*(1-t) in [29,31]"),
    ):
        r = beh.get(d)
        if not isinstance(r, dict):
            bad.append(f"behavior.{d} missing"); continue
        if r.get("stabilizationWindowSeconds") != window:
            bad.append(f"behavior.{d}.stabilizationWindowSeconds {r.get('stabilizationWindowSeconds')!r}, expected {window}")
        pols = r.get("policies") or []
        if r.get("selectPolicy") == "Disabled":
            bad.append(f"behavior.{d}.selectPolicy is Disabled")
        if not pols or any(p.get("type") != "Pods" or p.get("value") != 1 for p in pols):
            bad.append(f"behavior.{d}.policies {pols}, expected only type Pods value 1 (one pod per step)")
        if "tolerance" not in r:
            bad.append(f"behavior.{d}.tolerance missing, expected {tol_text}")
        else:
            try:
                t = quantity(r["tolerance"])
                if not tol_ok(t):
                    bad.append(f"behavior.{d}.tolerance {r['tolerance']!r} (70*(1-t) = {70 * (1 - t):.2f} %), expected {tol_text}")
            except ValueError as e:
                bad.append(f"behavior.{d}.tolerance: {e}")
    ref = spec.get("scaleTargetRef") or {}
    targets = [(wf, w) for wf, w in objs if w.get("kind") == ref.get("kind") and name(w) == ref.get("name")
               and w.get("apiVersion") == ref.get("apiVersion")]
    if not targets:
        bad.append(f"scaleTargetRef {ref.get('apiVersion')}/{ref.get('kind')}/{ref.get('name')} names no manifest")
    else:
        workload = targets[0][1]
    if bad:
        fail(f"HorizontalPodAutoscaler {name(h)} ({f})", "; ".join(bad))
    else:
        ok(f"HorizontalPodAutoscaler {name(h)}: autoscaling/v2, 2..10 replicas, cpu 70 %, windows 300/600 s, "
           f"1 pod per step, tolerance up {beh['scaleUp']['tolerance']} / down {beh['scaleDown']['tolerance']} "
           f"(scale down below {70 * (1 - quantity(beh['scaleDown']['tolerance'])):.1f} %), target {ref.get('kind')}/{ref.get('name')}")

# -- the workload
sts = of_kind("StatefulSet")
if workload is None and len(sts) == 1:
    workload = sts[0][1]
if workload is None or workload.get("kind") != "StatefulSet":
    fail("workload", f"the HPA must target the StatefulSet (found {len(sts)} StatefulSet(s): "
                     f"{', '.join(name(o) for _, o in sts) or 'none'})")
    workload = None
pod_labels = {}
if workload is not None:
    wname = name(workload)
    spec = workload.get("spec") or {}
    tmpl = spec.get("template") or {}
    pod_labels = (tmpl.get("metadata") or {}).get("labels") or {}
    pod = tmpl.get("spec") or {}
    cs = pod.get("containers") or []
    c = cs[0] if cs else {}
    bad = []
    vct = [name(v) for v in spec.get("volumeClaimTemplates") or []]
    mounts = {m.get("mountPath"): m.get("name") for m in c.get("volumeMounts") or []}
    if not vct:
        bad.append("no volumeClaimTemplates")
    elif mounts.get(state_dir) not in vct:
        bad.append(f"{state_dir} is mounted from {mounts.get(state_dir)!r}, not from a volumeClaimTemplate ({', '.join(vct)})")
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        got = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
        if got != path:
            bad.append(f"{probe} httpGet.path {got!r}, expected {path!r}")
    res = c.get("resources") or {}
    for k in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if not (res.get(k) or {}).get(r):
                bad.append(f"resources.{k}.{r} missing")
    pre = (c.get("lifecycle") or {}).get("preStop")
    sleep = None
    if not pre:
        bad.append("no lifecycle.preStop hook")
    elif "sleep" in pre:
        sleep = (pre.get("sleep") or {}).get("seconds")
    elif "exec" in pre:
        m = re.search(r"\bsleep\s+(\d+)", " ".join(map(str, (pre["exec"] or {}).get("command") or [])))
        sleep = int(m.group(1)) if m else 0
    else:
        sleep = 0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if pre and not (isinstance(sleep, int) and grace > sleep):
        bad.append(f"terminationGracePeriodSeconds {grace} is not > the preStop sleep {sleep}")
    if bad:
        fail(f"StatefulSet {wname}", "; ".join(bad))
    else:
        ok(f"StatefulSet {wname}: volumeClaimTemplate {mounts[state_dir]} on {state_dir}, liveness /health, "
           f"readiness /ready, requests+limits, preStop sleep {sleep} s < terminationGracePeriodSeconds {grace} s")

# -- PDB and Services (selecting the workload's pods)
def selects(sel):
    return bool(sel) and bool(pod_labels) and all(pod_labels.get(k) == v for k, v in sel.items())
for kind, sel_of in (("PodDisruptionBudget", lambda o: ((o.get("spec") or {}).get("selector") or {}).get("matchLabels")),
                     ("Service", lambda o: (o.get("spec") or {}).get("selector"))):
    found = of_kind(kind)
    if not found:
        fail(kind, f"no {kind} in {', '.join(files)}")
    elif pod_labels and not any(selects(sel_of(o)) for _, o in found):
        fail(kind, f"none of {', '.join(name(o) for _, o in found)} selects the workload's pod labels {pod_labels}")
    else:
        ok(f"{kind}: {', '.join(name(o) for _, o in found)}")
if workload is not None and workload.get("kind") == "StatefulSet":
    sn = (workload.get("spec") or {}).get("serviceName")
    gov = [o for _, o in of_kind("Service") if name(o) == sn]
    if not gov:
        fail("StatefulSet serviceName", f"{sn!r} names no Service")
    elif (gov[0].get("spec") or {}).get("clusterIP") != "None":
        fail("StatefulSet serviceName", f"Service {sn} is not headless (clusterIP: None)")
    else:
        ok(f"StatefulSet serviceName {sn} is a headless Service")
PY

# ---- 4. Dockerfile -------------------------------------------------------------------------------
# The same program does the structure checks and, with --binary, the runtime-library check.
dockerfile_py() {
  "$SYS_PY" - "$@" <<'PY'
import os, re, subprocess, sys

dockerfile, binary, ci = sys.argv[1], sys.argv[2], sys.argv[3].lower() in ("true", "1", "yes")
def ok(what): print(f"ok\tdockerfile: {what}")
def fail(what, why): print(f"FAIL\tdockerfile: {what}\t{why}")

# -- instructions (continuations joined, comments dropped) grouped into stages
insts, cur = [], ""
for raw in open(dockerfile).read().splitlines():
    line = raw.strip()
    if line.startswith("#"):
        continue                       # comment (also inside a continuation, as BuildKit does)
    if line.endswith("\\"):
        cur += line[:-1] + " "; continue
    cur += line
    if cur.strip():
        insts.append(cur.strip())
    cur = ""
if cur.strip():
    insts.append(cur.strip())
args = {}
stages = []                             # [{"from": line, "insts": [...]}]
for i in insts:
    kw = i.split(None, 1)[0].upper()
    if kw == "FROM":
        stages.append({"from": i, "insts": []})
    elif stages:
        stages[-1]["insts"].append(i)
    elif kw == "ARG":
        k, _, v = i.split(None, 1)[1].partition("=")
        args[k.strip()] = v.strip().strip('"')
def body(stage, kw):
    return [i.split(None, 1)[1] if len(i.split(None, 1)) > 1 else "" for i in stage["insts"]
            if i.split(None, 1)[0].upper() == kw]

if len(stages) >= 2:
    ok(f"{len(stages)} FROM stages: " + ", ".join(s["from"].split(None, 1)[1] for s in stages))
else:
    fail("multi-stage build", f"{len(stages)} FROM stage(s), expected a build and a runtime stage")

rt = [s for s in stages if re.fullmatch(r"FROM\s+\$\{RUNTIME_IMAGE\}\s+AS\s+runtime", s["from"], re.I)]
runtime = rt[0] if rt else None
if runtime is None:
    fail("runtime stage", "no `FROM ${RUNTIME_IMAGE} AS runtime` stage")
elif runtime is not stages[-1]:
    fail("runtime stage", "`FROM ${RUNTIME_IMAGE} AS runtime` is not the last (image) stage")
elif args.get("RUNTIME_IMAGE") != "debian:bookworm-slim":
    fail("runtime stage", f"ARG RUNTIME_IMAGE={args.get('RUNTIME_IMAGE')!r}, expected debian:bookworm-slim "
                          "(the library check maps packages on this Debian 12 host)")
else:
    ok("runtime stage `FROM ${RUNTIME_IMAGE} AS runtime` is last; RUNTIME_IMAGE=debian:bookworm-slim")

builds = [r for s in stages[:-1] for r in body(s, "RUN") if re.search(r"\bswift build\b", r)]
flags = ("-c release", "--product soma", "--static-swift-stdlib")
good = [r for r in builds if all(re.search(r"(?<!\S)" + re.escape(f) + r"(?!\S)", r) for f in flags)]
if good:
    ok("build stage runs swift build -c release --product soma --static-swift-stdlib")
else:
    fail("build command", "no build-stage RUN with `swift build " + " ".join(flags) + "`"
         + (f" (found: {builds[0][:160]})" if builds else ""))

final = stages[-1] if stages else {"insts": []}
users = body(final, "USER")
u = users[-1].split(":")[0].strip() if users else None
if u is None:
    fail("non-root USER", "the final stage has no USER instruction (runs as root)")
elif u in ("root", "0"):
    fail("non-root USER", f"the final stage's last USER is {users[-1]!r}")
else:
    ok(f"non-root USER {users[-1]}")
hcs = body(final, "HEALTHCHECK")
if not hcs:
    fail("HEALTHCHECK", "the final stage has no HEALTHCHECK")
elif hcs[-1].strip().upper() == "NONE":
    fail("HEALTHCHECK", "the final stage's HEALTHCHECK is NONE")
else:
    ok("HEALTHCHECK: " + re.sub(r"\s+", " ", hcs[-1])[:160])

# -- the runtime stage's apt-get install list
listed = []
for r in body(runtime, "RUN") if runtime else []:
    for m in re.finditer(r"apt-get\s+(?:-\S+\s+)*install\s+(.*?)(?:&&|;|\|\||$)", r):
        listed += [w for w in m.group(1).split() if not w.startswith("-")]
what = "runtime libraries (ldd of the binary vs the runtime stage's apt-get install list)"
if runtime is None:
    fail(what, "no runtime stage to read the package list from"); sys.exit(0)
if not listed:
    fail(what, "no `apt-get install` package list in the runtime stage"); sys.exit(0)
if not binary:
    if ci:
        fail(what, "no --binary PATH given (required under CI=true): build soma with "
                   "`swift build -c release --product soma --static-swift-stdlib` and pass it")
    else:
        print(f"SKIP\tdockerfile: {what}\tno --binary PATH given")
        print("!" * 100)
        print("!!  THE RUNTIME-LIBRARY CHECK DID NOT RUN: the Dockerfile's package list is unverified.")
        print("!!  Run  scripts/deploy-check.sh --binary PATH  with soma built as the Dockerfile builds it:")
        print("!!    swift build -c release --product soma --static-swift-stdlib  (under CI=true this fails)")
        print("!" * 100)
    sys.exit(0)
if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
    fail(what, f"--binary {binary}: not an executable file"); sys.exit(0)

# -- ldd, in the environment a container has (no LD_LIBRARY_PATH / LD_PRELOAD)
env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
p = subprocess.run(["ldd", binary], capture_output=True, text=True, env=env)
out = (p.stdout + p.stderr).strip()
if p.returncode != 0 or "not a dynamic executable" in out:
    fail(what, f"ldd {binary} exited {p.returncode}: {out.splitlines()[0] if out else 'no output'}"); sys.exit(0)
libs, missing, virtual = [], [], []
for line in out.splitlines():
    line = line.strip()
    m = re.match(r"^(\S+)\s+=>\s+not found", line)
    if m:
        missing.append(m.group(1)); continue
    m = re.match(r"^(\S+)\s+=>\s+(/\S+)\s+\(0x", line) or re.match(r"^((/\S+))\s+\(0x", line)
    if m:
        libs.append((os.path.basename(m.group(1)), m.group(2))); continue
    m = re.match(r"^(\S+)\s+\(0x", line)
    if m:
        virtual.append(m.group(1)); continue        # linux-vdso.so.1: provided by the kernel
    if line:
        missing.append(f"unparsed ldd line {line!r}")
problems = [f"{n} => not found" for n in missing]
system = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/")
outside = {}
for n, p in libs:
    if not p.startswith(system):
        outside.setdefault(os.path.dirname(p), []).append(n)
problems += [f"{', '.join(ns)} resolve from {d}, outside /lib and /usr/lib ("
             + ("the Swift runtime is not linked statically: build with --static-swift-stdlib)" if "swift" in d.lower()
                else "not from a Debian package)") for d, ns in outside.items()]

# -- library -> Debian package (dpkg -S; merged /usr: try /lib <-> /usr/lib and the real path)
def candidates(p):
    c = []
    for q in (p, os.path.realpath(p)):
        c.append(q)
        if q.startswith("/usr/lib/"):
            c.append(q[4:])
        elif q.startswith("/lib"):
            c.append("/usr" + q)
    return list(dict.fromkeys(c))
sys_libs = [(n, p) for n, p in libs if p.startswith(system)]
owners = {}                            # path -> [packages], from one `dpkg -S` over every candidate
r = subprocess.run(["dpkg", "-S", *sorted({q for _, p in sys_libs for q in candidates(p)})],
                   capture_output=True, text=True)
for line in r.stdout.splitlines():
    if line.startswith("diversion "):
        continue
    pkgs, sep, f = line.partition(": ")
    if sep:
        owners[f.strip()] = [x.strip().split(":")[0] for x in pkgs.split(",")]
lib_pkg = []
for n, p in sys_libs:
    pk = next((owners[q] for q in candidates(p) if q in owners), None)
    if pk is None:
        problems.append(f"{n} => {p}: no Debian package owns it (dpkg -S {' / '.join(candidates(p))})")
    lib_pkg.append((n, p, pk))

# -- closure of listed + libc6 under Depends / Pre-Depends (every alternative of `a | b`)
def split_deps(s):
    names = []
    for alt in re.split(r"[,|]", s):
        alt = re.sub(r"\(.*?\)|\[.*?\]|<.*?>", "", alt).strip()
        if alt:
            names.append(alt.split(":")[0])
    return names
from_apt = set()
def deps_of(pkgs):
    """{pkg: {dependency names}}: installed packages from dpkg-query, the others from apt-cache show
    (virtual packages have neither and end the chain)."""
    res = {}
    r = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${db:Status-Status}\t${Depends}, ${Pre-Depends}\n", *pkgs],
                       capture_output=True, text=True)
    for line in r.stdout.splitlines():
        pkg, status, deps = (line.split("\t") + ["", ""])[:3]
        if status == "installed":
            res.setdefault(pkg, set()).update(split_deps(deps))
    rest = [p for p in pkgs if p not in res]
    if rest:
        r = subprocess.run(["apt-cache", "show", "--no-all-versions", *rest], capture_output=True, text=True)
        for stanza in r.stdout.split("\n\n"):
            m = re.search(r"^Package:\s*(\S+)", stanza, re.M)
            if m and m.group(1) in rest:
                fields = re.findall(r"^(?:Depends|Pre-Depends):\s*(.*)$", stanza, re.M)
                res.setdefault(m.group(1), set()).update(split_deps(", ".join(fields)))
                from_apt.add(m.group(1))
    return res
reasons = {"ca-certificates": "TLS root certificates",
           "curl": "the HEALTHCHECK runs it"}
# Walk from the packages that are there for the binary first (so a library's chain names its real
# provider), then from the allow-listed extras.
roots = list(dict.fromkeys(listed + ["libc6"]))
via = {}                                # package -> the package whose Depends brought it in (None: root)
unresolved = []
for phase in ([r for r in roots if r not in reasons], [r for r in roots if r in reasons]):
    frontier = [r for r in phase if r not in via]
    via.update({r: None for r in frontier})
    while frontier:
        got = deps_of(frontier)
        unresolved += [f for f in frontier if f not in got and f in roots]
        nxt = []
        for parent in frontier:
            for d in sorted(got.get(parent, ())):
                if d not in via:
                    via[d] = parent; nxt.append(d)
        frontier = nxt
def chain(pkg):
    c = []
    while via.get(pkg):
        pkg = via[pkg]; c.append(pkg)
    return " > ".join(reversed(c))

print(f"{'library':<34} {'package':<22} how the runtime stage gets it")
needed_by, absent = {}, {}
for n, p, pk in lib_pkg:
    if pk is None:
        print(f"{n:<34} {'?':<22} NOT OWNED BY ANY PACKAGE ({p})"); continue
    inside = [x for x in pk if x in via]
    if not inside:
        absent.setdefault(", ".join(pk), []).append(n)
        print(f"{n:<34} {', '.join(pk):<22} MISSING: neither listed nor a dependency of a listed package")
        continue
    x = inside[0]
    how = "listed" if x in listed else ("libc6 (Essential in every Debian image)" if x == "libc6"
                                        else f"via {chain(x)}")
    root = x if x in roots else chain(x).split(" > ")[0]
    needed_by.setdefault(root, []).append(n)
    print(f"{n:<34} {x:<22} {how}")
for v in virtual:
    print(f"{v:<34} {'(kernel)':<22} virtual DSO, no file")
for pkg in listed:
    if pkg not in needed_by:
        print(f"{'':<34} {pkg:<22} listed, not linked: {reasons.get(pkg, 'no library of the binary comes from it')}")
for pkg in unresolved:
    print(f"note: {pkg} is neither installed here nor known to apt-cache: its dependencies are unknown")
for pkg in sorted(from_apt & set(roots)):
    print(f"note: {pkg} is not installed here: its dependencies come from apt-cache show")
problems += [f"package {pkg} ({', '.join(ls)}) is neither listed nor a Depends/Pre-Depends of a listed package"
             for pkg, ls in absent.items()]
if problems:
    fail(what, "; ".join(problems))
else:
    ok(f"runtime libraries: {len(lib_pkg)} libraries of {binary} resolve under /lib or /usr/lib and come from "
       f"packages the runtime stage installs ({', '.join(listed)} + libc6) or their dependencies")
PY
}
run_py "dockerfile: assertions" dockerfile_py deploy/Dockerfile "$binary" "${CI:-false}"

# ---- summary -------------------------------------------------------------------------------------
echo "deploy-check: done in $((SECONDS - t_start)) s"
echo "deploy-check: $passed passed, $failed failed, $skipped skipped"
((failed == 0))
