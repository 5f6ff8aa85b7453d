#!/usr/bin/env bash
# Installs what a phase needs when it is missing (Debian packages, as root). Nothing else.
#   build  – the Swift toolchain must be present (it is on these machines; not installable via apt)
#   corpus – Debian's fortunes package: real text by others, the reference corpus (pruning
#            frequencies, agreement) and the JSON Lines smoke run
#   redis  – a throwaway redis-server (with redis-cli) for the Redis integration tests
#   postgres – a throwaway PostgreSQL server for the PostgreSQL integration tests
#   stack  – everything `make stack-up` runs: nginx, redis-server, postgresql, prometheus,
#            prometheus-alertmanager, openssl (the self-signed certificate); wrk for stack-check
#   deploy – the static checks of deploy/: promtool and amtool (their packages)
#   load   – soma-load's corpus (fortunes) and plot (gnuplot)
#   chaos  – nft (nftables): the partition scenario blackholes loopback ports with a table of its own
#   profile – valgrind (callgrind) and binutils (objcopy) for scripts/engine-profile.py
# Packages are installed with a policy-rc.d that forbids starting services: a postinst must not
# leave a stock redis, PostgreSQL or Prometheus running on its default port.
set -euo pipefail
phase="${1:-build}"

need_pkgs=()
want() { dpkg -s "$1" >/dev/null 2>&1 || need_pkgs+=("$1"); }

case "$phase" in
  build)
    command -v swift >/dev/null || { echo "ensure-deps: swift is not on PATH (expected at /opt/swift)" >&2; exit 1; }
    want libsqlite3-dev   # the embedded store (CSQLite)
    want pkg-config       # SwiftPM finds sqlite3's flags through it
    want libhiredis-dev   # the Redis client (CHiredis)
    want libpq-dev        # the PostgreSQL client (CLibPQ)
    ;;
  corpus|smoke)
    want fortunes
    want python3
    ;;
  redis)
    want redis-server     # scripts/redis-server.sh; pulls in redis-tools (redis-cli)
    want python3          # scripts/redis-server.sh picks a free port with it
    ;;
  postgres)
    want postgresql       # scripts/postgres-server.sh (initdb, pg_ctl, pg_isready, createdb)
    want python3          # scripts/postgres-server.sh picks a free port with it
    ;;
  stack)
    command -v nginx >/dev/null || want nginx-light   # smallest Debian nginx with the ssl module
    want redis-server
    want postgresql
    want prometheus
    want prometheus-alertmanager
    want openssl
    want python3
    want wrk                      # stack-check: a burst past nginx's limit_req
    ;;
  load)
    want fortunes                 # the load corpus (scripts/fortunes-jsonl.py)
    want python3
    want gnuplot-nox              # soma-load's latency plot (PNG)
    ;;
  profile)
    want valgrind                 # callgrind: instructions per function
    want binutils                 # objcopy --strip-debug (valgrind cannot read this toolchain's DWARF)
    want python3
    ;;
  chaos)
    want nftables                 # Tests/Chaos/chaos.py: scenario 4 (partition) and the start-up clean-up
    ;;
  deploy)
    want prometheus               # promtool
    want prometheus-alertmanager  # amtool
    want python3
    want python3-venv             # .venv-deploy (check-jsonschema, kubernetes-validate from PyPI)
    ;;
  *) echo "ensure-deps: unknown phase $phase" >&2; exit 2 ;;
esac

if ((${#need_pkgs[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "ensure-deps: missing packages ${need_pkgs[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "ensure-deps: installing ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# ensure-deps.sh: no service starts during this install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq >/dev/null 2>&1 || apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
