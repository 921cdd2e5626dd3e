#!/usr/bin/env bash
# infra/postgres/pg.sh — throwaway local PostgreSQL cluster for shelfguard dev/tests,
# run from the Debian package binaries (postgresql-NN). No Docker, no system
# service: the cluster lives entirely under $SHELFGUARD_PG_HOME.
#
# Usage: pg.sh {start|stop|restart|status|reset|dsn}
#
# Command contracts (exit 0 means the stated postcondition holds):
#   start    The cluster is initialised (initdb on first use), running, accepts
#            connections on 127.0.0.1:$PORT, and has a database `shelfguard`
#            owned by role `shelfguard` (password `shelfguard`). Superuser
#            `postgres`. Auth is `trust` for local socket and loopback TCP.
#            Idempotent: already running = ensure db/role exist, exit 0.
#   stop     The cluster is not running (fast shutdown, then immediate after
#            $SHELFGUARD_PG_STOP_TIMEOUT s). No-op success when not running.
#   restart  stop + start; data is kept.
#   status   Exit 0: running and accepting connections; 1: postmaster up but
#            not accepting; 3: not running (LSB convention).
#   reset    stop + delete the data dir and log. Next start = empty cluster.
#   dsn      Print the application DSN
#            (postgresql://shelfguard:shelfguard@127.0.0.1:$PORT/shelfguard).
#
# Environment (all optional):
#   SHELFGUARD_PG_HOME          runtime dir (default infra/postgres/.run; see
#                               the root note below)
#   SHELFGUARD_PG_PORT          TCP port on 127.0.0.1 (default 55432)
#   SHELFGUARD_PG_BIN           dir with initdb/pg_ctl (default: newest
#                               /usr/lib/postgresql/*/bin)
#   SHELFGUARD_PG_STOP_TIMEOUT  seconds for a fast shutdown (default 30)
#
# Running as root: initdb/postgres refuse to run as root, so every server-side
# command runs as the `postgres` system user (created by the Debian package;
# a `shelfguard` system user is created if it is missing), and the run home is
# chowned to it. If that user cannot reach the default run home (e.g. the repo
# is under /root, mode 700), a per-checkout dir under ${TMPDIR:-/tmp} is used
# instead and reported on stderr.
#
# Layout under $SHELFGUARD_PG_HOME:
#   data/          PGDATA
#   postgres.log   server log
#   sock/          unix socket dir (keeps clear of /var/run/postgresql)
#   .lock          flock serialising concurrent pg.sh invocations
set -euo pipefail

PG_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${SHELFGUARD_PG_PORT:-55432}"
HOST=127.0.0.1
STOP_TIMEOUT="${SHELFGUARD_PG_STOP_TIMEOUT:-30}"
APP_DB=shelfguard
APP_USER=shelfguard
APP_PASSWORD=shelfguard

