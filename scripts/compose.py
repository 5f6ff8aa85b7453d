#!/usr/bin/env python3
"""The compose stack on this machine: deploy/docker-compose-ml.yml under a real Docker engine, every
image built here from Debian's packages (nothing pulled from a registry).

    scripts/compose.py up [--instances N]   build the images that are missing, start, wait until healthy
    scripts/compose.py status [--json]      containers, health, and whether each answers
    scripts/compose.py down [--purge]       stop and remove the containers (--purge: volumes and state too)
    scripts/compose.py images               build the images only (each tagged by its content)
    scripts/compose.py rollout IMAGE        rolling update of the instances to another soma image

Topology: the compose file of deploy/ as it is (host networking, one machine), plus a generated
override in the state directory for what is this machine's: the images' local tags, the gateway on
127.0.0.1:8788 (not the public addresses), N instances (ml-1..ml-N on 127.0.0.1:8801..), the nginx,
Prometheus and TLS files rendered by scripts/stack.py's renderers with the container's paths, and
nginx's logs on the host. One state file, <dir>/compose.json (dir = SOMA_COMPOSE_DIR, else .compose/
in the repository), records the project, URLs, ports, image tags and containers; the checks, the
load, chaos and autoscale tools read it.

Images (scripts/docker-engine.sh starts the engine):
  soma-base:bookworm-<hash>   debootstrap --variant=minbase bookworm from the mirror apt uses, imported;
  soma-<service>:<hash>       deploy/images/Dockerfile.debian, one stage per service;
  soma:<hash>                 deploy/Dockerfile's runtime stage with BINARY_STAGE=prebuilt: the release
                              binary (make release) and the compiled models (make models) of this tree.
Each hash covers what goes into the image, so an unchanged image is never rebuilt.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
sys.dont_write_bytecode = True
sys.path.insert(0, str(REPO / "scripts"))
import stack  # noqa: E402  (the renderers and process helpers shared with the local stack)

try:
    import yaml  # PyYAML: Debian's python3-yaml comes with docker-compose
except ImportError:  # pragma: no cover
    sys.exit("compose: PyYAML is required (apt-get install python3-yaml)")

COMPOSE_FILE = DEPLOY / "docker-compose-ml.yml"
PROJECT = os.environ.get("SOMA_COMPOSE_PROJECT", "soma-ml")
GATEWAY_PORT, TLS_PORT = 8788, 8443
INSTANCE_PORT_BASE = 8800          # ml-N listens on 127.0.0.1:(8800 + N)
FIXED_PORTS = {"redis": 6379, "postgres": 5432, "prometheus": 9090, "alertmanager": 9093}
SERVICE_IMAGES = {"redis": "SOMA_REDIS_IMAGE", "postgres": "SOMA_POSTGRES_IMAGE", "nginx": "SOMA_NGINX_IMAGE",
                  "prometheus": "SOMA_PROMETHEUS_IMAGE", "alertmanager": "SOMA_ALERTMANAGER_IMAGE"}
SUITE, VARIANT = "bookworm", "minbase"
MAX_INSTANCES = 10


def log(message: str) -> None:
    print(f"compose: {message}", file=sys.stderr, flush=True)


class ComposeError(Exception):
    pass


def state_dir() -> Path:
    configured = os.environ.get("SOMA_COMPOSE_DIR")
    return Path(configured).resolve() if configured else REPO / ".compose"


def run(args: list[str], *, env: dict | None = None, timeout: float = 600, check: bool = True,
        capture: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, env=env, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                            capture_output=capture, timeout=timeout)
    if check and result.returncode != 0:
        out = (result.stdout or b"").decode(errors="replace")[-3000:] + (result.stderr or b"").decode(errors="replace")[-3000:]
        raise ComposeError(f"{' '.join(args[:6])}{' ...' if len(args) > 6 else ''} failed ({result.returncode}):\n{out}")
    return result


def engine() -> tuple[str, str]:
    """Starts the engine when none answers; returns the docker and docker-compose clients."""
    subprocess.run([str(REPO / "scripts/docker-engine.sh"), "ensure"], check=True, timeout=900)
    out = subprocess.run([str(REPO / "scripts/docker-engine.sh"), "env"], check=True, capture_output=True, text=True)
    values = dict(line.split("=", 1) for line in out.stdout.split())
    return values["DOCKER"], values["COMPOSE"]


def digest(*parts: bytes | str | Path) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            if part.is_dir():
                for file in sorted(p for p in part.rglob("*") if p.is_file()):
                    h.update(str(file.relative_to(part)).encode())
                    h.update(file.read_bytes())
            else:
                h.update(part.read_bytes())
        else:
            h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:12]


def apt_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 or one-line sources)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
            if line.startswith("deb ") and "security" not in line:
                words = [w for w in line.split()[1:] if not w.startswith("[")]
                return words[0]
    return "http://deb.debian.org/debian"


class Images:
    def __init__(self, docker: str):
        self.docker = docker
        self.env = dict(os.environ, DOCKER_BUILDKIT="1")

    def exists(self, tag: str) -> bool:
        return run([self.docker, "image", "inspect", tag], check=False).returncode == 0

    def base(self) -> str:
        mirror = apt_mirror()
        tag = f"soma-base:{SUITE}-{digest(SUITE, VARIANT, mirror)}"
        if self.exists(tag):
            return tag
        t0 = time.monotonic()
        root = Path(tempfile.mkdtemp(prefix="soma-rootfs-", dir="/var/tmp"))
        try:
            log(f"building {tag}: debootstrap --variant={VARIANT} {SUITE} from {mirror} (1-2 minutes on a new machine)")
            run(["debootstrap", f"--variant={VARIANT}", SUITE, str(root / "fs"), mirror], timeout=1200)
            tar = subprocess.Popen(["tar", "-C", str(root / "fs"), "-c", "."], stdout=subprocess.PIPE)
            imported = subprocess.run([self.docker, "import", "-", tag], stdin=tar.stdout, capture_output=True,
                                      timeout=600)
            tar.wait(timeout=60)
            if imported.returncode != 0 or tar.returncode != 0:
                raise ComposeError(f"docker import of the Debian root file system failed: {imported.stderr.decode()}")
        finally:
            shutil.rmtree(root, ignore_errors=True)
        log(f"built {tag} in {time.monotonic() - t0:.0f} s")
        return tag

    def build(self, tag: str, args: list[str], context: Path) -> str:
        if self.exists(tag):
            return tag
        t0 = time.monotonic()
        run([self.docker, "build", "--network", "host", "-t", tag, *args, str(context)], env=self.env, timeout=1800)
        log(f"built {tag} in {time.monotonic() - t0:.0f} s")
        return tag

    def services(self, base: str) -> dict[str, str]:
        dockerfile = DEPLOY / "images" / "Dockerfile.debian"
        tags = {}
        for service in SERVICE_IMAGES:
            tag = f"soma-{service}:{digest(base, service, dockerfile, DEPLOY / 'images' / 'postgres-entrypoint.sh')}"
            tags[service] = self.build(tag, ["-f", str(dockerfile), "--build-arg", f"BASE={base}", "--target", service],
                                       DEPLOY / "images")
        return tags

    def soma(self, base: str, binary: Path, models: Path, directory: Path) -> str:
        for path, make in ((binary, "make release"), (models, "make models")):
            if not path.exists():
                raise ComposeError(f"{path} is missing: run `{make}` first (make compose-up does)")
        dockerfile = DEPLOY / "Dockerfile"
        tag = f"soma:{digest(base, dockerfile, binary, models)}"
        if self.exists(tag):
            return tag
        context = directory / "context"
        shutil.rmtree(context, ignore_errors=True)
        (context / ".build" / "release").mkdir(parents=True)
        shutil.copy2(binary, context / ".build" / "release" / "soma")
        shutil.copytree(models, context / ".build" / "models")
        try:
            return self.build(tag, ["-f", str(dockerfile), "--build-arg", "BINARY_STAGE=prebuilt",
                                    "--build-arg", f"RUNTIME_IMAGE={base}", "--target", "runtime"], context)
        finally:
            shutil.rmtree(context, ignore_errors=True)

    def all(self, binary: Path, models: Path, directory: Path) -> dict[str, str]:
        t0 = time.monotonic()
        base = self.base()
        tags = {"base": base, **self.services(base), "soma": self.soma(base, binary, models, directory)}
        log(f"images ready in {time.monotonic() - t0:.0f} s: {', '.join(sorted(tags.values()))}")
        return tags


class Compose:
    def __init__(self, directory: Path):
        self.dir = directory
        self.state_path = directory / "compose.json"
        self.state: dict = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.docker, self.compose = "", ""

    def connect(self) -> None:
        self.docker, self.compose = engine()

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2) + "\n")
        tmp.replace(self.state_path)

    # -- secrets: generated once per stack, kept out of the state file and out of git
    def secrets(self) -> dict[str, str]:
        path = self.dir / "secrets.env"
        values = {}
        if path.exists():
            values = dict(line.split("=", 1) for line in path.read_text().split())
        changed = False
        for name in ("POSTGRES_PASSWORD", "SOMA_SERVICE_TOKEN", "SOMA_ADMIN_TOKEN"):
            if not values.get(name):
                values[name] = secrets.token_hex(24)
                changed = True
        if changed:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("".join(f"{k}={v}\n" for k, v in values.items()))
        return values

    def environment(self) -> dict[str, str]:
        images = self.state.get("images", {})
        env = dict(os.environ, COMPOSE_PROJECT_NAME=PROJECT, **self.secrets())
        if images:
            env["SOMA_IMAGE"] = images["soma"]
            for service, variable in SERVICE_IMAGES.items():
                env[variable] = images[service]
        return env

    def compose_args(self) -> list[str]:
        return [self.compose, "-p", PROJECT, "-f", str(COMPOSE_FILE), "-f", str(self.dir / "override.json")]

    def dc(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        return run(self.compose_args() + list(args), env=self.environment(), timeout=timeout, check=check)

    # -- the override for this machine
    def render(self, count: int, serving: list[str] | None = None) -> None:
        """The override and the rendered files for COUNT instances; nginx's upstream list names
        SERVING (default: all of them), so an instance can be out of the pool while it is replaced."""
        base = yaml.safe_load(COMPOSE_FILE.read_text())
        services = base["services"]
        declared = sorted((n for n in services if n.startswith("ml-")), key=lambda n: int(n[3:]))
        nginx_dir = self.dir / "nginx"
        (nginx_dir / "logs").mkdir(parents=True, exist_ok=True)
        os.chmod(nginx_dir / "logs", 0o777)   # written by nginx's workers (www-data) in the container
        ids = [f"ml-{n}" for n in range(1, count + 1)]
        upstreams = [(f"127.0.0.1:{INSTANCE_PORT_BASE + n}", f"ml-{n}") for n in range(1, count + 1)]
        pool = [u for u in upstreams if serving is None or u[1] in serving]
        stack.render_nginx_tree(nginx_dir / "conf", pool, http_listen=f"127.0.0.1:{GATEWAY_PORT}",
                                tls_listen=f"127.0.0.1:{TLS_PORT}", affinity=False, fd_limit=65536,
                                pid_file="/run/soma-nginx.pid", log_dir="/var/log/nginx", as_root=True)
        os.chmod(nginx_dir / "conf" / "tls" / "soma.key", 0o644)  # nginx's master reads it; a test key
        prometheus = self.dir / "prometheus"
        prometheus.mkdir(parents=True, exist_ok=True)
        (prometheus / "prometheus.yml").write_text(stack.render_prometheus_config(
            f"127.0.0.1:{FIXED_PORTS['alertmanager']}", f"127.0.0.1:{FIXED_PORTS['prometheus']}"))
        shutil.copyfile(DEPLOY / "prometheus" / "alerts.yml", prometheus / "alerts.yml")
        stack.write_targets_file(prometheus / "soma-targets.json", upstreams)

        conf = nginx_dir / "conf"
        override: dict = {"services": {
            "nginx-lb": {"volumes": [f"{conf / 'nginx.conf'}:/etc/nginx/nginx.conf:ro",
                                     f"{conf / 'nginx'}:/etc/nginx/nginx:ro",
                                     f"{conf / 'soma-upstreams.conf'}:/etc/nginx/soma-upstreams.conf:ro",
                                     f"{conf / 'tls'}:/etc/nginx/tls:ro",
                                     f"{nginx_dir / 'logs'}:/var/log/nginx"]},
            "prometheus": {"volumes": [f"{prometheus}:/etc/prometheus:ro"]},
        }}
        # Settings given to every instance (`up --instance-env`, kept in the state for scale and
        # rollout): merged over the compose file's environment.
        instance_env = self.state.get("instance_env", {})
        # Instances past the compose file's: copies of ml-1 with their own id, port and volume.
        template = services[declared[0]]
        volumes = {}
        for name in ids:
            if name in services:
                if instance_env:
                    override["services"][name] = {"environment": dict(instance_env)}
                continue
            n = int(name[3:])
            definition = copy.deepcopy(template)
            definition["environment"] = dict(definition["environment"], **instance_env, INSTANCE_ID=name,
                                             SOMA_PORT=str(INSTANCE_PORT_BASE + n))
            definition["volumes"] = [f"{name}-state:/var/lib/soma"]
            definition.pop("build", None)
            override["services"][name] = definition
            # Not added to nginx-lb's depends_on: a changed dependency list would make Compose
            # re-create the gateway on every rescale; nginx is reloaded instead (scale()).
            volumes[f"{name}-state"] = {}
        if volumes:
            override["volumes"] = volumes
        (self.dir / "override.json").write_text(json.dumps(override, indent=2) + "\n")
        self.state.update({
            "project": PROJECT, "dir": str(self.dir), "instances_wanted": count,
            # POSTGRES_PASSWORD, SOMA_SERVICE_TOKEN (callers send it as a bearer token), SOMA_ADMIN_TOKEN
            "secrets_file": str(self.dir / "secrets.env"),
            "surplus": [n for n in declared if n not in ids],
            "nginx": {"url": f"http://127.0.0.1:{GATEWAY_PORT}", "port": GATEWAY_PORT,
                      "https_url": f"https://127.0.0.1:{TLS_PORT}", "tls_port": TLS_PORT,
                      "conf": str(conf / "nginx.conf"), "certificate": str(conf / "tls" / "soma.crt"),
                      "access_log": str(nginx_dir / "logs" / "access.log"),
                      "error_log": str(nginx_dir / "logs" / "error.log"), "service": "nginx-lb"},
            "instances": [{"id": name, "service": name, "port": INSTANCE_PORT_BASE + int(name[3:]),
                           "url": f"http://127.0.0.1:{INSTANCE_PORT_BASE + int(name[3:])}"} for name in ids],
            "redis": {"url": f"redis://127.0.0.1:{FIXED_PORTS['redis']}", "port": FIXED_PORTS["redis"],
                      "service": "redis"},
            "postgres": {"port": FIXED_PORTS["postgres"], "service": "postgres"},
            "prometheus": {"url": f"http://127.0.0.1:{FIXED_PORTS['prometheus']}", "port": FIXED_PORTS["prometheus"],
                           "service": "prometheus"},
            "alertmanager": {"url": f"http://127.0.0.1:{FIXED_PORTS['alertmanager']}",
                             "port": FIXED_PORTS["alertmanager"], "service": "alertmanager"},
        })

    # -- containers
    def containers(self) -> dict[str, dict]:
        """service -> {id, name, state, health, restarts} for the project's containers (running or not)."""
        out = run([self.docker, "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"]).stdout
        ids = out.decode().split()
        if not ids:
            return {}
        found = {}
        for item in json.loads(run([self.docker, "inspect", *ids]).stdout):
            service = item["Config"]["Labels"].get("com.docker.compose.service", "?")
            state = item["State"]
            found[service] = {"id": item["Id"][:12], "name": item["Name"].lstrip("/"), "state": state["Status"],
                              "health": (state.get("Health") or {}).get("Status", "none"),
                              "restarts": item.get("RestartCount", 0), "pid": state.get("Pid", 0),
                              "image": item["Config"]["Image"], "exit_code": state.get("ExitCode")}
        return found

    def long_running(self) -> list[str]:
        return ["nginx-lb", "redis", "postgres", "prometheus", "alertmanager"] + [i["service"] for i in self.state["instances"]]

    def wait_healthy(self, timeout: float = 240, answering: list[str] | None = None) -> float:
        """Until every long-running container is healthy, or, for the services in ANSWERING (new
        instances joining a running stack), answers /ready itself: Docker's health status trails the
        first good probe by up to its 10 s interval, and a scale-up should not wait for it."""
        t0 = time.monotonic()
        wanted = self.long_running()
        urls = {i["service"]: i["url"] for i in self.state["instances"]}
        while time.monotonic() - t0 < timeout:
            found = self.containers()
            if all(found.get(s, {}).get("health") == "healthy"
                   or (s in (answering or []) and found.get(s, {}).get("state") == "running"
                       and stack.http_status(f"{urls[s]}/ready") == 200) for s in wanted):
                return time.monotonic() - t0
            dead = [s for s in wanted if found.get(s, {}).get("state") in ("exited", "dead")]
            if dead:
                logs = self.dc("logs", "--tail", "20", *dead, check=False).stdout.decode(errors="replace")
                raise ComposeError(f"{', '.join(dead)} exited during start:\n{logs}")
            time.sleep(0.3 if answering else 1)
        found = self.containers()
        lagging = {s: found.get(s, {}).get("health", "absent") for s in wanted if found.get(s, {}).get("health") != "healthy"}
        raise ComposeError(f"not healthy after {timeout:.0f} s: {lagging}")

    def preflight(self) -> None:
        running = self.containers()
        if running:
            return  # our own stack holds the ports
        ports = [GATEWAY_PORT, TLS_PORT, *FIXED_PORTS.values()] + [i["port"] for i in self.state["instances"]]
        taken = [p for p in ports if stack.port_in_use(p)]
        if taken:
            raise ComposeError(f"127.0.0.1 ports {taken} are in use (a `make stack-up` or `make run`?); the compose "
                               "stack uses host networking and needs them free")

    def up(self, count: int, binary: Path, models: Path, instance_env: dict[str, str] | None = None) -> None:
        if not 1 <= count <= MAX_INSTANCES:
            raise ComposeError(f"--instances must be 1..{MAX_INSTANCES}")
        if instance_env is not None:
            self.state["instance_env"] = instance_env
        t0 = time.monotonic()
        self.connect()
        self.dir.mkdir(parents=True, exist_ok=True)
        previous = self.state.get("images", {}).get("soma")
        self.state["images"] = Images(self.docker).all(binary, models, self.dir)
        new_soma = self.state["images"]["soma"]
        before = self.containers()
        gateway_running = before.get("nginx-lb", {}).get("state") == "running"
        if gateway_running and previous and previous != new_soma:
            # A running stack gets a new build one instance at a time (rollout below), never all at once.
            self.state["images"]["soma"] = previous
        self.apply(count, before)
        if self.state["images"]["soma"] != new_soma:
            log(f"a new soma build ({new_soma}): rolling update, one instance at a time")
            self.rollout(new_soma)
        self.state["timings"]["total_s"] = round(time.monotonic() - t0, 1)
        self.save()

    def scale(self, count: int) -> None:
        """Rescales a running stack to COUNT instances on its recorded images (`soma autoscale`)."""
        if not 1 <= count <= MAX_INSTANCES:
            raise ComposeError(f"--instances must be 1..{MAX_INSTANCES}")
        self.connect()
        before = self.containers()
        if before.get("nginx-lb", {}).get("state") != "running" or not self.state.get("images"):
            raise ComposeError("no running compose stack; run `make compose-up` first")
        self.apply(count, before, fast=True)

    def replace(self, service: str) -> None:
        """Replaces one instance that is dead or failing (`soma autoscale`'s supervisor): out of
        nginx's pool, re-created, /ready, back in. The restart policy brings back a process that
        exits; this is for one that hangs or fails its readiness. One that answers again is left alone."""
        self.connect()
        ids = [i["service"] for i in self.state.get("instances", [])]
        if service not in ids:
            raise ComposeError(f"no instance {service} in this stack")
        url = next(i["url"] for i in self.state["instances"] if i["service"] == service)
        if stack.http_status(f"{url}/ready") == 200:
            log(f"{service} answers /ready again; left alone")
            return
        t0 = time.monotonic()
        count = len(ids)
        self.render(count, serving=[s for s in ids if s != service])
        self.reload_nginx()
        self.dc("up", "-d", "--no-build", "--no-deps", "--force-recreate", "-t", "5", service, timeout=300)
        if not stack.wait_until(lambda: stack.http_status(f"{url}/ready") == 200, 120, 0.2):
            raise ComposeError(f"{service} not ready after 120 s")
        self.render(count)
        self.reload_nginx()
        log(f"{service} replaced in {time.monotonic() - t0:.1f} s")

    def describe(self) -> dict:
        return {"instances": [{"id": i["service"], "url": i["url"]} for i in self.state.get("instances", [])],
                "prometheus": self.state.get("prometheus", {}).get("url"), "autoscale_metrics": "127.0.0.1:9465"}

    def apply(self, count: int, before: dict[str, dict], fast: bool = False) -> None:
        """COUNT instances on the recorded images: the gateway is never re-created; leaving
        instances leave nginx's pool before they drain, new ones join once healthy. FAST (a rescale
        of a running stack) acts on the instances alone."""
        gateway_running = before.get("nginx-lb", {}).get("state") == "running"
        self.render(count)
        self.save()
        self.preflight()
        t_up = time.monotonic()
        wanted = [i["service"] for i in self.state["instances"]]
        running = [s for s in before if s.startswith("ml-") and before[s]["state"] == "running"]
        if gateway_running and set(running) - set(wanted):
            # Shrinking: out of nginx's pool first, so the instances leaving get no new requests
            # while they drain (Compose stops them with SIGTERM: drain, in-flight finish, exit).
            self.render(count, serving=[s for s in wanted if s in running])
            self.reload_nginx()
            self.render(count)
        others_running = all(before.get(s, {}).get("state") == "running" for s in self.long_running()
                             if not s.startswith("ml-"))
        if fast and gateway_running and others_running:
            # Only instances change: Compose touches just them (a whole-project `up` spends ~10 s
            # checking every other service). Leaving ones: SIGTERM (drain), then removed; volumes stay.
            joining = [s for s in wanted if s not in running]
            leaving = [s for s in running if s not in wanted]
            if joining:
                self.dc("up", "-d", "--no-build", "--no-deps", *joining, timeout=300)
            for service in leaving:
                # By container: an instance past the compose file's is no longer in the rendered
                # override, so Compose does not know the service any more.
                name = before[service]["name"]
                run([self.docker, "stop", "-t", "40", name], timeout=120)
                run([self.docker, "rm", name], timeout=60)
        else:
            scale = [f"--scale={name}=0" for name in self.state["surplus"]]
            self.dc("up", "-d", "--no-build", "--remove-orphans", *scale, timeout=900)
        healthy = self.wait_healthy(answering=[s for s in wanted if s not in running] if gateway_running else None)
        if gateway_running and set(wanted) != set(running):
            self.reload_nginx()   # the new upstream list, now that every instance in it is healthy
        self.state["containers"] = self.containers()
        self.state["timings"] = {"up_s": round(time.monotonic() - t_up, 1), "healthy_after_up_s": round(healthy, 1)}
        self.save()
        if stack.http_status(f"{self.state['nginx']['url']}/ready") != 200:
            raise ComposeError("nginx-lb is healthy but 127.0.0.1:8788/ready does not answer 200")
        log(f"up: {count} instance(s) behind nginx at {self.state['nginx']['url']}; every container healthy "
            f"{time.monotonic() - t_up:.0f} s after `up`")

    def container(self, service: str) -> str:
        found = self.containers().get(service)
        if not found:
            raise ComposeError(f"no container for {service}")
        return found["name"]

    def reload_nginx(self) -> None:
        """nginx -t inside the gateway's container, then SIGHUP: new workers read the rendered files,
        old ones finish their requests."""
        name = self.container("nginx-lb")
        run([self.docker, "exec", name, "nginx", "-t", "-q"], timeout=60)
        run([self.docker, "kill", "-s", "HUP", name], timeout=30)
        time.sleep(0.5)

    def rollout(self, image: str) -> list[dict]:
        """A rolling update to IMAGE, one instance at a time: out of nginx's pool, re-created on the
        new image (SIGTERM: drain, in-flight requests finish), healthy, back in the pool."""
        self.connect()
        count = len(self.state["instances"])
        ids = [i["service"] for i in self.state["instances"]]
        steps = []
        self.state["images"]["soma"] = image
        # The new release's schema first (additive migrations: the old instances keep working).
        self.dc("run", "--rm", "-T", "--no-deps", "migrate", timeout=300)
        for service in ids:
            t0 = time.monotonic()
            self.render(count, serving=[s for s in ids if s != service])
            self.reload_nginx()
            self.dc("up", "-d", "--no-build", "--no-deps", service, timeout=300)
            # Back in the pool as soon as it is ready (/ready 200), not at Docker's next health probe.
            url = next(i["url"] for i in self.state["instances"] if i["service"] == service)
            if not stack.wait_until(lambda: self.containers().get(service, {}).get("image") == image
                                    and stack.http_status(f"{url}/ready") == 200, 120, 0.2):
                raise ComposeError(f"{service} not ready on {image} after 120 s")
            self.render(count)
            self.reload_nginx()
            steps.append({"service": service, "seconds": round(time.monotonic() - t0, 1),
                          "image": self.containers()[service]["image"]})
            log(f"rollout: {service} on {image} in {steps[-1]['seconds']} s")
        self.state["containers"] = self.containers()
        self.save()
        return steps

    def status(self) -> dict:
        found = self.containers() if self.docker else {}
        components = []
        for service in self.long_running() if self.state.get("instances") else []:
            c = found.get(service, {})
            url = None
            if service.startswith("ml-"):
                url = next(i["url"] for i in self.state["instances"] if i["service"] == service) + "/ready"
            elif service == "nginx-lb":
                url = self.state["nginx"]["url"] + "/ready"
            elif service in ("prometheus", "alertmanager"):
                url = self.state[service]["url"] + "/-/ready"
            answers = stack.http_status(url) == 200 if url else None
            components.append({"service": service, "container": c.get("name"), "state": c.get("state", "absent"),
                               "health": c.get("health", "absent"), "restarts": c.get("restarts", 0),
                               "answers": answers})
        ok = bool(components) and all(c["health"] == "healthy" and c["answers"] is not False for c in components)
        return {"ok": ok, "project": PROJECT, "components": components, "timings": self.state.get("timings")}

    def down(self, purge: bool) -> None:
        self.connect()
        if not (self.dir / "override.json").exists():
            self.render(self.state.get("instances_wanted", 3))
        args = ["down", "--remove-orphans", "--timeout", "35"] + (["--volumes"] if purge else [])
        self.dc(*args, timeout=600)
        left = self.containers()
        if left:
            raise ComposeError(f"containers left after down: {sorted(c['name'] for c in left.values())}")
        if purge:
            volumes = run([self.docker, "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"]).stdout.decode().split()
            if volumes:
                run([self.docker, "volume", "rm", *volumes])
            shutil.rmtree(self.dir, ignore_errors=True)
        log("down" + (": containers, volumes and state removed" if purge else ": containers removed (volumes kept)"))


