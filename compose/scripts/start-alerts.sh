#!/usr/bin/env bash
# Role "alerts" (compose): webhook alerts without Prometheus.
set -euo pipefail

if [ -z "${PLATFORM_ALERT_WEBHOOK_URL:-}" ]; then
    echo "alerts: PLATFORM_ALERT_WEBHOOK_URL is not set; checks run but nothing is posted" >&2
fi
exec python -m workers.ops.alerts