log() { echo "pg.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- setup

find_bin() {
    if [ -n "${SHELFGUARD_PG_BIN:-}" ]; then
        echo "$SHELFGUARD_PG_BIN"
        return
    fi
    local d
    d="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
    if [ ! -x "$d/initdb" ]; then
        die "PostgreSQL server binaries not found (apt-get install postgresql; see infra/install-system-deps.sh)"
    fi
    echo "$d"
}

# Who runs the server: the caller, or (when root) an unprivileged system user.
RUN_AS=()
if [ "$(id -u)" -eq 0 ]; then
    PG_OS_USER=postgres
    if ! getent passwd "$PG_OS_USER" >/dev/null; then
        PG_OS_USER=shelfguard
        getent passwd "$PG_OS_USER" >/dev/null \
            || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_OS_USER"
    fi
    RUN_AS=(runuser -u "$PG_OS_USER" --)
fi

can_reach() {  # can the server user create files in dir $1 (after chown)?
    [ "${#RUN_AS[@]}" -eq 0 ] || "${RUN_AS[@]}" test -x "$1"
}

if [ -n "${SHELFGUARD_PG_HOME:-}" ]; then
    RUN_HOME="$SHELFGUARD_PG_HOME"
else
    RUN_HOME="$PG_DIR/.run"
    if ! can_reach "$PG_DIR"; then
        RUN_HOME="${TMPDIR:-/tmp}/shelfguard-pg-$(echo "$PG_DIR" | sha256sum | cut -c1-12)"
        log "note: $PG_OS_USER cannot reach $PG_DIR; using $RUN_HOME"
    fi
fi
DATA="$RUN_HOME/data"
LOGFILE="$RUN_HOME/postgres.log"
SOCK="$RUN_HOME/sock"

as_pg() { "${RUN_AS[@]}" "$@"; }

take_lock() {
    mkdir -p "$RUN_HOME"
    exec 9>"$RUN_HOME/.lock"
    flock 9
}

prepare_home() {
    mkdir -p "$RUN_HOME" "$SOCK"
    touch "$LOGFILE"
    if [ "${#RUN_AS[@]}" -gt 0 ]; then
        chown "$PG_OS_USER" "$RUN_HOME" "$SOCK" "$LOGFILE"
        can_reach "$RUN_HOME" \
            || die "$PG_OS_USER cannot access $RUN_HOME (a parent dir is not traversable); set SHELFGUARD_PG_HOME elsewhere, e.g. /tmp/shelfguard-pg"
    fi
}

is_running() {
    [ -f "$DATA/PG_VERSION" ] && as_pg "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

accepting() {
    "$BIN/pg_isready" -q -h "$HOST" -p "$PORT" -d postgres -U postgres -t 5
}

# shellcheck disable=SC2120  # extra psql args are optional
psql_admin() {
    "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U postgres -d postgres "$@"
}

init_if_needed() {
    [ -f "$DATA/PG_VERSION" ] && return 0
    log "initialising cluster in $DATA"
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [ "${#RUN_AS[@]}" -eq 0 ] || chown "$PG_OS_USER" "$DATA"
    chmod 700 "$DATA"
    # -U postgres: the superuser is `postgres` whoever runs this script.
    # --auth=trust: local socket + loopback TCP need no password (dev only).
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C \
        >>"$LOGFILE" 2>&1 || { tail -n 30 "$LOGFILE" >&2; die "initdb failed"; }
    # Settings for a throwaway dev/test cluster. fsync etc. off trades crash
    # safety of the *machine* for speed; a clean stop/restart keeps all data.
    as_pg tee -a "$DATA/postgresql.conf" >/dev/null <<EOF

# ---- shelfguard infra/postgres/pg.sh ----
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = '$SOCK'
max_connections = 100
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

ensure_app_db() {
    # Role + database, created only when missing (idempotent).
    # shellcheck disable=SC2119
    psql_admin <<SQL
SELECT 'CREATE ROLE $APP_USER LOGIN PASSWORD ''$APP_PASSWORD'''
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$APP_USER') \\gexec
SELECT 'CREATE DATABASE $APP_DB OWNER $APP_USER'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$APP_DB') \\gexec
SQL
}

# ---------------------------------------------------------------- commands

stop_locked() {
    if ! is_running; then
        return 0
    fi
    log "stopping cluster in $DATA"
    if ! as_pg "$BIN/pg_ctl" stop -D "$DATA" -m fast -w -t "$STOP_TIMEOUT" >/dev/null 2>&1; then
        log "fast shutdown timed out; using immediate"
        as_pg "$BIN/pg_ctl" stop -D "$DATA" -m immediate -w -t 30 >/dev/null 2>&1 || true
    fi
    is_running && die "could not stop the cluster"
    log "stopped"
}

start_locked() {
    prepare_home
    init_if_needed
    if is_running; then
        log "already running"
    else
        # Port clash with some other server on 127.0.0.1:$PORT?
        if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
            die "port $HOST:$PORT is already in use by another process"
        fi
        log "starting cluster on $HOST:$PORT (log $LOGFILE)"
        # 9>&- : the postmaster must not inherit the pg.sh lock.
        as_pg "$BIN/pg_ctl" start -D "$DATA" -l "$LOGFILE" -w -t 60 >/dev/null 9>&- \
            || { tail -n 30 "$LOGFILE" >&2; die "pg_ctl start failed"; }
    fi
    local _
    for _ in $(seq 1 30); do
        accepting && break
        sleep 1
    done
    accepting || die "cluster not accepting connections on $HOST:$PORT"
    ensure_app_db
    log "ready: $(cmd_dsn)"
}

cmd_dsn() { echo "postgresql://$APP_USER:$APP_PASSWORD@$HOST:$PORT/$APP_DB"; }

cmd_status() {
    if ! is_running; then
        echo "postgres: stopped (home $RUN_HOME)"
        return 3
    fi
    if accepting; then
        echo "postgres: running and accepting on $HOST:$PORT (home $RUN_HOME)"
        return 0
    fi
    echo "postgres: running but not accepting on $HOST:$PORT (home $RUN_HOME)"
    return 1
}

cmd_reset() {
    take_lock
    stop_locked
    log "wiping $DATA"
    rm -rf "$DATA" "$LOGFILE" "$SOCK"
}

BIN="$(find_bin)"

case "${1:-}" in
    start) take_lock; start_locked ;;
    stop) take_lock; stop_locked ;;
    restart) take_lock; stop_locked; start_locked ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    dsn) cmd_dsn ;;
    *)
        echo "usage: $0 {start|stop|restart|status|reset|dsn}" >&2
        exit 2
        ;;
esac
