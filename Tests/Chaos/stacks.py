"""The two stacks the chaos suite drives (scripts/stack.py, scripts/compose.py) behind one small interface:
bring up / tear down, the instances, PostgreSQL's URL, and the faults (SIGKILL of an instance, a
dependency stopped or hung, a rolling restart, an nginx reload). Every fault is undone by `heal()`,
which the harness calls in its finally: paused processes/containers are resumed, stopped ones started.
Everything targets 127.0.0.1. Process and Docker helpers come from scripts/stack.py and
scripts/stack-check.py."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))
import stack  # noqa: E402  (process helpers: free_port, alive, descendants, wait_until, http_status)


def _stack_check():
    spec = importlib.util.spec_from_file_location("stack_check", SCRIPTS / "stack-check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StackError(Exception):
    pass


def say(message: str) -> None:
    print(f"chaos: {message}", flush=True)


class Base:
    kind = "?"

    def __init__(self, binary: Path, model_dir: Path, out: Path, instances: int, env_extra: dict, label: str = ""):
        """env_extra: settings for every instance (SOMA_*); label names this stack's log directory."""
        self.binary, self.model_dir, self.out, self.count = binary, model_dir, out, instances
        self.env_extra = env_extra
        self.logs_dir = out / ("logs-" + label if label else "logs")
        self.paused: set = set()     # what heal() must resume
        self.stopped: set = set()    # what heal() must start again
        self.log = open(out / "stack.log", "a")

    def run(self, args: list[str], timeout: float, check: bool = True) -> subprocess.CompletedProcess:
        self.log.write(f"$ {' '.join(map(str, args))}\n")
        self.log.flush()
        result = subprocess.run([str(a) for a in args], env=self.env, cwd=REPO, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=timeout)
        self.log.write(result.stdout + result.stderr)
        self.log.flush()
        if check and result.returncode != 0:
            raise StackError(f"{' '.join(map(str, args[:3]))} failed ({result.returncode}):\n{result.stderr[-2000:]}")
        return result

    def state(self) -> dict:
        return json.loads(self.state_path.read_text())

    @property
    def gateway(self) -> str:
        return self.state()["nginx"]["url"]

    def instances(self) -> list[dict]:
        """[{id, url}] of the running instances."""
        return [{"id": i.get("id") or i.get("service"), "url": i["url"]} for i in self.state()["instances"]]

    def psql_url(self) -> str:
        return self.state()["postgres"]["url"]

    def service_token(self) -> str | None:
        return None

    def keep_logs(self) -> None:
        pass


