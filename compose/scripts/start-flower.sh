#!/usr/bin/env bash
# Role "flower" (compose): wait until a worker answers ping, then run Flower.
set -euo pipefail

deadline=$((SECONDS + ${FLOWER_WAIT_FOR_WORKERS:-180}))
until celery -A config inspect ping --timeout 3 >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "start-flower: no worker answered ping; starting Flower anyway" >&2
        break
    fi
    echo "start-flower: waiting for a worker to answer ping"
    sleep 2
done
# The launcher refuses to listen on 0.0.0.0 without FLOWER_BASIC_AUTH.
exec python -m workers.ops.flower
