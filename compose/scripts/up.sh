#!/usr/bin/env bash
# make up: the workers of every work queue (one worker group each, laid out by
# PLATFORM_WORKER_LAYOUT: config/layout.py), plus Flower, all in the run folder.
#
# The run folder (PLATFORM_RUN_DIR, default .run) gets <name>.pid and <name>.log
# for each process. A process whose pid file points at a live process of this
# run folder is left alone, so running `make up` twice starts nothing twice.
# Every started process carries PLATFORM_RUN_DIR (absolute) in its environment;
# `make down` uses that to stop only what was started here.
#
# With AUTOSCALE=1 the autoscaler (`celery -A config scale run`, pid file
# autoscale.pid) starts and retires the workers instead (worker-<queue>-<n>,
# same run folder and mark); `make down` stops it and them.
#
# Environment: PY, UP_DEADLINE (seconds to wait for each process, default 60), AUTOSCALE.
set -euo pipefail

PY=${PY:-.venv/bin/python}
DEADLINE=${UP_DEADLINE:-60}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=compose/scripts/run-dir.sh
source "$HERE/run-dir.sh"

read -r -a QUEUES <<<"$("$PY" "$HERE/probe.py" worker-queues)"
# Worker processes per queue under the chosen layout (each logs "ready." once).
PROCESSES=$("$PY" "$HERE/probe.py" worker-processes)
FLOWER_HOST=$("$PY" "$HERE/probe.py" setting flower_address)
FLOWER_PORT_=$("$PY" "$HERE/probe.py" setting flower_port)
case "$FLOWER_HOST" in
    "" | 0.0.0.0) FLOWER_PROBE_HOST=127.0.0.1 ;;
    :: | "[::]") FLOWER_PROBE_HOST="[::1]" ;;
    *:*) FLOWER_PROBE_HOST="[$FLOWER_HOST]" ;;
    *) FLOWER_PROBE_HOST=$FLOWER_HOST ;;
esac
FLOWER_URL="http://$FLOWER_PROBE_HOST:$FLOWER_PORT_"

# detached COMMAND...: exec COMMAND as the leader of a new session.
if command -v setsid >/dev/null; then
    detached() { exec setsid "$@"; }
else
    # No util-linux (macOS): the same with Python.
    detached() { exec "$PY" -c 'import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])' "$@"; }
fi

# start NAME COMMAND...: run COMMAND in the background, in its own session
# (so Ctrl-C on this terminal does not reach it, and `down` can signal the
# whole process group), logging to NAME.log; record its pid in NAME.pid.
start() {
    local name=$1
    shift
    if pid=$(running_pid "$name"); then
        echo "up: $name is already running (pid $pid)"
        return 0
    fi
    [ -f "$RUN_DIR/$name.log" ] && mv -f "$RUN_DIR/$name.log" "$RUN_DIR/$name.log.1"
    # setsid execs in place (a background job is not a group leader), so $! is the pid.
    detached "$@" </dev/null >"$RUN_DIR/$name.log" 2>&1 &
    echo $! >"$RUN_DIR/$name.pid"
    STARTED+=("$name")
    echo "up: started $name (pid $!)"
}

# ready NAME CHECK...: wait until CHECK passes, failing early if NAME exits.
ready() {
    local name=$1
    shift
    local pid
    pid=$(cat "$RUN_DIR/$name.pid")
    local deadline=$((SECONDS + DEADLINE))
    until "$@"; do
        if ! is_ours "$pid"; then
            echo "up: error: $name exited while starting; the end of $RUN_DIR/$name.log:" >&2
            tail -n 30 "$RUN_DIR/$name.log" >&2 || true
            echo "up: run 'make down' to stop the rest" >&2
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "up: error: $name was not ready within ${DEADLINE}s; the end of $RUN_DIR/$name.log:" >&2
            tail -n 30 "$RUN_DIR/$name.log" >&2 || true
            echo "up: run 'make down' to stop the rest" >&2
            exit 1
        fi
        sleep 0.5
    done
}

# all_ready LOG: every worker process of the group has logged "ready.".
all_ready() { [ "$(grep -c " ready\.$" "$1" || true)" -ge "$PROCESSES" ]; }

# One way to run the workers at a time: fixed groups, or the autoscaler's.
if [ "${AUTOSCALE:-0}" = 1 ]; then
    for queue in "${QUEUES[@]}"; do
        if pid=$(running_pid "worker-$queue"); then
            echo "up: error: fixed workers of 'make up' are running (worker-$queue, pid $pid); run 'make down' first, then 'make up AUTOSCALE=1'" >&2
            exit 1
        fi
    done
elif pid=$(running_pid autoscale); then
    echo "up: error: the autoscaler of 'make up AUTOSCALE=1' is running (pid $pid); run 'make down' first, then 'make up'" >&2
    exit 1
fi

STARTED=()
if [ "${AUTOSCALE:-0}" = 1 ]; then
    start autoscale "$PY" -m celery -A config scale run
else
    for queue in "${QUEUES[@]}"; do
        start "worker-$queue" "$PY" -m workers.ops.worker_group "$queue" -l info
    done
fi
start flower "$PY" -m workers.ops.flower

if [ "${AUTOSCALE:-0}" = 1 ]; then
    # The first pass starts each queue's minimum; then each of those workers must be ready.
    ready autoscale grep -q "scale: first pass done" "$RUN_DIR/autoscale.log"
    shopt -s nullglob
    for log in "$RUN_DIR"/worker-*-*.log; do
        name=$(basename "$log" .log)
        running_pid "$name" >/dev/null && ready "$name" grep -q " ready\.$" "$log"
    done
    shopt -u nullglob
else
    for queue in "${QUEUES[@]}"; do
        # Celery logs "<node> ready." once it consumes; the log starts fresh at each start.
        ready "worker-$queue" all_ready "$RUN_DIR/worker-$queue.log"
    done
fi
flower_answers() { "$PY" "$HERE/probe.py" http "$FLOWER_URL/healthcheck" --quiet 2>/dev/null; }
ready flower flower_answers

if [ "${#STARTED[@]}" = 0 ]; then
    echo "up: everything was already running"
fi
cat <<EOF

The platform is up: $([ "${AUTOSCALE:-0}" = 1 ] && echo "the autoscaler for ${#QUEUES[@]} queues" || echo "workers for ${#QUEUES[@]} queues") (${QUEUES[*]}; $PROCESSES process(es) each,
layout $("$PY" "$HERE/probe.py" setting worker_layout)) and Flower.
  Flower:   $FLOWER_URL/  (tasks: $FLOWER_URL/tasks, broker: $FLOWER_URL/broker)
  Logs:     $RUN_DIR/*.log   (make logs follows them)
  Stop:     make down
EOF
