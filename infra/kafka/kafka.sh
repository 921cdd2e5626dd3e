#!/usr/bin/env bash
# infra/kafka/kafka.sh — run a local single-node Apache Kafka (KRaft) broker
# assembled from the jars on Maven Central. No Docker, no Kafka tarball.
#
# Usage: kafka.sh {fetch|start|stop|restart|status|reset|logs}
#
# Command contracts (exit 0 means the stated postcondition holds):
#   fetch    The broker's runtime classpath is present in $SHELFGUARD_KAFKA_LIB
#            (default infra/kafka/lib/). No-op when the stamp file matches
#            pom.xml; otherwise re-collects the jars with Maven (atomically:
#            a failed fetch never leaves a half-filled lib/).
#   start    A broker started by this script is running AND answers a metadata
#            request on 127.0.0.1:$PORT listing itself (i.e. it is unfenced and
#            usable). Implies fetch; formats the data dir on first use. If a
#            broker from this run home is already running, waits for it to be
#            ready and exits 0 (idempotent). Fails (non-zero) if the port is
#            taken by some other process, or readiness is not reached within
#            $SHELFGUARD_KAFKA_START_TIMEOUT s (the broker is then stopped again).
#   stop     No broker from this run home is running. SIGTERM, wait up to
#            $SHELFGUARD_KAFKA_STOP_TIMEOUT s (default 30) for a clean
#            shutdown, then SIGKILL. No-op success when not running.
#   restart  stop + start. Data (topics, offsets, committed messages) is kept.
#   status   Prints the state. Exit 0: running and ready; 1: process running
#            but not answering; 3: not running (LSB convention).
#   reset    stop + delete all runtime state (data, cluster id, logs, config).
#            The next start formats a fresh, empty cluster.
#   logs     Print the tail of the broker's server.log (N lines, default 100).
#
# Environment (all optional):
#   SHELFGUARD_KAFKA_HOME            runtime dir (default infra/kafka/.run)
#   SHELFGUARD_KAFKA_LIB             jar cache   (default infra/kafka/lib)
#   SHELFGUARD_KAFKA_PORT            client port (default 9092)
#   SHELFGUARD_KAFKA_CONTROLLER_PORT KRaft controller port (default 9093)
#   SHELFGUARD_KAFKA_HEAP_OPTS       default "-Xms256m -Xmx512m"
#   SHELFGUARD_KAFKA_START_TIMEOUT   seconds to wait for readiness (default 60)
#   SHELFGUARD_KAFKA_STOP_TIMEOUT    seconds before SIGKILL (default 30)
#   SHELFGUARD_KAFKA_READY_CHECK     auto|kcat|python|log (see broker_ready)
#   PYTHON                           interpreter for the confluent_kafka
#                                    readiness check when kcat is missing
#
# Runtime layout under $SHELFGUARD_KAFKA_HOME:
#   data/               log.dirs (KRaft metadata + topic partitions)
#   logs/server.log     broker log (log4j2.yaml); logs/kafka.out = stdout/JVM
#   server.properties   rendered from server.properties.template each start
#   kafka.pid           pid of the broker JVM
#   cluster.id          cluster id used to format data/
#   .lock               flock serialising concurrent kafka.sh invocations
set -euo pipefail

KAFKA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN_HOME="${SHELFGUARD_KAFKA_HOME:-$KAFKA_DIR/.run}"
LIB_DIR="${SHELFGUARD_KAFKA_LIB:-$KAFKA_DIR/lib}"
HOST=127.0.0.1
PORT="${SHELFGUARD_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${SHELFGUARD_KAFKA_CONTROLLER_PORT:-9093}"
NODE_ID=1
HEAP_OPTS="${SHELFGUARD_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
START_TIMEOUT="${SHELFGUARD_KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${SHELFGUARD_KAFKA_STOP_TIMEOUT:-30}"

DATA_DIR="$RUN_HOME/data"
LOG_DIR="$RUN_HOME/logs"
CONF="$RUN_HOME/server.properties"
PID_FILE="$RUN_HOME/kafka.pid"
CLUSTER_ID_FILE="$RUN_HOME/cluster.id"
STAMP="$LIB_DIR/.fetched"
POM="$KAFKA_DIR/pom.xml"
MVN_DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

log() { echo "kafka.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- helpers

# Serialise kafka.sh invocations sharing a run home (parallel test workers
# calling `start` must not launch two brokers). fd 9 is closed for the JVM.
take_lock() {
    mkdir -p "$RUN_HOME"
    exec 9>"$RUN_HOME/.lock"
    flock 9
}

need_java() {
    command -v java >/dev/null 2>&1 \
        || die "java not found (need OpenJDK >= 17; see infra/install-system-deps.sh)"
}

# Stamp content = sha256 of pom.xml, so editing versions triggers a re-fetch.
pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

jars_present() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(pom_hash)" ]
}

