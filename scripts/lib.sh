# Shared by scripts/redis-server.sh and scripts/postgres-server.sh (sourced, not run).
# The caller sets `dir` (its server directory) before using env_value.

# True when PID is a live (not zombie) process whose command name starts with PREFIX.
alive_named() {
  local pid="$1" prefix="$2" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/comm" ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$prefix"* ]] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

# True when PID is a live (not zombie) process (zombies linger here: PID 1 does not reap them).
process_alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
  [[ "$state" != "Z" && "$state" != "X" ]]
}

# env_value FILE NAME → the last NAME=value in DIR/FILE (empty when absent).
env_value() {
  [[ -f "$dir/$1" ]] || return 0
  sed -n "s/^$2=//p" "$dir/$1" | tail -n 1
}

# A free TCP port on 127.0.0.1 (the kernel's pick; free when asked).
pick_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Runs a command with an empty signal mask and default SIGPIPE: a caller may have spawned us from a
# thread that blocks signals (e.g. a Dispatch worker), and a server must still honour its signals.
with_clean_signals() {
  python3 -c 'import os, signal, sys
signal.pthread_sigmask(signal.SIG_SETMASK, [])
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])' "$@"
}

# watch_owner OWNER_PID SERVER_PID MARKER STOP_FN: waits while both live; once the owner has exited,
# calls STOP_FN SERVER_PID and, when DIR holds the file MARKER, removes DIR (a throwaway server).
watch_owner() {
  local owner="$1" pid="$2" marker="$3" stop_fn="$4"
  while process_alive "$owner" && alive "$pid"; do sleep 0.5; done
  if ! process_alive "$owner"; then
    "$stop_fn" "$pid" || true
    [[ -f "$dir/$marker" ]] && rm -rf -- "$dir"
  fi
  return 0
}
