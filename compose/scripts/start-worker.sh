#!/usr/bin/env bash
# Role "worker" (compose, Kubernetes): one Celery worker process; WORKER_QUEUES limits its queues.
#
# Its pool, slots and prefetch window are the worker layout's for one process
# (PLATFORM_WORKER_LAYOUT, config/layout.py): by default one solo process with a
# window of 2, so a queue's replicas (`--scale worker-<queue>=N`, a Deployment's
# replicas) are its worker processes, as `make up` runs PLATFORM_CONCURRENCY of
# them per queue. A solo worker whose task hits its hard time limit exits on
# purpose (code 70); the container's restart policy starts it again.
set -euo pipefail

queues=()
if [ -n "${WORKER_QUEUES:-}" ]; then
    queues=(-Q "$WORKER_QUEUES")
fi
# (a bad setting stops the container here with its one line, rather than starting without the layout)
options=$(python compose/scripts/probe.py pool-options)
read -r -a pool <<<"$options"
# The container's hostname is unique per replica, so node names never clash.
exec celery -A config worker -l "${WORKER_LOG_LEVEL:-info}" -n "worker@${HOSTNAME}" "${pool[@]}" "${queues[@]}"
