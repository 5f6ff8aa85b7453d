#!/usr/bin/env bash
# A throwaway redis-server on 127.0.0.1 for tests: no persistence, its files in DIR.
#
#   scripts/redis-server.sh start DIR [redis-server args...]   e.g. start /tmp/r --requirepass secret
#   scripts/redis-server.sh stop DIR
#
# start: installs redis-server when missing (scripts/ensure-deps.sh redis), picks a free port (or reuses
#   DIR's previous port, so stop + start is a restart on the same port; extra args are remembered too),
#   starts the server daemonized, waits until `redis-cli ping` answers, then prints and writes to
#   DIR/redis.env:  REDIS_URL=redis://127.0.0.1:P  REDIS_PORT=P  REDIS_PID=N  REDIS_DIR=DIR
#   Already running (per DIR/redis.env) → prints the same lines and exits 0.
# stop: SIGTERM (+SIGCONT, in case it is paused) to the recorded PID only — never by name — waits for
#   the exit, SIGKILL after 5 s. Not running → exits 0.
# REDIS_OWNER_PID=N (start): a detached watchdog stops the server once process N has exited and, when DIR
#   contains the marker file .soma-redis-throwaway, removes DIR. Test harnesses set it, so no server
#   outlives a crashed or interrupted test run.
# Every wait is bounded (start ≤ ~15 s plus a possible package install, stop ≤ ~7 s).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
self="$here/$(basename "${BASH_SOURCE[0]}")"
cmd="${1:-}"
dir="${2:-}"
if [[ -z "$cmd" || -z "$dir" ]]; then
  echo "usage: $0 start DIR [redis-server args...] | stop DIR" >&2
  exit 2
fi
shift 2

log() { echo "redis-server.sh: $*" >&2; }

# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

# True when PID is a live (not zombie) redis-server process.
alive() { alive_named "$1" redis-server; }

ping_ok() {  # ping_ok PORT PASSWORD
  local reply
  reply="$(REDISCLI_AUTH="$2" timeout 2 redis-cli --no-auth-warning -h 127.0.0.1 -p "$1" ping 2>/dev/null || true)"
  [[ "$reply" == "PONG" ]]
}

stop_pid() {
  local pid="$1" i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  kill -CONT "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do alive "$pid" || return 0; sleep 0.05; done
  log "pid $pid ignored SIGTERM for 5 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do alive "$pid" || return 0; sleep 0.05; done
  log "pid $pid did not exit"
  return 1
}

print_env() {
  cat "$dir/redis.env"
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if alive "$(env_value redis.env REDIS_PID)" && ping_ok "$(env_value redis.env REDIS_PORT)" "$(cat "$dir/redis.password" 2>/dev/null || true)"; then
      print_env
      exit 0
    fi
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
      "$here/ensure-deps.sh" redis >&2
    fi
    command -v redis-server >/dev/null || { log "redis-server is not installed"; exit 1; }

    # Extra server args: given now, or remembered from the previous start (NUL-separated).
    extra=()
    if (($#)); then
      printf '%s\0' "$@" >"$dir/redis.args"
      extra=("$@")
    elif [[ -s "$dir/redis.args" ]]; then
      mapfile -d '' extra <"$dir/redis.args"
    fi
    password=""
    for ((i = 0; i < ${#extra[@]}; i++)); do
      if [[ "${extra[i]}" == "--requirepass" && $((i + 1)) -lt ${#extra[@]} ]]; then password="${extra[i + 1]}"; fi
    done
    printf '%s' "$password" >"$dir/redis.password"
    chmod 600 "$dir/redis.password"

    fixed_port="$(cat "$dir/redis.port" 2>/dev/null || true)"
    attempts=3
    [[ -n "$fixed_port" ]] && attempts=1
    for ((attempt = 1; attempt <= attempts; attempt++)); do
      port="${fixed_port:-$(pick_port)}"
      rm -f "$dir/redis.pid"
      : >"$dir/redis.log"
      with_clean_signals redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "${extra[@]}" </dev/null >/dev/null 2>&1 || true
      pid=""
      ok=0
      for ((i = 0; i < 200; i++)); do  # ≤ 10 s
        [[ -z "$pid" && -s "$dir/redis.pid" ]] && pid="$(tr -dc 0-9 <"$dir/redis.pid")"
        if [[ -n "$pid" ]]; then
          alive "$pid" || break
          if ping_ok "$port" "$password"; then ok=1; break; fi
        fi
        sleep 0.05
      done
      if ((ok)); then
        echo "$port" >"$dir/redis.port"
        {
          echo "REDIS_URL=redis://127.0.0.1:$port"
          echo "REDIS_PORT=$port"
          echo "REDIS_PID=$pid"
          echo "REDIS_DIR=$dir"
        } >"$dir/redis.env.tmp"
        mv "$dir/redis.env.tmp" "$dir/redis.env"
        if [[ -n "${REDIS_OWNER_PID:-}" ]]; then
          setsid "$self" _watch "$dir" "$REDIS_OWNER_PID" "$pid" </dev/null >/dev/null 2>&1 &
          disown || true
        fi
        print_env
        exit 0
      fi
      [[ -n "$pid" ]] && stop_pid "$pid" || true
      log "start on port $port failed (attempt $attempt/$attempts); log:"
      tail -n 5 "$dir/redis.log" >&2 || true
    done
    exit 1
    ;;

  stop)
    [[ -d "$dir" ]] || exit 0
    pid="$(env_value redis.env REDIS_PID)"
    [[ -n "$pid" ]] || exit 0
    stop_pid "$pid"
    rm -f "$dir/redis.pid"
    ;;

  _watch)  # internal: _watch DIR OWNER_PID REDIS_PID
    watch_owner "${1:?}" "${2:?}" .soma-redis-throwaway stop_pid
    ;;

  *)
    echo "usage: $0 start DIR [redis-server args...] | stop DIR" >&2
    exit 2
    ;;
esac
