#!/usr/bin/env python3
"""What the gateway adds: the same requests straight to an instance and through nginx, interleaved.

    scripts/gateway-latency.py [--requests 2000] [--rate 400]

Reads the running stack's state file (.stack/stack.json, or SOMA_STACK_DIR) and sends, paced at
--rate requests/s (below nginx's 1000 r/s limit_req), alternating: POST /v1/analyze of a cached
text and GET /health, each once to soma-1 directly and once through nginx (keep-alive
connections on both paths, one client thread). Prints p50/p95/p99 per path and the medians'
difference. A measurement, not a gate: the machine is shared, so compare the two paths of one run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000, help="per path and route")
    parser.add_argument("--rate", type=float, default=400.0, help="requests per second, all paths together")
    args = parser.parse_args()
    state_path = Path(os.environ.get("SOMA_STACK_DIR", REPO / ".stack")) / "stack.json"
    state = json.loads(state_path.read_text())
    direct_port = state["instances"][0]["port"]
    gateway_port = state["nginx"]["port"]
    paths = {"direct": http.client.HTTPConnection("127.0.0.1", direct_port, timeout=10),
             "nginx": http.client.HTTPConnection("127.0.0.1", gateway_port, timeout=10)}
    body = json.dumps({"text": "I finally finished the marathon and I am proud, though my knees hurt."})
    routes = {"analyze (cached)": ("POST", "/v1/analyze", body), "health": ("GET", "/health", None)}
    samples = {(p, r): [] for p in paths for r in routes}
    errors = 0
    interval = 1.0 / args.rate
    next_at = time.monotonic()
    for i in range(args.requests + 50):  # the first 50 rounds warm caches and connections
        for route, (method, url, payload) in routes.items():
            for path, connection in paths.items():
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                start = time.perf_counter()
                headers = {"Content-Type": "application/json", "X-User-Id": f"latency-{i % 50}"}
                connection.request(method, url, body=payload, headers=headers)
                response = connection.getresponse()
                response.read()
                elapsed = (time.perf_counter() - start) * 1000
                if response.status != 200:
                    errors += 1
                if i >= 50:
                    samples[(path, route)].append(elapsed)
    print(f"gateway latency: {args.requests} requests per path and route, paced at {args.rate:.0f} r/s, "
          f"one keep-alive connection per path; {errors} non-200")
    print(f"{'route':<18}{'path':<8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for route in routes:
        for path in paths:
            values = samples[(path, route)]
            print(f"{route:<18}{path:<8}{percentile(values, 50):>9.3f}{percentile(values, 95):>9.3f}"
                  f"{percentile(values, 99):>9.3f}")
        added = statistics.median(samples[("nginx", route)]) - statistics.median(samples[("direct", route)])
        print(f"{route:<18}nginx adds {added:.3f} ms at the median")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