cmd_fetch() {
    if jars_present; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 \
        || die "mvn not found (need Maven; see infra/install-system-deps.sh)"
    local tmp="$LIB_DIR.tmp.$$"
    rm -rf "$tmp"
    log "fetching Kafka runtime jars with Maven into $LIB_DIR ..."
    local start_s=$SECONDS
    local mvn_log="$LIB_DIR.tmp.$$.log"
    if ! mvn -B -q -Dstyle.color=never -f "$POM" "$MVN_DEP_PLUGIN:copy-dependencies" \
            -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
        cat "$mvn_log" >&2
        rm -rf "$tmp" "$mvn_log"
        die "maven copy-dependencies failed"
    fi
    rm -f "$mvn_log"
    ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "no kafka_2.13 jar fetched"; }
    pom_hash >"$tmp/.fetched"
    rm -rf "$LIB_DIR"
    mv "$tmp" "$LIB_DIR"
    local jars=("$LIB_DIR"/*.jar)
    log "fetched ${#jars[@]} jars in $((SECONDS - start_s)) s"
}

# Runs a Kafka main class with the cached classpath.
kafka_java() {
    java -cp "$LIB_DIR/*" "$@"
}

# Prints the pid if the broker of this run home is alive, else nothing.
# Checks the cmdline so a recycled pid is never mistaken for the broker.
running_pid() {
    [ -f "$PID_FILE" ] || return 0
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    if kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -F "kafka.Kafka $CONF" >/dev/null; then
        echo "$pid"
    fi
}

port_open() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Readiness = the broker answers a metadata request listing itself. Kafka opens
# the client port only after the broker is unfenced, so an answer means usable.
# Method ($SHELFGUARD_KAFKA_READY_CHECK, default auto = first available):
#   kcat    `kcat -L` lists "broker <id> at <host:port>"
#   python  confluent_kafka AdminClient via $PYTHON lists broker <id>
#   log     no client needed: port accepts TCP and server.log (since this
#           launch) contains "Kafka Server started"
# Note: no `grep -q` in pipelines here — with pipefail an early grep exit can
# SIGPIPE the writer and turn a match into a failure.
ready_method() {
    local m="${SHELFGUARD_KAFKA_READY_CHECK:-auto}"
    if [ "$m" != auto ]; then
        echo "$m"
    elif command -v kcat >/dev/null 2>&1; then
        echo kcat
    elif [ -n "${PYTHON:-}" ] && "$PYTHON" -c 'import confluent_kafka' 2>/dev/null; then
        echo python
    else
        echo log
    fi
}

broker_ready() {
    case "$(ready_method)" in
        kcat)
            timeout 10 kcat -b "$HOST:$PORT" -L -m 5 2>/dev/null \
                | grep -F "broker $NODE_ID at $HOST:$PORT" >/dev/null
            ;;
        python)
            timeout 15 "$PYTHON" - "$HOST:$PORT" "$NODE_ID" <<'PY' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=5)
sys.exit(0 if int(sys.argv[2]) in md.brokers else 1)
PY
            ;;
        log)
            port_open "$PORT" || return 1
            # Only look at log lines written since this launch (offset saved
            # by start_locked); a rolled-over (smaller) file is read whole.
            local off size
            off="$(cat "$RUN_HOME/log.offset" 2>/dev/null || echo 0)"
            size="$(stat -c %s "$LOG_DIR/server.log" 2>/dev/null || echo 0)"
            [ "$size" -ge "$off" ] || off=0
            tail -c +"$((off + 1))" "$LOG_DIR/server.log" 2>/dev/null \
                | grep -F "Kafka Server started" >/dev/null
            ;;
        *) die "unknown SHELFGUARD_KAFKA_READY_CHECK (want auto|kcat|python|log)" ;;
    esac
}

render_config() {
    sed -e "s|@NODE_ID@|$NODE_ID|g" \
        -e "s|@HOST@|$HOST|g" \
        -e "s|@PORT@|$PORT|g" \
        -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
        -e "s|@DATA_DIR@|$DATA_DIR|g" \
        "$KAFKA_DIR/server.properties.template" >"$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
}

# Formats data/ once (KRaft needs meta.properties + a bootstrap checkpoint).
format_if_needed() {
    if [ -f "$DATA_DIR/meta.properties" ]; then
        # The voter endpoint is baked into the metadata log at format time.
        if [ -f "$RUN_HOME/controller.port" ] \
            && [ "$(cat "$RUN_HOME/controller.port")" != "$CONTROLLER_PORT" ]; then
            die "data dir was formatted for controller port $(cat "$RUN_HOME/controller.port"), not $CONTROLLER_PORT; run '$0 reset' first"
        fi
        return 0
    fi
    mkdir -p "$DATA_DIR"
    if [ ! -s "$CLUSTER_ID_FILE" ]; then
        kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1 >"$CLUSTER_ID_FILE"
    fi
    local cid
    cid="$(cat "$CLUSTER_ID_FILE")"
    [ -n "$cid" ] || die "could not generate a cluster id"
    log "formatting $DATA_DIR (cluster id $cid)"
    # --standalone: this node is the initial (only) voter of the dynamic quorum.
    kafka_java kafka.tools.StorageTool format --standalone -t "$cid" -c "$CONF" \
        >>"$LOG_DIR/format.log" 2>&1 \
        || { cat "$LOG_DIR/format.log" >&2; die "StorageTool format failed"; }
    echo "$CONTROLLER_PORT" >"$RUN_HOME/controller.port"
}

wait_ready() {
    local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "broker process $pid exited during startup; last log lines:"
            tail -n 20 "$LOG_DIR/kafka.out" "$LOG_DIR/server.log" >&2 2>/dev/null || true
            rm -f "$PID_FILE"
            return 1
        fi
        if broker_ready; then
            return 0
        fi
        sleep 1
    done
    log "broker not ready after ${START_TIMEOUT}s; last log lines:"
    tail -n 40 "$LOG_DIR/server.log" >&2 2>/dev/null || true
    return 1
}

# Stop without taking the lock (callers hold it).
stop_locked() {
    local pid
    pid="$(running_pid)"
    if [ -z "$pid" ]; then
        rm -f "$PID_FILE"
        return 0
    fi
    log "stopping broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "broker did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    rm -f "$PID_FILE"
    log "stopped"
}

start_locked() {
    local pid
    pid="$(running_pid)"
    if [ -n "$pid" ]; then
        log "already running (pid $pid); waiting for readiness"
        wait_ready "$pid" || die "running broker (pid $pid) is not ready"
        log "ready on $HOST:$PORT"
        return 0
    fi
    rm -f "$PID_FILE"
    need_java
    cmd_fetch
    local p
    for p in "$PORT" "$CONTROLLER_PORT"; do
        if port_open "$p"; then
            die "port $HOST:$p is already in use by another process"
        fi
    done
    mkdir -p "$DATA_DIR" "$LOG_DIR"
    render_config
    format_if_needed

    log "starting broker on $HOST:$PORT (controller $HOST:$CONTROLLER_PORT), logs in $LOG_DIR"
    local t0=$SECONDS
    stat -c %s "$LOG_DIR/server.log" >"$RUN_HOME/log.offset" 2>/dev/null || echo 0 >"$RUN_HOME/log.offset"
    # setsid: own session, so the broker outlives the calling shell / test
    # runner's process group. 9>&- : don't inherit the kafka.sh lock.
    # shellcheck disable=SC2086  # HEAP_OPTS is intentionally word-split
    setsid java $HEAP_OPTS \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.yaml" \
        -Dkafka.logs.dir="$LOG_DIR" \
        -cp "$LIB_DIR/*" kafka.Kafka "$CONF" \
        </dev/null >>"$LOG_DIR/kafka.out" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
    if ! wait_ready "$pid"; then
        stop_locked
        die "broker failed to start"
    fi
    log "ready on $HOST:$PORT (pid $pid) after $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- commands

cmd_start() { take_lock; start_locked; }
cmd_stop() { take_lock; stop_locked; }
cmd_restart() { take_lock; stop_locked; start_locked; }

cmd_status() {
    local pid
    pid="$(running_pid)"
    if [ -z "$pid" ]; then
        echo "kafka: stopped (home $RUN_HOME)"
        return 3
    fi
    if broker_ready; then
        echo "kafka: running and ready (pid $pid, bootstrap $HOST:$PORT, home $RUN_HOME)"
        return 0
    fi
    echo "kafka: running but not answering (pid $pid, bootstrap $HOST:$PORT, home $RUN_HOME)"
    return 1
}

cmd_reset() {
    take_lock
    stop_locked
    log "wiping runtime state in $RUN_HOME"
    rm -rf "$DATA_DIR" "$LOG_DIR" "$CONF" "$CLUSTER_ID_FILE" "$RUN_HOME/controller.port" "$RUN_HOME/log.offset"
}

cmd_logs() {
    tail -n "${1:-100}" "$LOG_DIR/server.log"
}

case "${1:-}" in
    fetch) take_lock; cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_restart ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    logs) cmd_logs "${2:-100}" ;;
    *)
        echo "usage: $0 {fetch|start|stop|restart|status|reset|logs [N]}" >&2
        exit 2
        ;;
esac
