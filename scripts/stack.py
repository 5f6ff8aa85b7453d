#!/usr/bin/env python3
"""The deployment topology on one machine without Docker, from Debian's packages.

    scripts/stack.py up [--instances N] [--affinity]   start (or complete, or rescale) the stack
    scripts/stack.py status [--json]                   what runs, where, and whether it answers
    scripts/stack.py restart                           rolling restart of the instances (new binary)
    scripts/stack.py down [--purge]                    stop everything the stack started

Everything listens on 127.0.0.1: nginx on 8788 (SOMA_STACK_PORT overrides) and HTTPS on a free
port with a self-signed certificate, N `soma serve` instances, redis-server, PostgreSQL,
Prometheus and Alertmanager on free ports. The nginx, Prometheus and Alertmanager configurations
are rendered from deploy/ (the same files the compose and Kubernetes deployments use), with only
addresses, paths and the scrape interval substituted.

One state file, <dir>/stack.json (dir = SOMA_STACK_DIR, else .stack/ in the repository), records
every URL, port, PID, directory and log; the load, chaos and autoscale tools read it. It is
rewritten after every component that starts, so `down` can always clean up what `up` began.

`up` is idempotent: components that run and answer are kept, missing ones are started, and a
different --instances starts or drains instances to that count, then reloads nginx's upstream list
and rewrites Prometheus' file_sd targets. `down` stops by recorded PID (never by name), then scans
/proc for any process still carrying the stack's marker (environment SOMA_STACK_DIR=<dir>, or the
stack directory in its command line) and kills it; it fails if one survives.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
SCRIPTS = REPO / "scripts"
GATEWAY_PORT = 8788
STATE_VERSION = 1


def log(message: str) -> None:
    print(f"stack: {message}", file=sys.stderr, flush=True)


def render_nginx_tree(conf: Path, upstreams: list[tuple[str, str]], *, http_listen: str, tls_listen: str,
                      affinity: bool, fd_limit: int, pid_file: Path | str, log_dir: Path | str,
                      as_root: bool, per_ip_rate: int | None = None) -> Path:
    """deploy/nginx-ml.conf (or its affinity variant) and deploy/nginx/*.conf rendered into CONF with
    only the listen addresses, the pid file, the log directory and the upstream list substituted;
    a self-signed certificate for 127.0.0.1 in CONF/tls when none is there. Used by the local stack
    and by the compose stack (scripts/compose.py, whose paths are the container's).

    PER_IP_RATE replaces the gateway's per-address limit (1000 r/s, burst 2000) for a capacity
    run from one load generator (`stack.py up --load-test-limit`); production keeps the file's."""
    (conf / "nginx").mkdir(parents=True, exist_ok=True)
    main_file = "nginx-ml-affinity.conf" if affinity else "nginx-ml.conf"
    shutil.copyfile(DEPLOY / main_file, conf / "nginx.conf")
    for source in sorted((DEPLOY / "nginx").glob("*.conf")):
        text = source.read_text()
        name = source.name
        if name == "soma-main.conf":
            text = substitute(text, "pid /run/soma-nginx.pid;", f"pid {pid_file};", name)
            text = substitute(text, "error_log /var/log/nginx/error.log", f"error_log {log_dir}/error.log", name)
            # the hard limit of this machine may be below the file's 65536
            text = re.sub(r"worker_rlimit_nofile \d+;", f"worker_rlimit_nofile {min(65536, fd_limit)};", text)
            if not as_root:
                text = substitute(text, "user www-data;", "# user: not root, workers run as the caller", name)
        elif name == "soma-http.conf":
            text = substitute(text, "access_log /var/log/nginx/access.log", f"access_log {log_dir}/access.log", name)
            if per_ip_rate:
                text = substitute(text, "rate=1000r/s;", f"rate={per_ip_rate}r/s;  # load-test limit", name)
                text = substitute(text, "burst=2000 nodelay;", f"burst={2 * per_ip_rate} nodelay;", name)
        elif name == "soma-servers.conf":
            text = substitute(text, "listen 8788 ", f"listen {http_listen} ", name)
            text = substitute(text, "listen 8443 ssl ", f"listen {tls_listen} ssl ", name)
        (conf / "nginx" / name).write_text(text)
    (conf / "soma-upstreams.conf").write_text(
        "".join(f"server {address} max_fails=3 fail_timeout=30s;  # {identifier}\n" for address, identifier in upstreams))
    tls = conf / "tls"
    if not (tls / "soma.crt").exists() or not (tls / "soma.key").exists():
        tls.mkdir(exist_ok=True)
        result = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(tls / "soma.key"), "-out", str(tls / "soma.crt")],
            capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise StackError(f"openssl could not make the self-signed certificate:\n{result.stderr}")
        os.chmod(tls / "soma.key", 0o600)
    return conf / "nginx.conf"


def render_prometheus_config(alertmanager: str, prometheus: str, autoscaler: str = "127.0.0.1:9465") -> str:
    """deploy/prometheus/prometheus.yml with the Alertmanager, Prometheus and `soma autoscale`
    addresses substituted and the short intervals of a test stack (5 s scrapes and evaluations)."""
    config = DEPLOY / "prometheus" / "prometheus.yml"
    text = config.read_text()
    text = substitute(text, "127.0.0.1:9093", alertmanager, config.name)
    text = substitute(text, "127.0.0.1:9090", prometheus, config.name)
    text = substitute(text, "127.0.0.1:9465", autoscaler, config.name)
    text = substitute(text, "scrape_interval: 15s", "scrape_interval: 5s", config.name)
    text = substitute(text, "evaluation_interval: 15s", "evaluation_interval: 5s", config.name)
    text = substitute(text, "scrape_timeout: 10s", "scrape_timeout: 4s", config.name)
    text = substitute(text, "refresh_interval: 30s", "refresh_interval: 5s", config.name)
    return text


def write_targets_file(path: Path, targets: list[tuple[str, str]]) -> None:
    """A Prometheus file_sd list, one target per instance (address, instance id), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [{"targets": [address], "labels": {"service": "soma", "instance_id": identifier}}
               for address, identifier in targets]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=2) + "\n")
    tmp.replace(path)  # atomic: file_sd never reads half a file


class StackError(Exception):
    pass


# ---- small utilities ------------------------------------------------------------------------

def stack_dir() -> Path:
    configured = os.environ.get("SOMA_STACK_DIR")
    return Path(configured).resolve() if configured else REPO / ".stack"


def free_port(taken: set[int]) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken and port != GATEWAY_PORT:
            taken.add(port)
            return port
    raise StackError("no free port found")


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int | None) -> bool:
    """True for a live process; zombies count as dead (PID 1 here does not always reap them)."""
    if not pid:
        return False
    state = proc_state(pid)
    return state is not None and state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def parents() -> dict[int, int]:
    """pid → parent pid of every process, from /proc."""
    result = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                result[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return result


def children(pid: int) -> list[int]:
    return [child for child, parent in parents().items() if parent == pid]


def descendants(roots: list[int]) -> set[int]:
    """The live processes in the trees under `roots` (roots included)."""
    tree: dict[int, list[int]] = {}
    for child, parent in parents().items():
        tree.setdefault(parent, []).append(child)
    found, todo = set(), [r for r in roots if r]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        if alive(pid):
            found.add(pid)
        todo.extend(tree.get(pid, []))
    return found


def marked_processes(directory: Path) -> list[int]:
    """Live processes carrying the stack's marker: SOMA_STACK_DIR=<dir> in their environment, or
    the stack directory in their command line. Servers that rewrite their process title (redis,
    nginx, postgres) overwrite both, so `down` also snapshots the process trees it stops."""
    marker = f"SOMA_STACK_DIR={directory}".encode()
    needle = str(directory)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        if not alive(pid):
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            environ = []
        if marker in environ or any(needle in arg for arg in cmdline(pid)):
            found.append(pid)
    return sorted(found)


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def http_status(url: str, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, ValueError):
        return None


def http_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def soma_targets(prometheus: str) -> set[str]:
    """The soma scrape targets Prometheus reports up."""
    try:
        targets = http_json(f"{prometheus}/api/v1/targets?state=active")["data"]["activeTargets"]
    except (OSError, ValueError, KeyError):
        return set()
    return {t["labels"]["instance"] for t in targets if t["labels"].get("job") == "soma" and t["health"] == "up"}


def outbox_pending(url: str) -> int:
    """Entries in an instance's outbox not yet in PostgreSQL, from its /health (0 when it has no
    outbox or does not answer: a dead instance's outbox is replayed when its index runs again)."""
    try:
        return int(http_json(f"{url}/health", timeout=3).get("dependencies", {}).get("outbox", {}).get("pending", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return 0


def stop_process(pid: int | None, name: str, first: int = signal.SIGTERM, grace: float = 10.0) -> None:
    if not alive(pid):
        return
    family = [pid] + children(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, first)
    if wait_until(lambda: not alive(pid), grace):
        wait_until(lambda: not any(alive(p) for p in family), 5.0)
    for p in family:
        if alive(p):
            log(f"{name}: pid {p} still running after {grace:.0f} s; SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
    if not wait_until(lambda: not any(alive(p) for p in family), 5.0):
        raise StackError(f"{name}: pid {pid} did not exit")


def raise_fd_limit() -> int:
    """Raise this process' open-files limit to the hard limit; every child inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def substitute(text: str, old: str, new: str, what: str) -> str:
    """Replaces exactly one occurrence; a missing anchor means deploy/ changed under the renderer."""
    count = text.count(old)
    if count != 1:
        raise StackError(f"rendering {what}: expected one '{old}', found {count}")
    return text.replace(old, new)


# ---- the stack ------------------------------------------------------------------------------

class Stack:
    def __init__(self, directory: Path, binary: Path):
        self.dir = directory
        self.binary = binary
        self.state_path = directory / "stack.json"
        self.state: dict = self.load()
        self.env = dict(os.environ, SOMA_STACK_DIR=str(directory))
        self.env.pop("SOMA_SLOWDOWN", None)
        self.taken: set[int] = set()
        # Instances (by id) left out of nginx's upstream list while they restart.
        self.out_of_pool: set[str] = set()

    # -- state file --
    def load(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def save(self) -> None:
        self.state["version"] = STATE_VERSION
        self.state["dir"] = str(self.dir)
        self.state["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_path)

    def recorded_ports(self) -> set[int]:
        ports = set()
        for key in ("redis", "postgres", "prometheus", "alertmanager"):
            if port := self.state.get(key, {}).get("port"):
                ports.add(port)
        for instance in self.state.get("instances", []):
            ports.add(instance["port"])
        if tls := self.state.get("nginx", {}).get("tls_port"):
            ports.add(tls)
        return ports

    # -- redis and postgres (their own scripts: free port, readiness, PID files) --
    def start_script_server(self, key: str, script: str, args: list[str]) -> None:
        directory = self.dir / key
        output = subprocess.run([str(SCRIPTS / script), "start", str(directory), *args], env=self.env,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
        if output.returncode != 0:
            raise StackError(f"{key} did not start:\n{output.stderr.strip()}")
        values = dict(line.split("=", 1) for line in output.stdout.splitlines() if "=" in line)
        prefix = "REDIS" if key == "redis" else "POSTGRES"
        url = values["REDIS_URL" if key == "redis" else "DATABASE_URL"]
        self.state[key] = {
            "url": url, "port": int(values[f"{prefix}_PORT"]), "pid": int(values[f"{prefix}_PID"]),
            "dir": str(directory), "log": str(directory / ("redis.log" if key == "redis" else "log")),
        }
        self.save()
        log(f"{key} ready at {url} (pid {self.state[key]['pid']})")

    def stop_script_server(self, key: str, script: str) -> None:
        entry = self.state.get(key)
        if not entry:
            return
        subprocess.run([str(SCRIPTS / script), "stop", entry["dir"]], env=self.env, stdin=subprocess.DEVNULL,
                       timeout=120, check=False)
        if alive(entry.get("pid")):
            raise StackError(f"{key} (pid {entry['pid']}) is still running")

    # -- soma instances --
    def instance_ok(self, instance: dict) -> bool:
        pid = instance.get("pid")
        return (alive(pid) and instance["state_dir"] in cmdline(pid)
                and http_status(f"{instance['url']}/ready") == 200)

    def spawn(self, args: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None) -> int:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       env=env or self.env, cwd=cwd or REPO, start_new_session=True, close_fds=True)
        return process.pid

    def start_instance(self, index: int, port: int | None = None) -> dict:
        identifier = f"soma-{index}"
        home = self.dir / "instances" / identifier
        state_dir = home / "state"
        state_dir.mkdir(parents=True, exist_ok=True)
        port = port or free_port(self.taken)
        env = dict(self.env, INSTANCE_ID=identifier, REDIS_URL=self.state["redis"]["url"],
                   DATABASE_URL=self.state["postgres"]["url"], SOMA_MODEL_DIR=self.state["model_dir"])
        pid = self.spawn([str(self.binary), "serve", "--host", "127.0.0.1", "--port", str(port),
                          "--instance-id", identifier, "--state-dir", str(state_dir)],
                         home / "soma.log", env=env)
        instance = {"id": identifier, "index": index, "port": port, "pid": pid, "url": f"http://127.0.0.1:{port}",
                    "state_dir": str(state_dir), "log": str(home / "soma.log")}
        return instance

    def wait_ready(self, instance: dict, timeout: float = 90.0) -> None:
        def ready() -> bool:
            if not alive(instance["pid"]):
                raise StackError(f"{instance['id']} exited during start; log {instance['log']}:\n"
                                 + tail(Path(instance["log"])))
            return http_status(f"{instance['url']}/ready") == 200
        if not wait_until(ready, timeout, 0.1):
            raise StackError(f"{instance['id']} not ready after {timeout:.0f} s; log {instance['log']}")
        log(f"{instance['id']} ready at {instance['url']} (pid {instance['pid']})")

    def stop_instance(self, instance: dict) -> None:
        # SIGTERM: /ready turns 503 for the drain delay, in-flight requests finish, exit 0.
        stop_process(instance.get("pid"), instance["id"], grace=40.0)

    def migrate(self) -> None:
        env = dict(self.env, DATABASE_URL=self.state["postgres"]["url"], INSTANCE_ID="migrate")
        result = subprocess.run([str(self.binary), "migrate"], env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise StackError(f"soma migrate failed:\n{result.stdout}{result.stderr}")
        log(result.stdout.strip() or "migrate: done")

    def ensure_instances(self, count: int) -> tuple[bool, list[dict]]:
        """Brings the instances to `count`, keeping the ones that answer; an instance that is recorded
        but not answering is stopped and started again (on its port when free). Returns whether the
        set of upstream addresses changed, and the instances that leave (index above `count`): they
        are still running, for the caller to take out of nginx's pool before it drains them."""
        current = sorted(self.state.get("instances", []), key=lambda i: i["index"])
        before = {i["port"] for i in current if i["index"] <= count}
        by_index: dict[int, dict] = {}
        to_start: list[tuple[int, int | None]] = []
        leaving: list[dict] = []
        for instance in current:
            if instance["index"] > count:
                leaving.append(instance)
            elif self.instance_ok(instance):
                by_index[instance["index"]] = instance
            else:
                log(f"{instance['id']} is not running or not ready; starting it again")
                self.stop_instance(instance)
                to_start.append((instance["index"], None if port_in_use(instance["port"]) else instance["port"]))
        pending = {index for index, _ in to_start}
        to_start += [(index, None) for index in range(1, count + 1) if index not in by_index and index not in pending]
        started = [self.start_instance(index, port) for index, port in sorted(to_start)]
        for instance in started:
            by_index[instance["index"]] = instance
        self.state["instances"] = [by_index[i] for i in sorted(by_index)]
        self.save()
        for instance in started:
            self.wait_ready(instance)
        return {i["port"] for i in self.state["instances"]} != before or len(current) != count, leaving

    def drain(self, leaving: list[dict]) -> None:
        """Stops instances that nginx no longer sends to (SIGTERM: /ready 503 for the drain delay,
        in-flight requests finish). Their state directories stay: an outbox that still holds
        entries replays when the index comes back."""
        for instance in leaving:
            log(f"draining {instance['id']} (out of nginx's pool)")
            self.stop_instance(instance)

    # -- nginx --
    def render_nginx(self, affinity: bool, tls_port: int, fd_limit: int) -> Path:
        base = self.dir / "nginx"
        (base / "logs").mkdir(parents=True, exist_ok=True)
        return render_nginx_tree(
            base / "conf", [(f"127.0.0.1:{i['port']}", i["id"]) for i in self.state["instances"] if i["id"] not in self.out_of_pool],
            http_listen=f"127.0.0.1:{self.gateway_port}", tls_listen=f"127.0.0.1:{tls_port}", affinity=affinity,
            fd_limit=fd_limit, pid_file=base / "nginx.pid", log_dir=base / "logs", as_root=os.geteuid() == 0,
            per_ip_rate=self.state.get("load_test_limit"))

    def nginx_args(self, conf: Path) -> list[str]:
        return ["nginx", "-c", str(conf), "-p", f"{self.dir / 'nginx'}/"]

    def nginx_test(self, conf: Path) -> None:
        result = subprocess.run(self.nginx_args(conf) + ["-t", "-q"], env=self.env, capture_output=True, text=True,
                                timeout=30)
        if result.returncode != 0:
            raise StackError(f"nginx -t failed on {conf}:\n{result.stderr}")

    def ensure_nginx(self, affinity: bool, fd_limit: int, changed: bool) -> None:
        entry = self.state.get("nginx", {})
        pid = entry.get("pid")
        running = alive(pid) and "nginx" in " ".join(cmdline(pid))
        if running and entry.get("affinity", False) != affinity:
            log("nginx: balancing method changed; restarting it")
            stop_process(pid, "nginx", first=signal.SIGQUIT)
            running = False
        tls_port = entry.get("tls_port") if running else None
        if not tls_port or (not running and port_in_use(tls_port)):
            tls_port = free_port(self.taken)
        before = config_snapshot(self.dir / "nginx" / "conf")
        conf = self.render_nginx(affinity, tls_port, fd_limit)
        changed = changed or config_snapshot(conf.parent) != before
        self.nginx_test(conf)
        base = self.dir / "nginx"
        if running:
            if changed:
                os.kill(pid, signal.SIGHUP)  # re-reads its files; old workers finish their requests
                log("nginx: configuration or upstream list changed; reloaded")
        else:
            if port_in_use(self.gateway_port):
                raise StackError(f"127.0.0.1:{self.gateway_port} is already in use (another `make run` or "
                                 "gateway?); stop it or set SOMA_STACK_PORT")
            (base / "nginx.pid").unlink(missing_ok=True)
            result = subprocess.run(self.nginx_args(conf), env=self.env, stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, timeout=30, start_new_session=True)
            if result.returncode != 0:
                raise StackError(f"nginx did not start:\n{result.stderr}")
            if not wait_until(lambda: (base / "nginx.pid").exists(), 10):
                raise StackError("nginx wrote no pid file")
            pid = int((base / "nginx.pid").read_text().strip())
        self.state["nginx"] = {
            "url": f"http://127.0.0.1:{self.gateway_port}", "port": self.gateway_port,
            "https_url": f"https://127.0.0.1:{tls_port}", "tls_port": tls_port, "pid": pid,
            "affinity": affinity, "conf": str(conf), "prefix": str(base),
            "certificate": str(conf.parent / "tls" / "soma.crt"),
            "access_log": str(base / "logs" / "access.log"), "error_log": str(base / "logs" / "error.log"),
        }
        self.save()
        if not wait_until(lambda: http_status(f"http://127.0.0.1:{self.gateway_port}/ready") == 200, 15):
            raise StackError(f"nginx on {self.gateway_port} does not reach a ready instance; see {base}/logs/error.log")
        log(f"nginx ready at http://127.0.0.1:{self.gateway_port} and https://127.0.0.1:{tls_port} (pid {pid})")

    # -- prometheus and alertmanager --
    def write_targets(self) -> None:
        write_targets_file(self.dir / "prometheus" / "soma-targets.json",
                           [(f"127.0.0.1:{i['port']}", i["id"]) for i in self.state["instances"]])

    def ensure_monitoring(self) -> None:
        am = self.state.get("alertmanager", {})
        if not (alive(am.get("pid")) and http_status(f"{am['url']}/-/ready") == 200):
            stop_process(am.get("pid"), "alertmanager")
            directory = self.dir / "alertmanager"
            (directory / "data").mkdir(parents=True, exist_ok=True)
            port = am.get("port") if am.get("port") and not port_in_use(am["port"]) else free_port(self.taken)
            shutil.copyfile(DEPLOY / "alertmanager" / "alertmanager.yml", directory / "alertmanager.yml")
            binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
            if not binary:
                raise StackError("prometheus-alertmanager is not installed")
            pid = self.spawn([binary, f"--config.file={directory / 'alertmanager.yml'}",
                              f"--storage.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                              "--cluster.listen-address="], directory / "alertmanager.log")
            am = {"url": f"http://127.0.0.1:{port}", "port": port, "pid": pid, "dir": str(directory),
                  "log": str(directory / "alertmanager.log")}
            self.state["alertmanager"] = am
            self.save()
            self.wait_http(f"{am['url']}/-/ready", "alertmanager", pid, am["log"])
        log(f"alertmanager ready at {am['url']} (pid {am['pid']})")

        self.write_targets()
        prom = self.state.get("prometheus", {})
        directory = self.dir / "prometheus"
        running = alive(prom.get("pid")) and http_status(f"{prom['url']}/-/ready") == 200
        if running:
            port = prom["port"]
        else:
            stop_process(prom.get("pid"), "prometheus")
            port = prom.get("port") if prom.get("port") and not port_in_use(prom["port"]) else free_port(self.taken)
        (directory / "prometheus.yml").write_text(
            render_prometheus_config(f"127.0.0.1:{am['port']}", f"127.0.0.1:{port}",
                                     f"127.0.0.1:{self.state['autoscale_port']}"))
        shutil.copyfile(DEPLOY / "prometheus" / "alerts.yml", directory / "alerts.yml")
        if running:
            # Targets arrive through file_sd by themselves; the reload picks up a changed config or rules.
            os.kill(prom["pid"], signal.SIGHUP)
        else:
            (directory / "data").mkdir(exist_ok=True)
            pid = self.spawn(["prometheus", f"--config.file={directory / 'prometheus.yml'}",
                              f"--storage.tsdb.path={directory / 'data'}", "--storage.tsdb.retention.time=7d",
                              f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
                             directory / "prometheus.log")
            prom = {"url": f"http://127.0.0.1:{port}", "port": port, "pid": pid, "dir": str(directory),
                    "config": str(directory / "prometheus.yml"), "targets_file": str(directory / "soma-targets.json"),
                    "rules": str(directory / "alerts.yml"), "log": str(directory / "prometheus.log")}
            self.state["prometheus"] = prom
            self.save()
            self.wait_http(f"{prom['url']}/-/ready", "prometheus", pid, prom["log"])
        expected = {f"127.0.0.1:{i['port']}" for i in self.state["instances"]}
        if not wait_until(lambda: soma_targets(prom["url"]) == expected, 45, 0.5):
            raise StackError(f"prometheus does not see every instance up after 45 s: up {sorted(soma_targets(prom['url']))}, "
                             f"expected {sorted(expected)}; log {prom['log']}")
        log(f"prometheus ready at {prom['url']} (pid {prom['pid']}), scraping {len(expected)} instances")

    def wait_http(self, url: str, name: str, pid: int, log_path: str, timeout: float = 60) -> None:
        def ready() -> bool:
            if not alive(pid):
                raise StackError(f"{name} exited during start; log {log_path}:\n{tail(Path(log_path))}")
            return http_status(url) == 200
        if not wait_until(ready, timeout, 0.2):
            raise StackError(f"{name} not ready after {timeout:.0f} s; log {log_path}")

    @property
    def gateway_port(self) -> int:
        return int(os.environ.get("SOMA_STACK_PORT", GATEWAY_PORT))

    # -- commands --
    def up(self, count: int, affinity: bool, model_dir: Path, load_test_limit: int | None = None) -> None:
        if count < 1:
            raise StackError("--instances must be at least 1")
        if not self.binary.is_file():
            raise StackError(f"{self.binary} does not exist; build it first (make release)")
        self.dir.mkdir(parents=True, exist_ok=True)
        fd_limit = raise_fd_limit()
        try:
            somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        except (OSError, ValueError):
            somaxconn = 0
        # 1000+ client connections: nginx needs ~2 descriptors per proxied connection, and the listen
        # backlogs (nginx 4096, SOMA_BACKLOG 4096) are capped by net.core.somaxconn.
        log(f"open-files limit {fd_limit} for every process of the stack; net.core.somaxconn {somaxconn}")
        if fd_limit < 4096:
            log(f"warning: the hard open-files limit ({fd_limit}) is too low for 1000+ connections; raise it "
                "(limits.conf / systemd LimitNOFILE / docker --ulimit) before load tests")
        if 0 < somaxconn < 1024:
            log(f"warning: net.core.somaxconn {somaxconn} caps the listen backlogs; sysctl -w net.core.somaxconn=4096")
        self.taken |= self.recorded_ports()
        if not model_dir.is_dir():
            raise StackError(f"model directory {model_dir} does not exist (make models compiles it)")
        self.state["binary"] = str(self.binary)
        self.state["model_dir"] = str(model_dir)
        self.state["fd_limit"] = fd_limit
        self.state["load_test_limit"] = load_test_limit
        if load_test_limit:
            log(f"nginx: per-address limit {load_test_limit} r/s (a load-test limit: never in production)")
        self.state.pop("stopped", None)
        if not self.state.get("autoscale_port"):
            self.state["autoscale_port"] = free_port(self.taken)  # where Prometheus scrapes `soma autoscale`
        self.taken.add(self.state["autoscale_port"])
        self.save()
        self.start_script_server("redis", "redis-server.sh", ["--maxmemory", "2gb", "--maxmemory-policy", "allkeys-lru"])
        self.start_script_server("postgres", "postgres-server.sh", [])
        self.migrate()
        changed, leaving = self.ensure_instances(count)
        self.ensure_nginx(affinity, fd_limit, changed)
        self.ensure_monitoring()
        self.drain(leaving)
        self.print_urls()

    def require_running(self) -> None:
        if not self.state.get("instances") or self.state.get("stopped") or not alive(self.state.get("nginx", {}).get("pid")):
            raise StackError(f"no running stack in {self.dir}; run `make stack-up` first")
        self.taken |= self.recorded_ports()

    def scale(self, count: int) -> None:
        """Rescales a running stack to COUNT instances with its recorded settings: new instances join
        nginx's pool once /ready answers; leaving ones leave the pool (graceful reload) before they
        drain. Redis, PostgreSQL and the monitoring are left as they are."""
        if count < 1:
            raise StackError("--instances must be at least 1")
        self.require_running()
        t0 = time.monotonic()
        before = len(self.state["instances"])
        for instance in self.state["instances"]:
            # An outbox that still holds entries (PostgreSQL was down) replays only from its own
            # instance: removing that instance would strand them until its index comes back.
            if instance["index"] > count and (pending := outbox_pending(instance["url"])):
                raise StackError(f"{instance['id']} keeps running: its outbox holds {pending} entries not yet in "
                                 "PostgreSQL; scale in once soma_outbox_pending is 0")
        changed, leaving = self.ensure_instances(count)
        self.ensure_nginx(self.state["nginx"].get("affinity", False), self.state.get("fd_limit", 1024), changed)
        self.write_targets()
        self.drain(leaving)
        log(f"scaled from {before} to {count} instance(s) in {time.monotonic() - t0:.1f} s")

    def replace(self, identifier: str) -> None:
        """Replaces one instance that is dead or failing: stopped (5 s of grace: it is not answering
        anyway), started again on its port (a new one if the port is held), /ready, then nginx and
        Prometheus learn of a changed port. An instance that answers again by now is left alone."""
        self.require_running()
        position = next((n for n, i in enumerate(self.state["instances"]) if i["id"] == identifier), None)
        if position is None:
            raise StackError(f"no instance {identifier} in this stack")
        instance = self.state["instances"][position]
        if self.instance_ok(instance):
            log(f"{identifier} answers /ready again; left alone")
            return
        t0 = time.monotonic()
        stop_process(instance.get("pid"), identifier, grace=5.0)
        port = instance["port"] if wait_until(lambda: not port_in_use(instance["port"]), 5) else None
        fresh = self.start_instance(instance["index"], port)
        self.state["instances"][position] = fresh
        self.save()
        self.wait_ready(fresh)
        # Reloaded even on the same port: nginx's workers keep a failed server out for fail_timeout
        # (30 s) after the errors that took it down, and new workers start with a clean slate.
        self.ensure_nginx(self.state["nginx"].get("affinity", False), self.state.get("fd_limit", 1024), True)
        if fresh["port"] != instance["port"]:
            self.write_targets()
        log(f"{identifier} replaced in {time.monotonic() - t0:.1f} s (pid {fresh['pid']}, port {fresh['port']})")

    def describe(self) -> dict:
        """What `soma autoscale` needs: the instances, Prometheus, and where Prometheus scrapes it."""
        return {"instances": [{"id": i["id"], "url": i["url"]} for i in self.state.get("instances", [])],
                "prometheus": self.state.get("prometheus", {}).get("url"),
                "autoscale_metrics": f"127.0.0.1:{self.state['autoscale_port']}" if self.state.get("autoscale_port") else None}

    def restart(self) -> None:
        """Rolling restart: one instance at a time leaves nginx's pool (a reload), drains (SIGTERM:
        in-flight requests finish), restarts on its port, is waited ready and rejoins the pool (a
        reload). Stopping an instance nginx still sends to would fail requests on it and mark it
        failed for fail_timeout; three restarts inside those 30 s left nginx no live upstream."""
        if not self.state.get("instances"):
            raise StackError("no stack is recorded; run `make stack-up` first")
        self.migrate()
        affinity, fd_limit = self.state["nginx"].get("affinity", False), self.state.get("fd_limit", 1024)
        for position, instance in enumerate(self.state["instances"]):
            log(f"restarting {instance['id']}")
            # A lone instance stays in the pool: nginx refuses an empty upstream (and there is no
            # other instance to send to anyway).
            self.out_of_pool = {instance["id"]} if len(self.state["instances"]) > 1 else set()
            try:
                self.ensure_nginx(affinity, fd_limit, True)
                self.stop_instance(instance)
                if not wait_until(lambda: not port_in_use(instance["port"]), 10):
                    raise StackError(f"port {instance['port']} of {instance['id']} is still taken")
                fresh = self.start_instance(instance["index"], instance["port"])
                self.state["instances"][position] = fresh
                self.save()
                self.wait_ready(fresh)
            finally:
                self.out_of_pool = set()
                self.ensure_nginx(affinity, fd_limit, True)

    def recorded_pids(self) -> list[int]:
        pids = [self.state.get(key, {}).get("pid") for key in ("nginx", "prometheus", "alertmanager", "redis", "postgres")]
        pids += [instance.get("pid") for instance in self.state.get("instances", [])]
        return [pid for pid in pids if pid]

    def down(self, purge: bool) -> None:
        errors = []
        family = descendants(self.recorded_pids())  # nginx workers, postgres backends, ...
        entry = self.state.get("nginx", {})
        try:
            if alive(entry.get("pid")) and "nginx" in " ".join(cmdline(entry["pid"])):
                stop_process(entry["pid"], "nginx", first=signal.SIGQUIT)  # graceful: finish open requests
        except StackError as error:
            errors.append(str(error))
        instances = self.state.get("instances", [])
        for instance in instances:  # SIGTERM to all first: they drain in parallel
            if alive(instance.get("pid")) and instance["state_dir"] in cmdline(instance["pid"]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(instance["pid"], signal.SIGTERM)
        for instance in instances:
            try:
                if alive(instance.get("pid")) and instance["state_dir"] in cmdline(instance["pid"]):
                    self.stop_instance(instance)
            except StackError as error:
                errors.append(str(error))
        for key in ("prometheus", "alertmanager"):
            try:
                stop_process(self.state.get(key, {}).get("pid"), key)
            except StackError as error:
                errors.append(str(error))
        for key, script in (("redis", "redis-server.sh"), ("postgres", "postgres-server.sh")):
            try:
                self.stop_script_server(key, script)
            except StackError as error:
                errors.append(str(error))
        leftovers = sorted({p for p in family if alive(p)} | set(marked_processes(self.dir)))
        for pid in leftovers:
            log(f"leftover process {pid} ({' '.join(cmdline(pid))[:120]}); SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if leftovers and not wait_until(lambda: not any(alive(p) for p in leftovers), 5):
            errors.append(f"processes survived SIGKILL: {[p for p in leftovers if alive(p)]}")
        if errors:
            raise StackError("; ".join(errors))
        if purge:
            shutil.rmtree(self.dir, ignore_errors=True)
            log(f"stopped; {self.dir} removed")
        elif self.state_path.exists():
            for key in ("nginx", "prometheus", "alertmanager", "redis", "postgres"):
                self.state.get(key, {}).pop("pid", None)
            for instance in instances:
                instance.pop("pid", None)
            self.state["stopped"] = True
            self.save()
            log(f"stopped; data kept in {self.dir} (make stack-down PURGE=1 removes it)")

    def status(self) -> dict:
        report = {"dir": str(self.dir), "components": [], "ok": True}

        def add(name: str, pid, url: str | None, healthy: bool, detail: str = "") -> None:
            report["components"].append({"name": name, "pid": pid, "url": url, "running": alive(pid),
                                         "healthy": healthy, "detail": detail})
            report["ok"] = report["ok"] and healthy

        nginx = self.state.get("nginx", {})
        if nginx:
            add("nginx", nginx.get("pid"), nginx["url"], alive(nginx.get("pid")) and
                http_status(f"{nginx['url']}/ready") == 200, f"https {nginx['https_url']}")
        for instance in self.state.get("instances", []):
            health = None
            with contextlib.suppress(Exception):
                health = http_json(f"{instance['url']}/health", 2).get("status")
            ready = http_status(f"{instance['url']}/ready")
            add(instance["id"], instance.get("pid"), instance["url"], alive(instance.get("pid")) and ready == 200,
                f"ready {ready} health {health}")
        for key, probe in (("redis", None), ("postgres", None), ("prometheus", "/-/ready"), ("alertmanager", "/-/ready")):
            entry = self.state.get(key)
            if not entry:
                continue
            healthy = alive(entry.get("pid")) and (probe is None or http_status(entry["url"] + probe) == 200)
            detail = ""
            if key == "prometheus" and healthy:
                up = soma_targets(entry["url"])
                expected = {f"127.0.0.1:{i['port']}" for i in self.state.get("instances", [])}
                detail = f"soma targets up {len(up & expected)}/{len(expected)}"
                report["soma_targets_up"] = len(up & expected)
                healthy = up >= expected
            add(key, entry.get("pid"), entry["url"], healthy, detail)
        if not report["components"]:
            report["ok"] = False
        return report

    def print_urls(self) -> None:
        s = self.state
        print(f"""
Soma stack ({len(s['instances'])} instances) — state file {self.state_path}
  gateway       {s['nginx']['url']}   (HTTPS {s['nginx']['https_url']}, self-signed: {s['nginx']['certificate']})
  instances     {', '.join(i['url'] for i in s['instances'])}
  redis         {s['redis']['url']}
  postgres      {s['postgres']['url']}
  prometheus    {s['prometheus']['url']}
  alertmanager  {s['alertmanager']['url']}
  dashboard     deploy/grafana/dashboards/soma.json (import into a Grafana with {s['prometheus']['url']} as its datasource)
  try:  curl -s {s['nginx']['url']}/v1/analyze -H 'Content-Type: application/json' -d '{{"text":"I finally finished it and I am proud."}}'
""", flush=True)


def config_snapshot(directory: Path) -> dict[str, bytes]:
    return {str(f): f.read_bytes() for f in sorted(directory.rglob("*.conf"))} if directory.is_dir() else {}


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


@contextlib.contextmanager
def locked(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(f"another stack command holds {directory}/.lock")
        yield


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack (idempotent; rescales to --instances)")
    up.add_argument("--instances", type=int, default=3)
    up.add_argument("--affinity", action="store_true", help="nginx hashes X-User-Id instead of least_conn")
    up.add_argument("--load-test-limit", type=int, metavar="RPS",
                    help="the gateway's per-address limit for a capacity run from one generator (default: deploy/'s 1000 r/s)")
    up.add_argument("--binary", type=Path, default=REPO / ".build" / "release" / "soma")
    up.add_argument("--model-dir", type=Path, default=None,
                    help="models the instances serve (default: .build/models when compiled, else Fixtures/models)")
    down = sub.add_parser("down", help="stop everything the stack started")
    down.add_argument("--purge", action="store_true", help="also remove the stack directory (all data)")
    status = sub.add_parser("status", help="what runs and whether it answers; exit 1 when something is down")
    status.add_argument("--json", action="store_true")
    restart = sub.add_parser("restart", help="rolling restart of the instances, one at a time")
    restart.add_argument("--binary", type=Path, default=None)
    # The autoscaler's interface (`soma autoscale`; scripts/compose.py has the same three).
    instances = sub.add_parser("instances", help="the instances, Prometheus and the autoscaler's scrape address")
    instances.add_argument("--json", action="store_true", help="(the only format)")
    scale = sub.add_parser("scale", help="rescale a running stack with its recorded settings")
    scale.add_argument("--instances", type=int, required=True)
    replace = sub.add_parser("replace", help="replace one dead or failing instance")
    replace.add_argument("instance")
    args = parser.parse_args()

    directory = stack_dir()
    try:
        if args.command == "status":
            stack = Stack(directory, REPO)
            if not stack.state:
                print(f"no stack recorded in {directory}", file=sys.stderr)
                return 1
            report = stack.status()
            if args.json:
                print(json.dumps({"state": stack.state, "health": report}, indent=2))
            else:
                print(f"{'component':<14}{'pid':>8}  {'up':<4}{'ok':<4}{'url':<42}detail")
                for c in report["components"]:
                    print(f"{c['name']:<14}{c['pid'] or '-':>8}  {'yes' if c['running'] else 'no':<4}"
                          f"{'yes' if c['healthy'] else 'NO':<4}{c['url'] or '':<42}{c['detail']}")
                print(f"state file {stack.state_path}")
            return 0 if report["ok"] else 1
        if args.command == "instances":
            stack = Stack(directory, REPO)
            if not stack.state or stack.state.get("stopped"):
                log(f"no running stack in {directory}")
                return 1
            print(json.dumps(stack.describe(), indent=2))
            return 0
        with locked(directory):
            if args.command == "up":
                model_dir = args.model_dir
                if model_dir is None:
                    compiled = REPO / ".build" / "models"
                    model_dir = compiled if any(compiled.glob("*.somamodel")) else REPO / "Fixtures" / "models"
                Stack(directory, args.binary.resolve()).up(args.instances, args.affinity, model_dir.resolve(),
                                                           args.load_test_limit)
            elif args.command == "restart":
                stack = Stack(directory, REPO)
                stack.binary = (args.binary or Path(stack.state.get("binary", REPO / ".build/release/soma"))).resolve()
                stack.taken |= stack.recorded_ports()
                stack.restart()
            elif args.command in ("scale", "replace"):
                stack = Stack(directory, REPO)
                stack.binary = Path(stack.state.get("binary", REPO / ".build/release/soma"))
                if args.command == "scale":
                    stack.scale(args.instances)
                else:
                    stack.replace(args.instance)
            elif args.command == "down":
                stack = Stack(directory, REPO)
                if not stack.state:
                    log(f"no stack recorded in {directory}; nothing to stop")
                    leftovers = marked_processes(directory)
                    if leftovers:
                        raise StackError(f"unrecorded processes carry this stack's marker: {leftovers}")
                    return 0
                stack.down(args.purge)
        return 0
    except StackError as error:
        log(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
