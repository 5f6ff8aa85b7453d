#!/usr/bin/env python3
"""`make chaos` / `make chaos-short`: fault injection under load on a fresh stack of its own.

Each scenario runs one soma-load (open loop, a ledger of every entry write), injects one kind of
fault while it runs, then asserts its figures from soma-load's report.json / series.csv (per second),
the instances' /metrics and `soma-load audit-writes` against PostgreSQL. One result line per scenario,
a JSON report per scenario, a summary table and chaos-report.json at the end; the exit code is
non-zero when any scenario fails.

  1 kill      a random instance SIGKILLed (compose: its main process from the host; local: its PID,
              then `stack.py replace` as a supervisor would)
  3 postgres  PostgreSQL stopped, then hung (paused), for WINDOW s each
  2 redis     Redis stopped, then hung, for WINDOW s each; a rate-limit burst during each; the shared
              cache after recovery
  6 rolling   a rolling restart of every instance and two nginx reloads
  4 partition Redis's, then PostgreSQL's loopback port blackholed (nftables table inet soma_chaos, drop)
              for WINDOW s each; breakers, latency bounds, automatic recovery
  5 overload  ten times capacity for WINDOW s over a steady half-capacity load, on a stack of its own
              whose capacity is small on purpose (one worker per instance, each analysis held longer):
              only 2xx/429/503 with Retry-After, premium p95 < 200 ms, free shed first, normal again in 10 s

Stack: SOMA_STACK=compose (default) or local. Binaries: SOMA_BIN, SOMA_LOAD_BIN (default
.build/release/soma, .build/release/soma-load). --short: scenarios 1 and 3 with short windows.
Every fault is bounded in time, only targets 127.0.0.1, and is undone in a finally (resumed,
restarted); the stack is torn down on success, failure, Ctrl-C and SIGTERM.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stacks  # noqa: E402
from stacks import REPO, say  # noqa: E402

ANALYSIS_ROUTES = ("POST /v1/analyze", "POST /v1/{module}", "POST /v1/analyze/batch")
MIX = "analyze=50,module=15,batch=5,entryWrite=15,entryList=10,profile=5"


# ---------------------------------------------------------------- helpers
def metrics(url: str, timeout: float = 2.0) -> list[tuple[str, dict, float]]:
    """An instance's /metrics as (name, labels, value); [] when it does not answer."""
    try:
        text = urllib.request.urlopen(f"{url}/metrics", timeout=timeout).read().decode()
    except (OSError, ValueError):
        return []
    samples = []
    for line in text.splitlines():
        m = re.match(r'^([a-zA-Z_:][\w:]*)(\{([^}]*)\})? (\S+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
            samples.append((m.group(1), labels, float(m.group(4))))
    return samples


def metric_sum(url: str, name: str, **want) -> float | None:
    samples = metrics(url)
    if not samples:
        return None
    return sum(v for n, labels, v in samples if n == name and all(labels.get(k) == w for k, w in want.items()))


def post(url: str, body: dict, headers: dict, timeout: float = 5.0) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)
    except OSError:
        return 0, {}


