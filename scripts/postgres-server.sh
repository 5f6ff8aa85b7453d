#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for tests: trust authentication, its files in DIR.
#
#   scripts/postgres-server.sh start DIR
#   scripts/postgres-server.sh stop DIR
#
# start: installs postgresql when missing (scripts/ensure-deps.sh postgres); as root, creates the system
#   user `postgres` when missing and runs every server program as that user (initdb refuses root).
#   The first start runs initdb (DIR/data, superuser `soma`, trust auth, UTF8, --no-sync) and, once the
#   server answers, `createdb soma`. It picks a free port, or reuses DIR's previous port, so stop + start is
#   a restart on the same port that keeps the data. The server listens on 127.0.0.1 only and puts its Unix
#   socket in DIR (-k DIR), never in /var/run/postgresql. It waits until `pg_isready` answers, then prints
#   and writes to DIR/postgres.env:
#     DATABASE_URL=postgresql://soma@127.0.0.1:P/soma  POSTGRES_PORT=P  POSTGRES_PID=N  POSTGRES_DIR=DIR
#   (N is the postmaster's PID.) Already running (per DIR/postgres.env) → prints the same lines and exits 0.
# stop: SIGCONT to the postmaster and its children (in case they are paused), `pg_ctl stop -m fast`, and a
#   wait for the exit; SIGQUIT (immediate shutdown) and then SIGKILL by PID when that does not work. Never
#   by name. Not running → exits 0.
# POSTGRES_OWNER_PID=N (start): a detached watchdog stops the server once process N has exited and, when
#   DIR contains the marker file .soma-postgres-throwaway, removes DIR. Test harnesses set it, so no server
#   outlives a crashed or interrupted test run.
# Every wait is bounded (start ≤ ~40 s plus a possible package install, stop ≤ ~20 s).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
self="$here/$(basename "${BASH_SOURCE[0]}")"
cmd="${1:-}"
dir="${2:-}"
if [[ -z "$cmd" || -z "$dir" ]]; then
  echo "usage: $0 start DIR | stop DIR" >&2
  exit 2
fi
shift 2

log() { echo "postgres-server.sh: $*" >&2; }

# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

# True when PID is a live (not zombie) postgres process.
alive() { alive_named "$1" postgres; }

# The PIDs whose parent is PID (the postmaster's backends and auxiliary processes), from /proc.
children() {
  local parent="$1" stat rest
  for stat in /proc/[0-9]*/stat; do
    rest="$(cat "$stat" 2>/dev/null || true)"
    [[ -n "$rest" ]] || continue
    rest="${rest##*) }"  # after the command name, which may contain spaces
    set -- $rest
    [[ "${2:-}" == "$parent" ]] && { stat="${stat#/proc/}"; echo "${stat%/stat}"; }
  done
  return 0
}

# Sends SIGNAL to PID and to each of its children, by PID.
signal_tree() {
  local signal="$1" pid="$2" child
  kill "-$signal" "$pid" 2>/dev/null || true
  for child in $(children "$pid"); do kill "-$signal" "$child" 2>/dev/null || true; done
}

# The newest /usr/lib/postgresql/<version>/bin with the server programs (Debian), else the directory of
# initdb on PATH; empty when PostgreSQL is not installed.
find_bin() {
  local candidate
  candidate="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -n "$candidate" && -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then
    echo "$candidate"
  elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"
  fi
}

# Runs a server program as the `postgres` user when we are root (initdb and postgres refuse root).
as_server_user() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

ready() {  # ready PORT
  timeout 5 "$bin/pg_isready" -q -h 127.0.0.1 -p "$1" -U soma -d postgres -t 2 >/dev/null 2>&1
}

postmaster_pid() {
  [[ -s "$dir/data/postmaster.pid" ]] || return 0
  head -n 1 "$dir/data/postmaster.pid" | tr -dc 0-9
}

stop_pid() {
  local pid="$1" i
  alive "$pid" || return 0
  signal_tree CONT "$pid"
  if [[ -n "${bin:-}" && -d "$dir/data" ]]; then
    with_clean_signals timeout 15 "$self" _as_server_user "$dir" "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 10 stop \
      </dev/null >/dev/null 2>&1 || true
  fi
  for ((i = 0; i < 40; i++)); do alive "$pid" || return 0; sleep 0.05; done
  log "pid $pid still running after pg_ctl stop; sending SIGQUIT (immediate shutdown)"
  signal_tree CONT "$pid"
  kill -QUIT "$pid" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do alive "$pid" || return 0; sleep 0.05; done
  log "pid $pid ignored SIGQUIT for 3 s; sending SIGKILL to it and its children"
  signal_tree KILL "$pid"
  for ((i = 0; i < 40; i++)); do alive "$pid" || return 0; sleep 0.05; done
  log "pid $pid did not exit"
  return 1
}

