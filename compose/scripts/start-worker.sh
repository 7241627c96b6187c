#!/usr/bin/env bash
# Role "worker" (compose): one Celery worker; WORKER_QUEUES limits its queues.
set -euo pipefail

queues=()
if [ -n "${WORKER_QUEUES:-}" ]; then
    queues=(-Q "$WORKER_QUEUES")
fi
# The container's hostname is unique per replica, so node names never clash.
exec celery -A config worker -l "${WORKER_LOG_LEVEL:-info}" -n "worker@${HOSTNAME}" "${queues[@]}"