class LoadRun:
    """One soma-load process with a ledger; its stdout is followed so the wall-clock time of its
    second 0 is known (series.csv's seconds and the ledger's microseconds count from it)."""

    def __init__(self, harness: "Harness", name: str, duration: float, rate: float, users: int, mix: str = MIX,
                 ramp: float = 2, new_texts: float = 0.2, tiers: str | None = None):
        self.h, self.name, self.duration, self.ramp = harness, name, duration, ramp
        self.dir = harness.out / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ledger = self.dir / "ledger.jsonl"
        args = [str(harness.args.load_bin), "--url", harness.stack.gateway, "--stack-state", str(harness.stack.state_path),
                "--corpus", str(harness.args.corpus), "--users", str(users), "--rate", str(rate), "--ramp-up", str(ramp),
                "--warm-up", "0", "--duration", str(duration), "--mix", mix, "--new-texts", str(new_texts),
                "--seed", str(random.randrange(1 << 30)), "--out", str(self.dir), "--ledger", str(self.ledger)]
        if tiers:
            args += ["--tiers", tiers]
        self.log = open(self.dir / "soma-load.log", "w")
        self.launched = time.time()
        self.origin: float | None = None
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        cwd=REPO, start_new_session=True, text=True, bufsize=1)
        harness.loads.append(self.process)
        self.reader = threading.Thread(target=self._follow, daemon=True)
        self.reader.start()

    def _follow(self) -> None:
        for line in self.process.stdout:
            self.log.write(line)
            m = re.match(r"t=\s*(\d+)s", line)
            if m and self.origin is None:
                # the line for second N is printed as second N ends
                self.origin = time.time() - (int(m.group(1)) + 1)
        self.log.flush()

    def wait_started(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.origin is None and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise stacks.StackError(f"soma-load exited ({self.process.returncode}); see {self.dir / 'soma-load.log'}")
            time.sleep(0.1)
        if self.origin is None:
            raise stacks.StackError("soma-load printed no progress")

    def elapsed(self) -> float:
        return time.time() - (self.origin or self.launched)

    def sleep_until(self, second: float) -> None:
        delay = second - self.elapsed()
        if delay > 0:
            time.sleep(delay)

    def finish(self) -> None:
        try:
            self.process.wait(timeout=self.duration + 60)
        except subprocess.TimeoutExpired:
            raise stacks.StackError(f"soma-load ({self.name}) still running {self.duration + 60:.0f} s after it should end")
        self.reader.join(5)
        self.report = json.loads((self.dir / "report.json").read_text())
        with open(self.dir / "series.csv") as f:
            self.series = [{k: (float(v) if k not in ("phase",) else v) for k, v in row.items()} for row in csv.DictReader(f)]
        self.entries = [json.loads(line) for line in self.ledger.read_text().splitlines() if line.strip()]

    def second(self, wall: float) -> float:
        return wall - self.origin

    def rows(self, start: float, end: float) -> list[dict]:
        """series.csv rows whose second lies within [start, end) (wall-clock times)."""
        a, b = self.second(start), self.second(end)
        return [r for r in self.series if a - 1 < r["second"] < b]

    def writes(self, start: float, end: float) -> list[dict]:
        a, b = self.second(start) * 1e6, self.second(end) * 1e6
        return [e for e in self.entries if a <= e["sent_us"] < b]

    def outcomes(self, routes=None) -> dict:
        total: dict = {}
        for route, data in self.report["routes"].items():
            if routes is None or route in routes:
                for outcome, n in data["outcomes"].items():
                    total[outcome] = total.get(outcome, 0) + n
        return total


def count(outcomes: dict, predicate) -> int:
    return sum(n for outcome, n in outcomes.items() if predicate(outcome))


def is_5xx(outcome: str) -> bool:
    return outcome.startswith("5") or outcome in ("timeout", "connection failure", "connection_failure")


def failed_outcome(outcome: str) -> bool:
    return outcome != "2xx"


class Scenario:
    def __init__(self, harness: "Harness", number: int, name: str):
        self.h, self.number, self.name = harness, number, name
        self.checks: list[dict] = []
        self.figures: dict = {}
        self.events: list[tuple[float, str]] = []
        self.t0 = time.time()

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        self.checks.append({"name": what, "passed": bool(ok), "detail": detail})
        say(f"  {'ok  ' if ok else 'FAIL'} {what}" + (f" ({detail})" if detail else ""))
        return ok

    def event(self, what: str) -> float:
        now = time.time()
        self.events.append((now, what))
        say(f"  t={now - self.t0:6.1f} s  {what}")
        return now

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c["passed"] for c in self.checks)

    def audit(self, load: LoadRun) -> dict | None:
        """soma-load audit-writes over the entries of this run's users (their ids share the run's prefix)."""
        if not load.entries:
            self.check(False, "audit: the run wrote entries", "empty ledger")
            return None
        prefix = load.entries[0]["user"].rsplit("-u", 1)[0] + "-u"
        rows = load.dir / "received.tsv"
        result = subprocess.run(["psql", self.h.stack.psql_url(), "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c",
                                 f"SELECT id, user_id, received FROM entries WHERE user_id LIKE '{prefix}%'"],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            self.check(False, "audit: entries read from PostgreSQL", result.stderr.strip()[-300:])
            return None
        rows.write_text(result.stdout)
        audit = subprocess.run([str(self.h.args.load_bin), "audit-writes", "--ledger", str(load.ledger), "--received", str(rows)],
                               capture_output=True, text=True, timeout=120)
        try:
            verdict = json.loads(audit.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.check(False, "audit-writes printed its verdict", (audit.stdout + audit.stderr)[-300:])
            return None
        (load.dir / "audit.json").write_text(json.dumps(verdict, indent=2) + "\n")
        self.figures["audit"] = verdict
        self.check(audit.returncode == 0 and verdict.get("passed") is True,
                   "audit: every acknowledged entry stored exactly once, in acknowledgement order per user and instance",
                   f"acknowledged {verdict.get('acknowledged')} (queued {verdict.get('queued')}), missing {verdict.get('missing')}, "
                   f"duplicated {verdict.get('duplicated')}, reordered {verdict.get('reordered')} of "
                   f"{verdict.get('ordered_pairs')} pairs, unacknowledged {verdict.get('unacknowledged')}, "
                   f"stored unacknowledged {verdict.get('stored_unacknowledged')}")
        return verdict

    def load_figures(self, load: LoadRun) -> dict:
        m = load.report["measured"]
        figures = {"requests": m["requests"], "achieved_rate": round(m["achieved_rate"], 1), "outcomes": m["outcomes"],
                   "error_rate": m["error_rate"], "p95_ms": m["latency_ms"].get("p95"), "p99_ms": m["latency_ms"].get("p99"),
                   "max_ms": m["latency_ms"].get("max"),
                   "retried_after_connection_close": m.get("retried_after_connection_close", 0)}
        self.figures["load"] = figures
        self.figures["routes"] = {r: {"outcomes": d["outcomes"], "p95_ms": d["latency_ms"].get("p95"),
                                      "p99_ms": d["latency_ms"].get("p99"), "max_ms": d["latency_ms"].get("max")}
                                  for r, d in load.report["routes"].items()}
        return figures

    def result(self) -> dict:
        return {"scenario": self.number, "name": self.name, "passed": self.passed, "seconds": round(time.time() - self.t0, 1),
                "figures": self.figures, "checks": self.checks,
                "events": [{"t_s": round(t - self.t0, 2), "event": e} for t, e in self.events]}


# ---------------------------------------------------------------- scenarios
def started_load(h: "Harness", name: str, duration: float, fault_at: float) -> LoadRun:
    """The scenario's load (the harness' rate and users, with a ledger), running, at second FAULT_AT."""
    load = LoadRun(h, name, duration, h.args.rate, h.args.users)
    load.wait_started()
    load.sleep_until(fault_at)
    return load


def scenario_kill(h: "Harness", s: Scenario) -> Scenario:
    a = h.args
    duration = 50 if a.short else 75
    load = started_load(h, "1-kill", duration, 12)
    victim = random.choice(h.stack.instances())
    s.figures["victim"] = victim["id"]
    killed = s.event(f"kill {victim['id']}: {h.stack.kill_instance(victim)}")
    how = h.stack.recover_instance(victim)
    victim = next((i for i in h.stack.instances() if i["id"] == victim["id"]), victim)  # its port may change
    if not stacks.stack.wait_until(lambda: stacks.stack.http_status(f"{victim['url']}/ready", timeout=0.5) == 200
                                   and victim_restarted(h, victim), 90, 0.2):
        s.check(False, f"{victim['id']} back and ready ({how})", "not ready after 90 s")
        load.finish()
        return s
    ready = s.event(f"{victim['id']} ready again ({how})")
    s.figures["kill_to_ready_s"] = round(ready - killed, 2)
    # its own counter: the new process counts from zero; any analysis it answers after rejoining counts
    start = metric_sum(victim["url"], "soma_http_requests_total", route="/v1/analyze") or 0
    deadline = load.origin + duration - 2
    rejoined = None
    while time.time() < deadline and rejoined is None:
        now = metric_sum(victim["url"], "soma_http_requests_total", route="/v1/analyze") or 0
        if now > start:
            rejoined = s.event(f"{victim['id']} takes traffic again ({now - start:.0f} analyses since ready)")
        else:
            time.sleep(0.5)
    load.finish()
    f = s.load_figures(load)
    s.figures["kill_to_traffic_s"] = round(rejoined - killed, 2) if rejoined else None
    failed = count(f["outcomes"], failed_outcome)
    s.check(failed / max(1, f["requests"]) < 0.01, "errors < 1 % of all requests",
            f"{failed} of {f['requests']} ({100 * failed / max(1, f['requests']):.3f} %), outcomes {f['outcomes']}")
    window = (killed - 1, ready + 3)
    outside = [r for r in load.series if r["errors"] > 0 and not (load.second(window[0]) - 1 < r["second"] < load.second(window[1]))]
    inside = sum(r["errors"] for r in load.rows(*window))
    s.figures["errors_in_kill_window"] = inside
    s.figures["error_seconds_outside_window"] = [int(r["second"]) for r in outside]
    s.check(not outside, "errors only between 1 s before the kill and 3 s after the instance is ready again",
            f"{inside:.0f} errors in seconds {load.second(window[0]):.0f}..{load.second(window[1]):.0f}; seconds with "
            f"errors outside: {[int(r['second']) for r in outside]}")
    s.check(rejoined is not None, f"{victim['id']} takes traffic again (its own soma_http_requests_total rises)",
            f"kill to ready {ready - killed:.1f} s, kill to first request {rejoined - killed:.1f} s" if rejoined else
            "no analysis answered by it before the load ended")
    s.audit(load)
    return s


def victim_restarted(h: "Harness", victim: dict) -> bool:
    if h.stack.kind == "compose":
        return h.stack.containers()[victim["service"]]["restarts"] > h.stack.restarts_before
    return True


def outage(h: "Harness", s: Scenario, load: LoadRun, dependency: str, window: float, settle: float, during=None) -> list[dict]:
    """DEPENDENCY stopped for WINDOW s, SETTLE s of recovery, then hung (paused) for WINDOW s, SETTLE s.
    DURING(kind, start) runs inside each fault window. Returns the windows with their recovery."""
    windows = []
    for kind in ("stopped", "hung"):
        start = s.event(f"{dependency} {kind}")
        try:
            if kind == "stopped":
                h.stack.stop(dependency)
            else:
                h.stack.pause(dependency)
            if during:
                during(kind, start)
            time.sleep(max(0.0, start + window - time.time()))
        finally:
            if kind == "stopped":
                h.stack.start(dependency)
            else:
                h.stack.resume(dependency)
        end = s.event(f"{dependency} back ({kind} {time.time() - start:.1f} s)")
        windows.append({"kind": kind, "start": start, "end": end})
        if dependency == "postgres":
            replayed = wait_outbox_empty(h, 30)
            windows[-1]["replay_s"] = None if replayed is None else round(replayed - end, 2)
            if replayed:
                s.event(f"every outbox empty {replayed - end:.1f} s after recovery")
        time.sleep(max(0.0, end + settle - time.time()))
    return windows


def wait_outbox_empty(h: "Harness", timeout: float) -> float | None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        values = [metric_sum(i["url"], "soma_outbox_pending") for i in h.stack.instances()]
        if all(v == 0 for v in values):
            return time.time()
        time.sleep(0.2)
    return None


def scenario_postgres(h: "Harness", s: Scenario) -> Scenario:
    a = h.args
    window, settle, baseline = (10, 12, 5) if a.short else (30, 15, 8)
    duration = baseline + 2 * (window + settle) + 12  # the restart itself takes a few seconds
    load = started_load(h, "3-postgres", duration, baseline)
    windows = outage(h, s, load, "postgres", window, settle)
    load.finish()
    f = s.load_figures(load)
    analysis = load.outcomes(ANALYSIS_ROUTES)
    s.figures["analysis_outcomes"] = analysis
    s.figures["route_outcomes"] = {r: d["outcomes"] for r, d in load.report["routes"].items()}
    s.check(count(analysis, is_5xx) == 0, "zero 5xx (or timeouts) on the analysis routes",
            f"analysis outcomes {analysis}")
    say(f"  (reads of stored data: {[(r, d['outcomes']) for r, d in load.report['routes'].items() if r.startswith('GET')]})")
    for w in windows:
        writes = load.writes(w["start"], w["end"])
        statuses: dict = {}
        for e in writes:
            statuses[str(e["status"])] = statuses.get(str(e["status"]), 0) + 1
        w["write_statuses"] = statuses
        acknowledged = statuses.get("201", 0) + statuses.get("202", 0)
        s.check(statuses.get("202", 0) > 0 and acknowledged == len(writes),
                f"PostgreSQL {w['kind']} {w['end'] - w['start']:.0f} s: every write acknowledged, queued with 202",
                f"{len(writes)} writes sent in the window: {statuses}")
        s.check(w["replay_s"] is not None and w["replay_s"] <= 10,
                f"replay finished (every instance's soma_outbox_pending = 0) within 10 s of recovery from {w['kind']}",
                f"{w['replay_s']} s" if w["replay_s"] is not None else "not empty after 30 s")
    s.figures["windows"] = [{k: (round(v - s.t0, 1) if k in ("start", "end") else v) for k, v in w.items()} for w in windows]
    s.audit(load)
    return s


def auth(h: "Harness") -> dict:
    token = h.stack.service_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def burst(url: str, user: str, n: int, extra: dict) -> dict:
    codes: dict = {}
    retry_after = 0
    for i in range(n):
        code, headers = post(f"{url}/v1/analyze", {"text": f"burst {i}"}, {"X-User-Id": user, "X-User-Tier": "free", **extra}, 3)
        codes[str(code)] = codes.get(str(code), 0) + 1
        retry_after += code == 429 and any(k.lower() == "retry-after" for k in headers)
    return {"codes": codes, "retry_after": retry_after}


def scenario_redis(h: "Harness", s: Scenario) -> Scenario:
    a = h.args
    window, settle, baseline = (10, 10, 5) if a.short else (30, 15, 8)
    duration = baseline + 2 * (window + settle) + 10
    load = started_load(h, "2-redis", duration, baseline)
    bursts = {}
    target = h.stack.instances()[0]

    probes = {}

    def during(kind: str, start: float) -> None:
        # a second soma-load for the fault window only: its report is the window's exact latency
        probes[kind] = LoadRun(h, f"2-redis-{kind}-window", window - 1, a.probe_rate, 50,
                               "analyze=70,module=20,batch=10", ramp=0.5)
        time.sleep(2)
        fallback_before = metric_sum(target["url"], "soma_rate_limit_fallback_total") or 0
        result = burst(target["url"], f"chaos-burst-{kind}-{int(start)}", a.burst, auth(h))
        result["fallback_decisions"] = (metric_sum(target["url"], "soma_rate_limit_fallback_total") or 0) - fallback_before
        bursts[kind] = result
        s.event(f"burst of {a.burst} analyses for one free user to {target['id']}: {result}")

    windows = outage(h, s, load, "redis", window, settle, during)
    # the shared cache after recovery: a new text analysed by instance A, then by B, must be an L2 hit on B
    shared = shared_cache(h, s, windows[-1]["end"])
    load.finish()
    f = s.load_figures(load)
    fives = count(f["outcomes"], is_5xx)
    s.check(fives == 0, "zero 5xx (or timeouts) on every route", f"outcomes {f['outcomes']}")
    for w in windows:
        rows = load.rows(w["start"], w["end"])
        w["main_load_p95_ms_per_second"] = [r["p95_ms"] for r in rows]
        w["main_load_seconds_p95_over_200ms"] = sum(r["p95_ms"] >= 200 for r in rows)
        probe = probes.get(w["kind"])
        if probe is None:
            s.check(False, f"Redis {w['kind']}: the window's own load ran")
            continue
        probe.finish()
        m = probe.report["measured"]
        w["window_load"] = {"requests": m["requests"], "outcomes": m["outcomes"], "latency_ms": m["latency_ms"]}
        s.check(m["requests"] > 0 and m["latency_ms"]["p95"] < 200,
                f"Redis {w['kind']}: p95 < 200 ms during the fault",
                f"window load: {m['requests']} requests, p95 {m['latency_ms']['p95']} ms, p99 {m['latency_ms']['p99']} ms, "
                f"max {m['latency_ms']['max']} ms, outcomes {m['outcomes']}; main load: per-second p95 max "
                f"{max(w['main_load_p95_ms_per_second'], default=None)} ms, {w['main_load_seconds_p95_over_200ms']} "
                f"second(s) with p95 >= 200 ms")
        fives = count(m["outcomes"], is_5xx)
        s.check(fives == 0, f"Redis {w['kind']}: zero 5xx in the window's own load", f"outcomes {m['outcomes']}")
        b = bursts.get(w["kind"], {})
        s.check(b.get("codes", {}).get("429", 0) > 0,
                f"Redis {w['kind']}: the per-user limit still enforced by the instance (429 in a burst of {a.burst})",
                json.dumps(b))
    s.figures["windows"] = [{k: (round(v - s.t0, 1) if k in ("start", "end") else v) for k, v in w.items()} for w in windows]
    s.figures["bursts"] = bursts
    s.figures["shared_cache"] = shared
    s.check(shared.get("ok", False), "the cache is shared again after recovery (a text analysed on one instance is an L2 hit on another)",
            json.dumps(shared))
    s.audit(load)
    return s


def shared_cache(h: "Harness", s: Scenario, recovered: float) -> dict:
    first, second = h.stack.instances()[:2]
    deadline = time.time() + 30
    tries = 0
    while time.time() < deadline:
        tries += 1
        text = f"Chaos shared-cache probe {random.random()} after the Redis outage: a calm and hopeful day."
        headers = {"X-User-Id": "chaos-cache", "X-User-Tier": "premium", **auth(h)}
        before = metric_sum(second["url"], "soma_cache_requests_total", layer="l2", result="hit") or 0
        a, _ = post(f"{first['url']}/v1/analyze", {"text": text}, headers)
        time.sleep(0.3)
        b, _ = post(f"{second['url']}/v1/analyze", {"text": text}, headers)
        after = metric_sum(second["url"], "soma_cache_requests_total", layer="l2", result="hit") or 0
        if a == 200 and b == 200 and after > before:
            s.event(f"shared cache: L2 hit on {second['id']} for a text first analysed on {first['id']} (try {tries})")
            return {"ok": True, "tries": tries, "seconds_after_recovery": round(time.time() - recovered, 1),
                    "l2_hits_before": before, "l2_hits_after": after}
        time.sleep(1)
    return {"ok": False, "tries": tries}


def scenario_rolling(h: "Harness", s: Scenario) -> Scenario:
    a = h.args
    duration = 40 if a.short else 75
    load = started_load(h, "6-rolling", duration, 6)
    s.event("nginx reload (SIGHUP)")
    h.stack.reload_gateway()
    load.sleep_until(9)
    started = s.event("rolling restart of every instance")
    h.stack.rolling_restart()
    done = s.event(f"rolling restart done in {time.time() - started:.1f} s")
    s.figures["rolling_restart_s"] = round(done - started, 1)
    time.sleep(2)
    s.event("nginx reload (SIGHUP)")
    h.stack.reload_gateway()
    if load.elapsed() > duration - 3:
        s.check(False, "the rolling restart finished while the load lasted", f"{done - started:.0f} s")
    load.finish()
    f = s.load_figures(load)
    failed = count(f["outcomes"], failed_outcome)
    s.check(failed == 0, "zero failed requests through a rolling restart and two nginx reloads",
            f"{failed} of {f['requests']}, outcomes {f['outcomes']}, {f['retried_after_connection_close']} re-sent "
            "after a reload closed their keep-alive connection")
    s.audit(load)
    return s

# ---------------------------------------------------------------- partition (nftables)
NFT_TABLE = "soma_chaos"


def nft_delete() -> bool:
    """Deletes the suite's own table (inet soma_chaos) when it exists; True when one was there.
    Without nft on the machine no such table can have been made (only nft_blackhole makes it)."""
    if shutil.which("nft") is None:
        return False
    listed = subprocess.run(["nft", "list", "table", "inet", NFT_TABLE], capture_output=True, text=True, timeout=10)
    if listed.returncode != 0:
        return False
    subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True, text=True, timeout=10, check=True)
    return True


def nft_blackhole(port: int) -> None:
    """Every packet sent to 127.0.0.1:PORT dropped (not rejected): the callers' connects and calls hang."""
    rules = (f"table inet {NFT_TABLE} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n"
             f"    ip daddr 127.0.0.1 tcp dport {port} drop\n  }}\n}}\n")
    subprocess.run(["nft", "-f", "-"], input=rules, capture_output=True, text=True, timeout=10, check=True)


def breaker_states(h: "Harness", dependency: str) -> dict:
    return {i["id"]: metric_sum(i["url"], "soma_circuit_state", dependency=dependency) for i in h.stack.instances()}


def scenario_partition(h: "Harness", s: Scenario) -> Scenario:
    a = h.args
    window, settle, baseline = (12, 12, 5) if a.short else (30, 15, 5)
    duration = baseline + 2 * (window + settle) + 5
    load = started_load(h, "4-partition", duration, baseline)
    # the configured call timeouts (the instances' defaults unless the environment sets them)
    timeouts = {"redis": float(os.environ.get("SOMA_REDIS_TIMEOUT_MS", 250)),
                "postgres": float(os.environ.get("SOMA_DB_TIMEOUT_MS", 2000))}
    windows = []
    for dependency in ("redis", "postgres"):
        port = h.stack.dep_port(dependency)
        probe = None
        try:
            nft_blackhole(port)
            start = s.event(f"{dependency} (127.0.0.1:{port}) blackholed: nft table inet {NFT_TABLE}, drop")
            probe = LoadRun(h, f"4-{dependency}-window", window - 1, a.probe_rate, 50,
                            "analyze=50,module=10,batch=5,entryWrite=20,entryList=10,profile=5", ramp=0.5)
            opened: dict = {}
            while time.time() < start + window:
                for instance, state in breaker_states(h, dependency).items():
                    if state == 2 and instance not in opened:
                        opened[instance] = round(time.time() - start, 2)
                time.sleep(0.05)
        finally:
            nft_delete()
        end = s.event(f"{dependency} reachable again (rule deleted)")
        closed = stacks.stack.wait_until(lambda: all(v == 0 for v in breaker_states(h, dependency).values()), 30, 0.2)
        closed_after = round(time.time() - end, 2) if closed else None
        s.event(f"every {dependency} breaker closed {closed_after} s after the rule was deleted" if closed
                else f"{dependency} breakers still not closed 30 s after the rule was deleted")
        if dependency == "postgres":
            replayed = wait_outbox_empty(h, 30)
            s.figures["postgres_replay_s"] = round(replayed - end, 2) if replayed else None
        probe.finish()
        m = probe.report["measured"]
        w = {"dependency": dependency, "port": port, "start": round(start - s.t0, 1), "end": round(end - s.t0, 1),
             "breaker_open_after_s": opened, "breakers_closed_after_s": closed_after,
             "window_load": {"requests": m["requests"], "outcomes": m["outcomes"], "latency_ms": m["latency_ms"]},
             "timeout_ms": timeouts[dependency]}
        windows.append(w)
        instances = [i["id"] for i in h.stack.instances()]
        s.check(len(opened) == len(instances) and max(opened.values()) <= 2.0,
                f"{dependency} partitioned: every instance's breaker open within 2 s", json.dumps(opened))
        bound = timeouts[dependency] + 500
        hung = count(m["outcomes"], lambda o: o in ("timeout",))
        w["window_routes"] = {r: {"outcomes": d["outcomes"], "p99_ms": d["latency_ms"]["p99"], "max_ms": d["latency_ms"]["max"]}
                              for r, d in probe.report["routes"].items()}
        worst = max(w["window_routes"].items(), key=lambda kv: kv[1]["p99_ms"])
        s.check(m["latency_ms"]["p99"] <= bound and worst[1]["p99_ms"] <= bound,
                f"{dependency} partitioned: p99 (overall and of every route) within the call timeout "
                f"({timeouts[dependency]:.0f} ms) + 500 ms",
                f"window load {m['requests']} requests: p99 {m['latency_ms']['p99']} ms, max {m['latency_ms']['max']} ms; "
                f"worst route {worst[0]} p99 {worst[1]['p99_ms']} ms, max {worst[1]['max_ms']} ms; outcomes {m['outcomes']}")
        s.check(hung == 0, f"{dependency} partitioned: no hung request (none reached soma-load's 10 s request timeout)",
                f"{hung} timed out; longest {max(r['max_ms'] for r in w['window_routes'].values())} ms")
        s.check(closed, f"{dependency}: recovery automatic (every breaker closed again)", f"{closed_after} s after the rule was deleted")
        time.sleep(max(0.0, end + settle - time.time()))
    load.finish()
    f = s.load_figures(load)
    s.figures["windows"] = windows
    analysis = load.outcomes(ANALYSIS_ROUTES)
    s.check(count(analysis, is_5xx) == 0, "zero 5xx (or timeouts) on the analysis routes", f"{analysis}")
    tail = [r for r in load.series if r["second"] >= load.second(windows[-1]["end"] + s.t0 + 10)]
    s.check(bool(tail) and sum(r["errors"] for r in tail) == 0, "no errors from 10 s after the last partition to the end",
            f"{sum(r['errors'] for r in tail):.0f} errors over {len(tail)} s")
    s.audit(load)
    return s


# ---------------------------------------------------------------- overload
# Scenario 5's stack: capacity made small on purpose, so one generator on the same two cores can
# offer ten times it. One worker per instance, each module analysis holding it HOLD_MS longer
# (asleep: Slowdown.hold), a short queue; a full analysis of a new text then costs ~5 x HOLD_MS of
# worker time, and OVERLOAD_INSTANCES instances serve about OVERLOAD_INSTANCES / (5 x HOLD_MS) a second.
# In flight (running plus waiting) at most 9: one running, eight waiting, served premium first.
HOLD_MS = 6
OVERLOAD_INSTANCES = 2
OVERLOAD_ENV = {"SOMA_WORKERS": "1", "SOMA_MAX_IN_FLIGHT": "9", "SOMA_MAX_QUEUED": "8", "SOMA_SLOWDOWN_HOLD_MS": str(HOLD_MS)}
REFUSALS = ("429", "503")


def tier_refused(tier: dict) -> float:
    """The share of a tier's requests refused (429 or 503)."""
    n = tier.get("requests", 0)
    return sum(tier.get("outcomes", {}).get(o, 0) for o in REFUSALS) / n if n else 0.0


def shed_by_tier(h: "Harness") -> dict:
    """soma_shed_total and soma_rate_limited_total per tier, summed over the instances."""
    totals = {"shed": {}, "rate_limited": {}, "degraded": 0.0}
    for instance in h.stack.instances():
        for name, labels, value in metrics(instance["url"]):
            if name == "soma_shed_total":
                totals["shed"][labels.get("tier")] = totals["shed"].get(labels.get("tier"), 0) + value
            elif name == "soma_rate_limited_total":
                totals["rate_limited"][labels.get("tier")] = totals["rate_limited"].get(labels.get("tier"), 0) + value
            elif name == "soma_degraded_total":
                totals["degraded"] += value
    return totals


def scenario_overload(h: "Harness", s: Scenario) -> Scenario:
    """Ten times capacity for WINDOW s over a steady half-capacity load; the steady load shows the
    recovery once the overload stops."""
    a = h.args
    capacity = OVERLOAD_INSTANCES / (5 * HOLD_MS / 1000)          # full analyses a second, nominal
    window, baseline, after = (20, 8, 15) if a.short else (30, 10, 20)
    steady_rate, overload_rate = capacity / 2, capacity * 10
    s.figures["nominal_capacity_rps"] = capacity
    s.event(f"capacity: {OVERLOAD_INSTANCES} instances x 1 worker, {HOLD_MS} ms held per module = {capacity:.0f} "
            f"full analyses a second; steady {steady_rate:.0f} req/s, overload {overload_rate:.0f} req/s")
    steady = LoadRun(h, "5-overload-steady", baseline + window + after, steady_rate, 100, "analyze=100", new_texts=1.0)
    steady.wait_started()
    steady.sleep_until(baseline)
    before = shed_by_tier(h)
    # Premium is 4 % of the overload (0.4x capacity): the tier that must still be served in time.
    flood = LoadRun(h, "5-overload-flood", window, overload_rate, 1000, "analyze=100", ramp=1, new_texts=1.0,
                    tiers="premium=4,standard=46,free=50")
    flood.wait_started()
    s.event(f"overload: {overload_rate:.0f} req/s offered for {window} s")
    flood.finish()
    dropped = flood.origin + flood.ramp + window
    s.event("overload over")
    steady.finish()
    after_metrics = shed_by_tier(h)
    f = s.load_figures(flood)
    steady_f = steady.report["measured"]

    # Offered against achieved: what the stack served while ten times its capacity was offered.
    rows = steady.rows(dropped - window, dropped)
    steady_ok_rate = (sum(r["achieved"] - r["errors"] for r in rows) / len(rows)) if rows else 0
    served = f["outcomes"].get("2xx", 0) / window + steady_ok_rate
    offered = flood.report["scenario"].get("arrivalRate", overload_rate) + steady_rate
    generator = flood.report["generator"]
    s.figures["offered_rps"], s.figures["served_rps"] = round(offered, 1), round(served, 1)
    s.figures["generator"] = generator
    s.check(generator["send_lag_p99_ms"] < 100 and offered >= 10 * served,
            "the overload offered at least 10x what the stack served (and the generator kept its schedule)",
            f"offered {offered:.0f} req/s, served {served:.1f} req/s (2xx) = {offered / max(served, 0.1):.1f}x; "
            f"nominal capacity {capacity:.0f}/s; generator send lag p99 {generator['send_lag_p99_ms']:.1f} ms, "
            f"{generator['cpu_cores']:.2f} cores")

    outcomes = {}
    for load in (flood.report, steady.report):
        for o, n in load["measured"]["outcomes"].items():
            outcomes[o] = outcomes.get(o, 0) + n
    others = {o: n for o, n in outcomes.items() if o not in ("2xx",) + REFUSALS}
    without = flood.report["measured"].get("refusals_without_retry_after", 0) + \
        steady_f.get("refusals_without_retry_after", 0)
    s.check(not others and without == 0, "only 2xx, 429 and 503 answers, every refusal with Retry-After",
            f"outcomes {outcomes}; refusals without Retry-After {without}")

    tiers = flood.report.get("tiers", {})
    s.figures["tiers"] = {t: {"requests": d["requests"], "outcomes": d["outcomes"], "p95_ms": d["latency_ms"]["p95"],
                              "p99_ms": d["latency_ms"]["p99"], "refused_share": round(tier_refused(d), 4)}
                          for t, d in tiers.items()}
    premium = tiers.get("premium", {})
    p95 = premium.get("latency_ms", {}).get("p95")
    s.check(premium.get("requests", 0) > 0 and p95 is not None and p95 < 200 and tier_refused(premium) < 0.01,
            "premium served through the overload: p95 < 200 ms, under 1 % refused",
            f"{premium.get('requests', 0)} premium requests, p95 {p95} ms, p99 "
            f"{premium.get('latency_ms', {}).get('p99')} ms, refused {100 * tier_refused(premium):.2f} %")
    shares = {t: tier_refused(tiers.get(t, {})) for t in ("premium", "standard", "free")}
    shed = {t: after_metrics["shed"].get(t, 0) - before["shed"].get(t, 0) for t in ("premium", "standard", "free")}
    limited = {t: after_metrics["rate_limited"].get(t, 0) - before["rate_limited"].get(t, 0) for t in shed}
    s.figures["shed_by_tier_metrics"], s.figures["rate_limited_by_tier_metrics"] = shed, limited
    s.figures["degraded_metrics"] = after_metrics["degraded"] - before["degraded"]
    s.check(shares["free"] >= shares["standard"] > shares["premium"] and shed["free"] > shed["premium"],
            "free shed first: refused share free >= standard > premium; soma_shed_total by tier agrees",
            "refused " + ", ".join(f"{t} {100 * v:.1f} %" for t, v in shares.items()) +
            f"; soma_shed_total {shed}; soma_rate_limited_total {limited}; degraded answers "
            f"{s.figures['degraded_metrics']:.0f}")

    # Back to normal: from the first second after the drop on, every second of the steady load
    # error-free with p95 < 200 ms, within 10 s.
    tail = [r for r in steady.series if r["second"] >= steady.second(dropped) and r["phase"] != "tail"]
    normal_from = None
    for i, r in enumerate(tail):
        if all(x["errors"] == 0 and x["p95_ms"] < 200 for x in tail[i:] if x["achieved"] > 0):
            normal_from = r["second"]
            break
    recovery = None if normal_from is None else max(0.0, normal_from - steady.second(dropped))
    s.figures["recovery_s"] = recovery
    s.check(recovery is not None and recovery <= 10 and len(tail) >= 10,
            "back to normal within 10 s of the overload's end (steady load: no errors, p95 < 200 ms per second)",
            f"{recovery:.0f} s (steady load seconds after the drop: {len(tail)})" if recovery is not None else
            "never back to normal before the steady load ended")
    return s


SCENARIOS = {1: scenario_kill, 3: scenario_postgres, 2: scenario_redis, 6: scenario_rolling, 4: scenario_partition,
             5: scenario_overload}
TITLES = {1: "kill an instance", 3: "PostgreSQL outage", 2: "Redis outage", 6: "rolling restart + nginx reload",
          4: "partition from Redis, then PostgreSQL", 5: "overload at 10x capacity"}
ORDER = [1, 3, 2, 6, 4, 5]
# Scenarios that need a stack of their own: (instances, the instances' settings).
STACK_FOR = {5: (OVERLOAD_INSTANCES, OVERLOAD_ENV)}


# ---------------------------------------------------------------- harness
class Harness:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out) / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.out.mkdir(parents=True, exist_ok=True)
        self.kind = stacks.Compose if args.stack == "compose" else stacks.Local
        self.shape = (args.instances, {})
        self.stack = self.kind(args.binary, args.model_dir, self.out, args.instances, {})
        self.loads: list[subprocess.Popen] = []
        self.up = False

    def use(self, instances: int, env: dict) -> None:
        """A stack of INSTANCES instances with ENV, up: the current one when it has that shape,
        else the current one torn down (its logs kept) and a new one brought up (compose's ports
        are fixed: one stack at a time)."""
        if self.up and self.shape == (instances, env):
            return
        if self.up:
            self.teardown()
        if self.shape != (instances, env):
            self.stack = self.kind(self.args.binary, self.args.model_dir, self.out, instances, env,
                                   label="-".join(f"{k.removeprefix('SOMA_').lower()}{v}" for k, v in sorted(env.items())))
        self.shape = (instances, env)
        t = time.monotonic()
        say(f"{self.args.stack} stack up ({instances} instances{', ' + str(env) if env else ''})")
        self.up = True   # a failed `up` is torn down too
        self.stack.up()
        say(f"stack up in {time.monotonic() - t:.0f} s, gateway {self.stack.gateway}")

    def stop_loads(self) -> None:
        for process in self.loads:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(10)
                except (OSError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(process.pid, signal.SIGKILL)
                    except OSError:
                        pass
        self.loads.clear()

    def teardown(self) -> None:
        self.stop_loads()
        try:
            if nft_delete():
                say(f"nft table inet {NFT_TABLE} deleted")
        except (OSError, subprocess.SubprocessError) as error:
            say(f"WARNING: nft table inet {NFT_TABLE} not deleted: {error}; nft delete table inet {NFT_TABLE}")
        try:
            self.stack.keep_logs()
        except Exception as error:  # noqa: BLE001
            say(f"WARNING: logs not kept: {error}")
        try:
            self.stack.heal()
        except Exception as error:  # noqa: BLE001
            say(f"WARNING: heal failed: {error}")
        self.stack.down()
        self.up = False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=("compose", "local"), default=os.environ.get("SOMA_STACK", "compose"))
    parser.add_argument("--short", action="store_true", help="CI: scenarios 1 and 3 with short windows")
    parser.add_argument("--scenarios", default="", help="comma-separated numbers (default: all, or 1,3 with --short)")
    parser.add_argument("--binary", type=Path, default=Path(os.environ.get("SOMA_BIN", REPO / ".build/release/soma")))
    parser.add_argument("--load-bin", type=Path, default=Path(os.environ.get("SOMA_LOAD_BIN", REPO / ".build/release/soma-load")))
    parser.add_argument("--model-dir", type=Path, default=REPO / ".build/models")
    parser.add_argument("--corpus", type=Path, default=REPO / ".build/load/corpus.jsonl")
    parser.add_argument("--out", default=str(REPO / ".build/chaos"))
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--rate", type=float, default=float(os.environ.get("CHAOS_RATE", "150")),
                        help="total requests a second through nginx (2 shared cores sustain ~150-200)")
    parser.add_argument("--users", type=int, default=int(os.environ.get("CHAOS_USERS", "300")))
    parser.add_argument("--probe-rate", type=float, default=40, help="req/s of the fault-window load (Redis)")
    parser.add_argument("--burst", type=int, default=130, help="analyses for one user in the rate-limit burst (limit 100/min)")
    args = parser.parse_args()
    args.binary, args.load_bin = args.binary.resolve(), args.load_bin.resolve()
    if not args.model_dir.is_dir():
        args.model_dir = REPO / "Fixtures/models"
    for path in (args.binary, args.load_bin, args.corpus):
        if not path.exists():
            say(f"{path} is missing (make release load-harness; scripts/ensure-deps.sh corpus)")
            return 2
    chosen = [int(n) for n in args.scenarios.split(",") if n] or ([1, 3] if args.short else ORDER)
    unknown = [n for n in chosen if n not in SCENARIOS]
    if unknown:
        say(f"scenarios {unknown} are not implemented (implemented: {ORDER})")
        return 2
    harness = Harness(args)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    results: list[dict] = []
    started = time.time()
    verdict = "fail"
    try:
        if nft_delete():
            say(f"nft table inet {NFT_TABLE} left by an earlier run deleted")
        say(f"{args.stack} stack; load {args.rate:.0f} req/s over {args.users} users; out {harness.out}")
        for number in chosen:
            harness.use(*STACK_FOR.get(number, (args.instances, {})))
            say(f"scenario {number}: {SCENARIOS[number].__name__.removeprefix('scenario_')}")
            s = Scenario(harness, number, TITLES[number])
            try:
                SCENARIOS[number](harness, s)
            except (stacks.StackError, OSError, ValueError, KeyError, subprocess.SubprocessError) as error:
                s.check(False, "the scenario ran to its end", f"{type(error).__name__}: {str(error)[-500:]}")
            finally:
                harness.stop_loads()
                harness.stack.heal()
            result = s.result()
            results.append(result)
            (harness.out / f"scenario-{number}.json").write_text(json.dumps(result, indent=2) + "\n")
            failed = [c["name"] for c in s.checks if not c["passed"]]
            say(f"RESULT scenario {number} {s.name}: {'PASS' if s.passed else 'FAIL'} in {result['seconds']:.0f} s"
                + (f"; failed: {'; '.join(failed)}" if failed else ""))
        verdict = "pass" if results and all(r["passed"] for r in results) else "fail"
    except KeyboardInterrupt as error:
        say(f"interrupted ({error}); tearing down")
        verdict = "interrupted"
    except stacks.StackError as error:
        say(f"stack error: {error}")
    finally:
        harness.teardown()
        report = {"verdict": verdict, "stack": args.stack, "short": args.short, "rate": args.rate, "users": args.users,
                  "instances": args.instances, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                  "seconds": round(time.time() - started, 1), "scenarios": results}
        (harness.out / "chaos-report.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"\n{'scenario':<42} {'result':<6} {'requests':>8} {'non-2xx':>7} {'p95 ms':>8} {'p99 ms':>8}  audit")
        for r in results:
            load = r["figures"].get("load", {})
            audit = r["figures"].get("audit", {})
            failed = sum(n for o, n in load.get("outcomes", {}).items() if o != "2xx") if load else "-"
            print(f"{r['scenario']} {r['name']:<40} {'PASS' if r['passed'] else 'FAIL':<6} {load.get('requests', '-'):>8} "
                  f"{failed:>7} {load.get('p95_ms', '-'):>8} {load.get('p99_ms', '-'):>8}  "
                  f"{'passed' if audit.get('passed') else 'FAILED' if audit else '-'}")
        print(f"chaos: {verdict.upper()} ({args.stack}, {report['seconds']:.0f} s); report {harness.out / 'chaos-report.json'}",
              flush=True)
    return 0 if verdict == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
