#!/usr/bin/env bash
# make down: stop what `make up` started, by the pid files in the run folder.
#
# SIGTERM first (a worker finishes its current tasks: Celery's warm shutdown),
# then SIGKILL to the whole process group after DOWN_DEADLINE seconds (default
# 30). Pid files go once their process is gone. A pid file whose pid now
# belongs to someone else (not carrying this run folder's mark) is removed
# without signalling anything.
set -euo pipefail

PY=${PY:-.venv/bin/python}
DEADLINE=${DOWN_DEADLINE:-30}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=compose/scripts/run-dir.sh
source "$HERE/run-dir.sh"

shopt -s nullglob
declare -A PIDS=()
for file in "$RUN_DIR"/*.pid; do
    name=$(basename "$file" .pid)
    if pid=$(running_pid "$name"); then
        PIDS[$name]=$pid
        kill -TERM "$pid" 2>/dev/null || true
        echo "down: stopping $name (pid $pid)"
    else
        rm -f "$file"
    fi
done
if [ "${#PIDS[@]}" = 0 ]; then
    echo "down: nothing from $RUN_DIR is running"
    exit 0
fi

# ours_in_group PGID: pids of our processes in process group PGID (the pool
# children of a worker); checked one by one, so a reused group id is harmless.
ours_in_group() {
    local stat pid line fields
    [ -d /proc ] || return 0
    for stat in /proc/[0-9]*/stat; do
        pid=${stat#/proc/}
        pid=${pid%/stat}
        read -r line 2>/dev/null <"$stat" || continue
        # After "(command) " come: state, parent pid, process group.
        read -r -a fields <<<"${line##*) }"
        [ "${fields[2]:-}" = "$1" ] && is_ours "$pid" && echo "$pid"
    done
    return 0
}

deadline=$((SECONDS + DEADLINE))
killed=""
while :; do
    left=()
    for name in "${!PIDS[@]}"; do
        if is_ours "${PIDS[$name]}" || [ -n "$(ours_in_group "${PIDS[$name]}")" ]; then
            left+=("$name")
        fi
    done
    [ "${#left[@]}" = 0 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
        if [ -n "$killed" ]; then
            echo "down: error: still running after SIGKILL: ${left[*]}" >&2
            exit 1
        fi
        for name in "${left[@]}"; do
            echo "down: $name did not stop within ${DEADLINE}s; sending SIGKILL" >&2
            for pid in "${PIDS[$name]}" $(ours_in_group "${PIDS[$name]}"); do
                kill -KILL "$pid" 2>/dev/null || true
            done
        done
        killed=yes
        deadline=$((SECONDS + 10))
    fi
    sleep 0.2
done

for name in "${!PIDS[@]}"; do
    rm -f "$RUN_DIR/$name.pid"
done
echo "down: stopped ${#PIDS[@]} processes; logs stay in $RUN_DIR"