print_env() {
  cat "$dir/postgres.env"
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    bin="$(find_bin)"
    if [[ -n "$bin" ]] && alive "$(env_value postgres.env POSTGRES_PID)" && ready "$(env_value postgres.env POSTGRES_PORT)"; then
      print_env
      exit 0
    fi
    if [[ -z "$bin" ]] || ! command -v python3 >/dev/null; then
      "$here/ensure-deps.sh" postgres >&2
      bin="$(find_bin)"
    fi
    [[ -n "$bin" ]] || { log "PostgreSQL server programs (initdb, pg_ctl) are not installed"; exit 1; }

    if [[ $(id -u) -eq 0 ]]; then
      if ! id -u postgres >/dev/null 2>&1; then
        log "creating the system user postgres"
        useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql --shell /bin/sh postgres
      fi
      chown postgres: "$dir"
      chmod 700 "$dir"
    fi

    if [[ ! -s "$dir/data/PG_VERSION" ]]; then
      rm -rf "$dir/data"
      if ! with_clean_signals timeout 120 "$self" _as_server_user "$dir" "$bin/initdb" -D "$dir/data" -U soma --auth=trust \
        -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
        log "initdb failed; log:"
        tail -n 20 "$dir/initdb.log" >&2 || true
        exit 1
      fi
    fi

    fixed_port="$(cat "$dir/postgres.port" 2>/dev/null || true)"
    attempts=3
    [[ -n "$fixed_port" ]] && attempts=1
    for ((attempt = 1; attempt <= attempts; attempt++)); do
      port="${fixed_port:-$(pick_port)}"
      # A postmaster.pid left by a killed server would make pg_ctl refuse; it is stale when its PID is gone.
      stale="$(postmaster_pid)"
      if [[ -n "$stale" ]] && ! alive "$stale"; then rm -f "$dir/data/postmaster.pid"; fi
      [[ -f "$dir/log" ]] && mv -f "$dir/log" "$dir/log.previous"
      with_clean_signals timeout 40 "$self" _as_server_user "$dir" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
        -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start </dev/null >"$dir/pg_ctl.out" 2>&1 || true
      pid="$(postmaster_pid)"
      ok=0
      for ((i = 0; i < 100; i++)); do  # ≤ ~10 s after pg_ctl's own wait
        [[ -z "$pid" ]] && pid="$(postmaster_pid)"
        if [[ -n "$pid" ]]; then
          alive "$pid" || break
          if ready "$port"; then ok=1; break; fi
        fi
        sleep 0.1
      done
      if ((ok)); then
        if [[ ! -f "$dir/.database-created" ]]; then
          if ! timeout 30 "$bin/createdb" -h 127.0.0.1 -p "$port" -U soma soma >"$dir/createdb.log" 2>&1 \
            && ! grep -q "already exists" "$dir/createdb.log"; then
            log "createdb soma failed:"
            cat "$dir/createdb.log" >&2 || true
            stop_pid "$pid" || true
            exit 1
          fi
          : >"$dir/.database-created"
        fi
        echo "$port" >"$dir/postgres.port"
        {
          echo "DATABASE_URL=postgresql://soma@127.0.0.1:$port/soma"
          echo "POSTGRES_PORT=$port"
          echo "POSTGRES_PID=$pid"
          echo "POSTGRES_DIR=$dir"
        } >"$dir/postgres.env.tmp"
        mv "$dir/postgres.env.tmp" "$dir/postgres.env"
        if [[ -n "${POSTGRES_OWNER_PID:-}" ]]; then
          setsid "$self" _watch "$dir" "$POSTGRES_OWNER_PID" "$pid" </dev/null >/dev/null 2>&1 &
          disown || true
        fi
        print_env
        exit 0
      fi
      [[ -n "$pid" ]] && { stop_pid "$pid" || true; }
      log "start on port $port failed (attempt $attempt/$attempts); pg_ctl said:"
      tail -n 5 "$dir/pg_ctl.out" >&2 || true
      log "server log:"
      tail -n 10 "$dir/log" >&2 || true
    done
    exit 1
    ;;

  stop)
    [[ -d "$dir" ]] || exit 0
    dir="$(cd "$dir" && pwd)"
    bin="$(find_bin)"
    pid="$(env_value postgres.env POSTGRES_PID)"
    [[ -n "$pid" ]] || pid="$(postmaster_pid)"
    [[ -n "$pid" ]] || exit 0
    stop_pid "$pid"
    ;;

  _as_server_user)  # internal: _as_server_user DIR PROGRAM ARGS... (through with_clean_signals)
    as_server_user "$@"
    ;;

  _watch)  # internal: _watch DIR OWNER_PID POSTMASTER_PID
    bin="$(find_bin)"
    watch_owner "${1:?}" "${2:?}" .soma-postgres-throwaway stop_pid
    ;;

  *)
    echo "usage: $0 start DIR | stop DIR" >&2
    exit 2
    ;;
esac
