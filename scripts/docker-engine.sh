#!/usr/bin/env bash
# The Docker engine the compose stack runs on, from Debian's packages.
#
#   scripts/docker-engine.sh ensure   install docker.io, docker-compose and debootstrap when missing;
#                                     start dockerd when no engine answers; print the engine's version
#   scripts/docker-engine.sh status   exit 0 when an engine answers
#   scripts/docker-engine.sh stop     stop the daemon this script started (never one it did not start)
#   scripts/docker-engine.sh env      print DOCKER=... and COMPOSE=... (the clients to use)
#
# The daemon runs without a bridge network and without touching iptables (--bridge=none
# --iptables=false): no container ever gets a private-range address, and every container of the
# project uses network_mode: host bound to 127.0.0.1. Its log and pid file are under
# SOMA_DOCKER_DIR (default /var/lib/soma-docker), where the marker `started-by-soma` records that
# this script owns it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

dir="${SOMA_DOCKER_DIR:-/var/lib/soma-docker}"
socket="${SOMA_DOCKER_SOCKET:-/var/run/docker.sock}"
# Debian's client matches Debian's daemon (a newer client elsewhere on PATH may not).
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker || true)}"
COMPOSE="${COMPOSE:-$(command -v docker-compose || true)}"

sudo_if_needed() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null || [[ -x /usr/sbin/dockerd ]] || missing+=(docker.io)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "docker-engine: installing ${missing[*]} (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The package's init script must not start a daemon of its own (it would create the default
  # bridge, docker0, on a private range): no service starts during this install.
  local policy=/usr/sbin/policy-rc.d
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# docker-engine.sh: no service starts during this install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  sudo_if_needed apt-get update -q >/dev/null
  sudo_if_needed apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  DOCKER="$(command -v /usr/bin/docker || command -v docker)"
  COMPOSE="$(command -v docker-compose)"
}

answers() { [[ -n "$DOCKER" ]] && timeout 10 "$DOCKER" -H "unix://$socket" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

owned_pid() {
  [[ -f "$dir/started-by-soma" && -f "$dir/dockerd.pid" ]] || return 1
  local pid; pid="$(cat "$dir/dockerd.pid")"
  alive_named "$pid" dockerd && echo "$pid"
}

start() {
  mkdir -p "$dir"
  echo "docker-engine: starting dockerd (no bridge, no iptables; log $dir/dockerd.log)" >&2
  # setsid: the daemon outlives this script (and the make target that ran it).
  setsid /usr/sbin/dockerd --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
    --host "unix://$socket" --pidfile "$dir/dockerd.pid" --exec-root "$dir/exec" \
    >>"$dir/dockerd.log" 2>&1 < /dev/null &
  touch "$dir/started-by-soma"
  for _ in $(seq 1 120); do
    answers && return 0
    sleep 0.5
  done
  echo "docker-engine: dockerd did not answer within 60 s; its log:" >&2
  tail -n 30 "$dir/dockerd.log" >&2
  exit 1
}

case "${1:-ensure}" in
  ensure)
    install_packages
    answers || start
    echo "docker-engine: engine $("$DOCKER" version --format '{{.Server.Version}}'), compose $("$COMPOSE" version --short)" >&2
    ;;
  status)
    answers
    ;;
  env)
    echo "DOCKER=$DOCKER"
    echo "COMPOSE=$COMPOSE"
    ;;
  stop)
    if pid="$(owned_pid)"; then
      kill -TERM "$pid"
      for _ in $(seq 1 60); do alive_named "$pid" dockerd || break; sleep 0.5; done
      if alive_named "$pid" dockerd; then kill -KILL "$pid"; fi
      rm -f "$dir/started-by-soma"
      echo "docker-engine: stopped dockerd $pid" >&2
    elif answers; then
      echo "docker-engine: the engine that answers was not started by this script; left running" >&2
    fi
    ;;
  *)
    echo "usage: $0 ensure|status|stop|env" >&2
    exit 2
    ;;
esac
