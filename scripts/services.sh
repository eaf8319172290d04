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
    # fsync off for the tests (PG_FSYNC=on for benchmarks): the tests stop
    # and kill Sotto servers, never the machine, and an operating system
    # that stays up loses nothing PostgreSQL wrote.
    "${as[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w \
        -o "-c listen_addresses='' -k $PG_TMP -c fsync=${PG_FSYNC:-off} -c max_connections=400" \
        start >/dev/null \
        || { cat "$PG_TMP/server.log" >&2; exit 1; }
    export SOTTO_TEST_POSTGRES="host=$PG_TMP user=postgres dbname=postgres"
    PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -m immediate stop)
    trap stop_services EXIT
}

# Starts a NATS server of its own on a free loopback port. Exports
# SOTTO_TEST_NATS, its address. Stopped and removed with the shell.
start_nats() {
    if ! command -v nats-server >/dev/null 2>&1; then
        echo "scripts/test: nats-server is not installed; the cluster tests need it." >&2
        echo "  Debian/Ubuntu: sudo apt-get install nats-server" >&2
        exit 1
    fi
    NATS_TMP=$(mktemp -d /tmp/sotto-nats.XXXXXX)
    nats-server -a 127.0.0.1 -p -1 --ports_file_dir "$NATS_TMP" -l "$NATS_TMP/nats.log" &
    NATS_PID=$!
    local ports="" _
    for _ in $(seq 100); do
        ports=$(cat "$NATS_TMP"/*.ports 2>/dev/null || true)
        [ -n "$ports" ] && break
        sleep 0.1
    done
    local addr
    addr=$(printf '%s' "$ports" | grep -o 'nats://[^"]*' | head -n 1)
    if [ -z "$addr" ]; then
        cat "$NATS_TMP/nats.log" >&2 || true
        echo "scripts/test: nats-server did not start" >&2
        exit 1
    fi
    export SOTTO_TEST_NATS="$addr"
    trap stop_services EXIT
}

stop_services() {
    if [ -n "${PG_TMP:-}" ]; then
        "${PG_STOP[@]}" >/dev/null 2>&1 || true
        rm -rf "$PG_TMP"
    fi
    if [ -n "${NATS_PID:-}" ]; then
        kill "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
        rm -rf "$NATS_TMP"
    fi
}