def instance_env(pairs: list[str] | None) -> dict[str, str] | None:
    """`--instance-env` values as a mapping; None when none were given (the recorded ones stay)."""
    if pairs is None:
        return None
    env = {}
    for pair in filter(None, pairs):
        name, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"SOMA_[A-Z0-9_]+", name):
            raise ComposeError(f"--instance-env {pair!r}: expected SOMA_NAME=VALUE")
        env[name] = value
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description="the compose stack under a local Docker engine")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up")
    up.add_argument("--instances", type=int, default=int(os.environ.get("INSTANCES", "3")))
    up.add_argument("--instance-env", action="append", default=None, metavar="SOMA_NAME=VALUE",
                    help="a setting for every instance (repeatable; kept for scale and rollout; "
                         "`--instance-env ''` clears them)")
    for p in (up, sub.add_parser("images")):
        p.add_argument("--binary", type=Path, default=REPO / ".build/release/soma")
        p.add_argument("--model-dir", type=Path, default=REPO / ".build/models")
    status = sub.add_parser("status")
    status.add_argument("--json", action="store_true")
    down = sub.add_parser("down")
    down.add_argument("--purge", action="store_true")
    rollout = sub.add_parser("rollout", help="rolling update of the instances to another soma image")
    rollout.add_argument("image")
    # The autoscaler's interface (`soma autoscale --stack compose`; scripts/stack.py has the same three).
    sub.add_parser("instances").add_argument("--json", action="store_true", help="(the only format)")
    scale = sub.add_parser("scale", help="rescale a running stack on its recorded images")
    scale.add_argument("--instances", type=int, required=True)
    sub.add_parser("replace", help="replace one dead or failing instance").add_argument("instance")
    args = parser.parse_args()

    c = Compose(state_dir())
    try:
        if args.command == "up":
            c.up(args.instances, args.binary.resolve(), args.model_dir.resolve(), instance_env(args.instance_env))
            print(json.dumps({"gateway": c.state["nginx"]["url"], "https": c.state["nginx"]["https_url"],
                              "prometheus": c.state["prometheus"]["url"],
                              "alertmanager": c.state["alertmanager"]["url"],
                              "instances": [i["url"] for i in c.state["instances"]], "state": str(c.state_path)},
                             indent=2))
        elif args.command == "images":
            c.connect()
            print(json.dumps(Images(c.docker).all(args.binary.resolve(), args.model_dir.resolve(), c.dir), indent=2))
        elif args.command == "status":
            if not c.state:
                print(json.dumps({"ok": False, "reason": f"no compose stack recorded in {c.dir}"}))
                return 1
            c.docker, c.compose = engine() if subprocess.run([str(REPO / "scripts/docker-engine.sh"), "status"]).returncode == 0 else ("", "")
            health = c.status()
            if args.json:
                print(json.dumps({"state": c.state, "health": health}, indent=2))
            else:
                for comp in health["components"]:
                    print(f"{comp['service']:14} {comp['state']:10} {comp['health']:10} restarts={comp['restarts']} "
                          f"answers={comp['answers']}")
                print("ok" if health["ok"] else "NOT OK")
            return 0 if health["ok"] else 1
        elif args.command == "down":
            c.down(args.purge)
        elif args.command == "rollout":
            print(json.dumps(c.rollout(args.image), indent=2))
        elif args.command == "instances":
            if not c.state.get("instances"):
                log(f"no compose stack recorded in {c.dir}")
                return 1
            print(json.dumps(c.describe(), indent=2))
        elif args.command == "scale":
            c.scale(args.instances)
        elif args.command == "replace":
            c.replace(args.instance)
    except (ComposeError, stack.StackError) as error:
        log(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