class Local(Base):
    """scripts/stack.py in a directory of its own under /tmp (PostgreSQL runs as its own user and
    must reach it), a free gateway port. Instances inherit the harness' environment (env_extra)."""
    kind = "local"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dir = Path(tempfile.mkdtemp(prefix="soma-chaos-"))
        self.dir.chmod(0o755)
        self.port = stack.free_port(set())
        self.env = dict(os.environ, SOMA_STACK_DIR=str(self.dir), SOMA_STACK_PORT=str(self.port), **self.env_extra)
        self.env.pop("SOMA_SLOWDOWN", None)
        self.state_path = self.dir / "stack.json"
        self.script = [sys.executable, str(SCRIPTS / "stack.py")]

    def up(self) -> None:
        self.run(self.script + ["up", "--instances", str(self.count), "--binary", self.binary, "--model-dir",
                                self.model_dir, "--load-test-limit", "100000"], 300)

    def down(self) -> None:
        if self.state_path.exists():
            result = self.run(self.script + ["down", "--purge"], 300, check=False)
            if result.returncode != 0:
                say(f"WARNING: stack down failed; SOMA_STACK_DIR={self.dir} scripts/stack.py down --purge")

    def instances(self) -> list[dict]:
        return [{"id": i["id"], "url": i["url"], "pid": i["pid"]} for i in self.state()["instances"]]

    def keep_logs(self) -> None:
        """nginx's error log and every instance's log into the report directory (down --purge removes them)."""
        if not self.state_path.exists():
            return
        state = self.state()
        logs = self.logs_dir
        logs.mkdir(exist_ok=True)
        for source, name in [(state.get("nginx", {}).get("error_log"), "nginx-error.log")] + \
                [(i.get("log"), f"{i['id']}.log") for i in state.get("instances", [])]:
            if source and Path(source).exists():
                (logs / name).write_bytes(Path(source).read_bytes()[-2_000_000:])

    # -- faults --
    def kill_instance(self, instance: dict) -> str:
        pid = next(i["pid"] for i in self.state()["instances"] if i["id"] == instance["id"])
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL pid {pid}"

    def recover_instance(self, instance: dict) -> str:
        """No restart policy on the local stack: do what a supervisor does once the instance is seen
        dead (its /ready no longer answers): `stack.py replace`."""
        stack.wait_until(lambda: stack.http_status(f"{instance['url']}/ready", timeout=0.5) != 200, 10, 0.1)
        self.run(self.script + ["replace", instance["id"]], 120)
        return "stack.py replace"

    def _dep_pids(self, name: str) -> list[int]:
        root = self.state()[name]["pid"]
        return sorted({root} | stack.descendants([root]))

    def pause(self, name: str) -> None:
        for pid in self._dep_pids(name):
            try:
                os.kill(pid, signal.SIGSTOP)
                self.paused.add(pid)
            except ProcessLookupError:
                pass

    def resume(self, name: str) -> None:
        for pid in sorted(self.paused):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.paused.clear()

    def stop(self, name: str) -> None:
        script = "redis-server.sh" if name == "redis" else "postgres-server.sh"
        self.stopped.add(name)
        self.run([SCRIPTS / script, "stop", self.state()[name]["dir"]], 120)

    def start(self, name: str) -> None:
        """Started again on the same port (the scripts reuse DIR's port; PostgreSQL keeps its data);
        the new PID recorded in stack.json so `down` stops it."""
        script = "redis-server.sh" if name == "redis" else "postgres-server.sh"
        args = ["--maxmemory", "2gb", "--maxmemory-policy", "allkeys-lru"] if name == "redis" else []
        result = self.run([SCRIPTS / script, "start", self.state()[name]["dir"], *args], 120)
        values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        state = self.state()
        prefix = "REDIS" if name == "redis" else "POSTGRES"
        if int(values[f"{prefix}_PORT"]) != state[name]["port"]:
            raise StackError(f"{name} came back on another port ({values[f'{prefix}_PORT']})")
        state[name]["pid"] = int(values[f"{prefix}_PID"])
        self.state_path.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
        self.stopped.discard(name)

    def dep_port(self, name: str) -> int:
        return self.state()[name]["port"]

    def rolling_restart(self) -> None:
        self.run(self.script + ["restart"], 300)

    def reload_gateway(self) -> None:
        os.kill(self.state()["nginx"]["pid"], signal.SIGHUP)

    def heal(self) -> None:
        if self.paused:
            self.resume("*")
        for name in list(self.stopped):
            try:
                self.start(name)
            except Exception as error:  # noqa: BLE001 - the stack goes down next anyway
                say(f"WARNING: {name} not restarted: {error}")
                self.stopped.discard(name)


