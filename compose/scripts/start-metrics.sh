#!/usr/bin/env bash
# Role "metrics" (compose): the Prometheus endpoint for queue depths and DLQs.
set -euo pipefail

exec python -m workers.ops.metrics --address 0.0.0.0
