#!/usr/bin/env bash
# make broker: make sure RabbitMQ answers at the configured URL, with its management API.
#
# In order: use a running broker; else start an installed rabbitmq-server; else
# start the compose service where a Docker engine answers; else say how to
# install one and fail. Then enable the management plugin if it is off and wait
# for its API (Flower's broker page and the tests use it). Last, make the
# platform's own user and vhost (python -m workers.ops.platform_user).
#
# Environment: PY (the project's python), BROKER_DEADLINE (seconds, default 90),
# PLATFORM_BROKER_PASSWORD (the platform user's password; default: made once, kept
# in <run dir>/platform-broker.password, mode 0600).
set -euo pipefail

PY=${PY:-.venv/bin/python}
DEADLINE=${BROKER_DEADLINE:-90}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PROBE=("$PY" "$HERE/probe.py")

say() { printf 'broker: %s\n' "$*"; }
fail() { printf 'broker: error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly, or through sudo when it needs no password.
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 126
    fi
}

# rabbitmq-server and rabbitmq-plugins live in /usr/sbin, often not on a user's PATH.
find_tool() {
    command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true
}

install_hint() {
    cat >&2 <<'EOF'
broker: no RabbitMQ answers, none is installed, and no Docker engine runs.
broker: install RabbitMQ (Debian/Ubuntu) with:

    sudo apt-get update && sudo apt-get install -y rabbitmq-server
    sudo rabbitmq-plugins enable rabbitmq_management

broker: or start Docker and run: docker compose -f compose/docker-compose.yml up -d rabbitmq
broker: or point CELERY_BROKER_URL and PLATFORM_MANAGEMENT_URL at a running broker.
EOF
    exit 1
}

# A bad setting stops here with its one line (the probes below would misread it).
settings_status=0
"${PROBE[@]}" setting broker_url >/dev/null || settings_status=$?
[ "$settings_status" = 0 ] || exit 2

amqp_status=0
"${PROBE[@]}" amqp --quiet 2>/dev/null || amqp_status=$?
if [ "$amqp_status" = 2 ]; then
    # It answers but refuses our user or vhost: starting another broker won't help.
    "${PROBE[@]}" amqp || true
    fail "fix the user, password or vhost in CELERY_BROKER_URL (or create the vhost), or the PLATFORM_BROKER_TLS_* settings"
fi

started_here=""
if [ "$amqp_status" != 0 ] && [ "$("${PROBE[@]}" setting cluster)" = True ]; then
    # PLATFORM_CLUSTER=1 (make ... CLUSTER=1): never start the machine's own broker instead.
    "${PROBE[@]}" amqp || true
    fail "no node of the local cluster answers; run: make cluster-up (make cluster-status says more)"
fi
if [ "$amqp_status" != 0 ]; then
    if ! "${PROBE[@]}" local-broker; then
        "${PROBE[@]}" amqp || true
        fail "the broker in CELERY_BROKER_URL is on another host; start it there"
    fi
    server=$(find_tool rabbitmq-server)
    if [ -n "$server" ]; then
        say "RabbitMQ is not running; starting it: $server -detached"
        as_root "$server" -detached ||
            fail "could not start RabbitMQ (run: sudo $server -detached, or sudo systemctl start rabbitmq-server)"
        started_here="rabbitmq-server"
    elif command -v docker >/dev/null && docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
        say "starting RabbitMQ with Docker Compose (compose/docker-compose.yml)"
        docker compose -f "$ROOT/compose/docker-compose.yml" up -d rabbitmq
        started_here="docker"
    else
        install_hint
    fi
    say "waiting up to ${DEADLINE}s for RabbitMQ to accept connections"
    "${PROBE[@]}" amqp --wait "$DEADLINE" || fail "RabbitMQ did not come up; see its log (/var/log/rabbitmq/)"
fi

management_status=0
"${PROBE[@]}" management --quiet 2>/dev/null || management_status=$?
if [ "$management_status" = 2 ]; then
    "${PROBE[@]}" management || true
    fail "the management API refused the credentials in PLATFORM_MANAGEMENT_URL"
fi
if [ "$management_status" != 0 ]; then
    plugins=$(find_tool rabbitmq-plugins)
    if [ -n "$plugins" ] && "${PROBE[@]}" local-broker && [ "$started_here" != docker ]; then
        say "enabling the management plugin: $plugins enable rabbitmq_management"
        as_root "$plugins" enable rabbitmq_management >/dev/null ||
            fail "could not enable it (run: sudo $plugins enable rabbitmq_management)"
    fi
    say "waiting up to ${DEADLINE}s for the management API"
    "${PROBE[@]}" management --wait "$DEADLINE" ||
        fail "the management API does not answer (is rabbitmq_management enabled? is PLATFORM_MANAGEMENT_URL right?)"
fi
"${PROBE[@]}" amqp
"${PROBE[@]}" management

# The platform's own user and vhost (README "Security"): RabbitMQ lets guest in from loopback only.
# The local cluster makes its own at first boot. A broker whose management user is no
# administrator can't make them: say so and go on (the platform still runs as CELERY_BROKER_URL's user).
if [ "$("${PROBE[@]}" setting cluster)" != True ]; then
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m workers.ops.platform_user ||
        say "warning: the platform user was not made (the line above says why); the platform runs as the user of CELERY_BROKER_URL"
fi
