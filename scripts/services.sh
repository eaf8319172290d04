# Private test services, started for one test run and removed after it.
# Sourced by scripts/test (and .ci/run through it); needs Debian's
# postgresql package (see README: "Running the tests").

# Starts a PostgreSQL server of its own: data in a temp dir, listening on
# a Unix socket in that dir only (no TCP port to collide with), trust
# authentication (nothing else can reach the socket). Exports
# SOTTO_TEST_POSTGRES, a connection string for it. Stopped and removed
# when the calling shell exits.
start_postgres() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        echo "scripts/test: PostgreSQL is not installed; the tests run on it too." >&2
        echo "  Debian/Ubuntu: sudo apt-get install postgresql" >&2
        exit 1
    fi
    PG_TMP=$(mktemp -d /tmp/sotto-pg.XXXXXX)
    chmod 755 "$PG_TMP"
    # initdb refuses to run as root: run it as the postgres user then.
    local as=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$PG_TMP"
        as=(runuser -u postgres --)
    fi
    "${as[@]}" "$bin/initdb" -D "$PG_TMP/data" -U postgres --auth=trust \
        --no-sync -E UTF8 >"$PG_TMP/initdb.log" 2>&1 \
        || { cat "$PG_TMP/initdb.log" >&2; exit 1; }
    # fsync off: the tests stop and kill Sotto servers, never the machine,
    # and an operating system that stays up loses nothing PostgreSQL wrote.
    "${as[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w \
        -o "-c listen_addresses='' -k $PG_TMP -c fsync=off -c max_connections=400" \
        start >/dev/null \
        || { cat "$PG_TMP/server.log" >&2; exit 1; }
    export SOTTO_TEST_POSTGRES="host=$PG_TMP user=postgres dbname=postgres"
    PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -m immediate stop)
    trap stop_services EXIT
}

stop_services() {
    if [ -n "${PG_TMP:-}" ]; then
        "${PG_STOP[@]}" >/dev/null 2>&1 || true
        rm -rf "$PG_TMP"
    fi
}
