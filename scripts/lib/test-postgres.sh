# Sourced by scripts/test and scripts/sqlx-prepare: a throwaway PostgreSQL cluster from the system's
# binaries, on a Unix socket in a temp dir, removed when the calling script exits.
# Sets DATABASE_URL (for sqlx) and PGHOST/PGUSER (for psql).

pg_tmp=""
as_pg=()

stop_test_postgres() {
  if [ -n "$pg_tmp" ]; then
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_tmp/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_tmp"
    pg_tmp=""
  fi
}

start_test_postgres() {
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  if [ ! -x "$pg_bin/initdb" ]; then
    echo "PostgreSQL's initdb was not found under /usr/lib/postgresql (scripts/setup installs it)" >&2
    exit 1
  fi
  pg_tmp=$(mktemp -d /tmp/switchboard-test-pg.XXXXXX)
  chmod 755 "$pg_tmp"
  trap stop_test_postgres EXIT
  # PostgreSQL refuses to run as root: run it as the `postgres` user that Debian's package creates.
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$pg_tmp"
    as_pg=(runuser -u postgres --)
  fi
  "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_tmp/data" -U postgres --auth=trust -E UTF8 --locale=C \
    >"$pg_tmp/initdb.log"
  # Durability is pointless for a throwaway cluster; turning it off makes the tests faster.
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_tmp/data" -l "$pg_tmp/postgres.log" -w -o \
    "-k $pg_tmp -p 5432 -c listen_addresses='' -c unix_socket_permissions=0700 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null
  export DATABASE_URL="postgres://postgres@localhost/postgres?host=$pg_tmp"
  export PGHOST="$pg_tmp" PGUSER=postgres PGPORT=5432
}
