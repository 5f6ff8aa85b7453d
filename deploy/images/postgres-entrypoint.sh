#!/bin/sh
# The official postgres image's start-up contract on Debian's PostgreSQL 15: an empty $PGDATA is
# initialised with POSTGRES_USER (default postgres) as the superuser, POSTGRES_PASSWORD as its
# password (scram-sha-256 over TCP; trust over the container's own Unix socket, as upstream) and
# POSTGRES_DB (default: the user's name) created; then `postgres ARGS` runs in the foreground.
set -eu
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
if [ "${1:-postgres}" = "postgres" ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres-entrypoint: POSTGRES_PASSWORD is required to initialise $PGDATA" >&2
    exit 1
  fi
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$db" != "postgres" ]; then
    # A temporary server on the Unix socket only, as upstream does.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    psql -v ON_ERROR_STOP=1 -q -U "$user" -d postgres -c "CREATE DATABASE \"$db\" OWNER \"$user\""
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  fi
  echo "postgres-entrypoint: initialised $PGDATA (user $user, database $db)" >&2
fi
if [ "${1:-postgres}" = "postgres" ]; then
  shift || true
  exec postgres "$@"
fi
exec "$@"