class Compose(Base):
    """scripts/compose.py with a state directory of its own (the project and ports are compose.py's:
    nginx on 127.0.0.1:8788). The Docker engine must run (scripts/docker-engine.sh start)."""
    kind = "compose"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dir = Path(tempfile.mkdtemp(prefix="soma-chaos-compose-"))
        self.env = dict(os.environ, SOMA_COMPOSE_DIR=str(self.dir), **self.env_extra)
        self.env.pop("SOMA_SLOWDOWN", None)
        self.state_path = self.dir / "compose.json"
        self.script = [sys.executable, str(SCRIPTS / "compose.py")]
        self.sc = _stack_check()
        self.docker = self.sc.docker_cmd()
        self.extra_tags: list[str] = []

    def up(self) -> None:
        # The instances' settings go into compose.py's override (containers see only what it declares).
        settings = [arg for name, value in sorted(self.env_extra.items()) for arg in ("--instance-env", f"{name}={value}")]
        self.run(self.script + ["up", "--instances", str(self.count), "--binary", self.binary, "--model-dir",
                                self.model_dir] + settings, 900)

    def down(self) -> None:
        if self.state_path.exists():
            result = self.run(self.script + ["down", "--purge"], 300, check=False)
            if result.returncode != 0:
                say(f"WARNING: compose down failed; SOMA_COMPOSE_DIR={self.dir} scripts/compose.py down --purge")
        for tag in self.extra_tags:
            self.run(self.docker + ["rmi", "-f", tag], 60, check=False)

    def keep_logs(self) -> None:
        """nginx's error log (on the host) and the instances' container logs into the report directory."""
        if not self.state_path.exists():
            return
        logs = self.logs_dir
        logs.mkdir(exist_ok=True)
        error_log = Path(self.state().get("nginx", {}).get("error_log", "/nonexistent"))
        if error_log.exists():
            (logs / "nginx-error.log").write_bytes(error_log.read_bytes()[-2_000_000:])
        for service, container in self.containers().items():
            if service.startswith("ml-"):
                result = subprocess.run(self.docker + ["logs", "--tail", "3000", container["name"]], capture_output=True,
                                        timeout=30)
                (logs / f"{service}.log").write_bytes(result.stdout + result.stderr)

    def containers(self) -> dict:
        return self.sc.containers_of({"SOMA_COMPOSE_PROJECT": self.state()["project"]})

    def instances(self) -> list[dict]:
        return [{"id": i["service"], "url": i["url"], "service": i["service"]} for i in self.state()["instances"]]

    def psql_url(self) -> str:
        state = self.state()
        if "url" in state.get("postgres", {}):
            return state["postgres"]["url"]
        # deploy/docker-compose-ml.yml's DATABASE_URL, with the password from the stack's secrets file
        secrets = dict(line.split("=", 1) for line in Path(state["secrets_file"]).read_text().splitlines() if "=" in line)
        return f"postgresql://soma:{secrets['POSTGRES_PASSWORD'].strip()}@127.0.0.1:{state['postgres']['port']}/soma"

    def service_token(self) -> str | None:
        state = self.state()
        secrets = dict(line.split("=", 1) for line in Path(state["secrets_file"]).read_text().splitlines() if "=" in line)
        return secrets.get("SOMA_SERVICE_TOKEN", "").strip() or None

    def kill_instance(self, instance: dict) -> str:
        """A crash: the container's main process SIGKILLed from the host (never `docker kill`, which
        Docker records as an operator stop and never restarts)."""
        container = self.containers()[instance["service"]]
        self.restarts_before = container["restarts"]
        pid = int(self.run(self.docker + ["inspect", "-f", "{{.State.Pid}}", container["name"]], 30).stdout.strip())
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL host pid {pid}"

    def recover_instance(self, instance: dict) -> str:
        return "restart policy"  # Docker restarts it (restart: unless-stopped)

    def _name(self, name: str) -> str:
        return self.containers()[name]["name"]

    def pause(self, name: str) -> None:
        container = self._name(name)
        self.paused.add(container)
        self.run(self.docker + ["pause", container], 30)

    def resume(self, name: str) -> None:
        for container in sorted(self.paused):
            self.run(self.docker + ["unpause", container], 30, check=False)
        self.paused.clear()

    def stop(self, name: str) -> None:
        container = self._name(name)
        self.stopped.add(container)
        self.run(self.docker + ["stop", "-t", "10", container], 60)

    def start(self, name: str) -> None:
        container = name if name in self.stopped else self._name(name)
        self.run(self.docker + ["start", container], 60)
        self.stopped.discard(container)

    def dep_port(self, name: str) -> int:
        return int(self.state()[name]["port"])

    def rolling_restart(self) -> None:
        """`compose.py rollout` to the same image under a new tag (same content, a LABEL more: the
        same binary, but a changed image makes docker-compose re-create each container). The tag
        is removed after `down`."""
        current = self.state()["images"]["soma"]
        tag = current.split(":")[0] + ":chaos-" + str(int(time.time()))
        built = subprocess.run(self.docker + ["build", "-q", "-t", tag, "-"], input=f"FROM {current}\nLABEL soma.chaos={tag}\n",
                               capture_output=True, text=True, timeout=120, env=dict(self.env, DOCKER_BUILDKIT="1"))
        if built.returncode != 0:
            raise StackError(f"docker build of {tag} failed: {built.stderr[-500:]}")
        self.extra_tags.append(tag)
        self.run(self.script + ["rollout", tag], 600)

    def reload_gateway(self) -> None:
        self.run(self.docker + ["kill", "-s", "HUP", self._name("nginx-lb")], 30)

    def heal(self) -> None:
        if self.paused:
            self.resume("*")
        for container in list(self.stopped):
            self.run(self.docker + ["start", container], 60, check=False)
            self.stopped.discard(container)
