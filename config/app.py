"""The Celery app, built from the settings and the topology.

The lifecycle defaults live here as Celery configuration: late ack, one message
in flight per worker process, redelivery when a worker process dies, publisher
confirms, persistent messages, JSON only. The worker-side policy (classify,
back off, dead-letter) is wired in by name: Celery imports ``workers`` lazily,
so this package imports nothing of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click
from celery import Celery
from celery.signals import user_preload_options
from celery.utils.imports import symbol_by_name

from config.settings import Settings, load_settings
from config.subscriptions import Subscription, load_subscriptions
from config.tls import broker_ssl_options
from config.topology import TASKS_EXCHANGE, Topology, WorkQueue, subscriber_limit_arguments

#: The Task base class every ``@app.task`` gets: the platform lifecycle.
TASK_CLASS = "workers.delivery.task:PlatformTask"
#: Celery's consumer, extended so that nothing is dropped on receipt.
CONSUMER_CLASS = "workers.delivery.consumer:PlatformConsumer"
#: Celery's AMQP helper, extended so that delayed tasks wait in the broker's delay levels.
AMQP_CLASS = "workers.delivery.publishing:PlatformAMQP"
#: Consumer bootstep that lets subscriber queues' CloudEvents run as handler tasks.
EVENTS_STEP = "workers.events.receive:EventDeliveries"
#: Consumer bootstep that relays saga outbox rows a crash left unsent (workers.sagas).
SAGA_RELAY_STEP = "workers.sagas.relay_step:OutboxRelay"
#: Called with the app when a ``celery`` command runs on it: errors Celery's own
#: commands let through (``celery call`` with the broker down...) print one line.
CLI_ERRORS = "workers.ops.cli.uncaught:install"
#: Every dotted name this package hands to Celery (a test imports each one).
DOTTED_NAMES = (TASK_CLASS, CONSUMER_CLASS, EVENTS_STEP, AMQP_CLASS, CLI_ERRORS, SAGA_RELAY_STEP)
#: Longest wait for one node to accept a connection (TCP and AMQP handshake), in seconds.
CONNECT_TIMEOUT_MAX = 2.0
#: Heartbeat checks per heartbeat interval (Celery's ``broker_heartbeat_checkrate``, default 3).
HEARTBEAT_CHECKS_PER_INTERVAL = 10
#: The one key of ``app.conf`` that holds the platform's own objects.
PLATFORM_KEY = "platform"


@dataclass(frozen=True)
class PlatformConfig:
    """What the platform is, as one app was built with it: settings, topology, subscriptions."""

    settings: Settings
    topology: Topology
    subscriptions: tuple[Subscription, ...]


def platform_config(app: Celery) -> PlatformConfig:
    """The platform's settings, topology and subscriptions of ``app``.

    Raises:
        LookupError: ``app`` was not built by :func:`create_app`.
    """
    found = app.conf.get(PLATFORM_KEY)
    if not isinstance(found, PlatformConfig):
        raise LookupError(f"Celery app {app.main!r} was not built by config.app.create_app")
    return found


def route_by_module(settings: Settings) -> Any:
    """A Celery router: a task goes to its queue through the tasks exchange.

    The queue is the call's ``queue=`` (or the task's own ``queue=`` option),
    else a direct ``routing_key=`` that names a platform queue, else the first
    part of the task's module path that names a queue (``tasks.orders.x`` goes
    to ``orders``), else the default queue. The route always names the
    exchange and the routing key: given only a queue on a direct exchange,
    Celery publishes through the default exchange instead
    (``celery.app.amqp``: "convert to anon-exchange"), and a dead letter's
    ``x-original-exchange`` would be empty. A publish to another exchange is
    left as the caller made it (None).
    """
    queues = set(settings.queues)
    known = {*settings.queues, settings.default_queue}

    def route(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any):
        exchange = options.get("exchange")
        exchange = getattr(exchange, "name", exchange)
        if exchange not in (None, "", TASKS_EXCHANGE):
            return None
        chosen = options.get("queue")  # Celery's router made a given name a kombu Queue
        if chosen is not None:
            if getattr(getattr(chosen, "exchange", None), "name", TASKS_EXCHANGE) not in ("", TASKS_EXCHANGE):
                return None
            queue = str(getattr(chosen, "name", chosen))
        elif options.get("routing_key") in known:
            queue = options["routing_key"]
        else:
            queue = next((part for part in name.split(".")[:-1] if part in queues), settings.default_queue)
        return {"queue": queue, "exchange": TASKS_EXCHANGE, "routing_key": queue}

    return route


def celery_config(settings: Settings, topology: Topology) -> dict[str, Any]:
    """Celery configuration for ``settings`` (every key is a stock Celery setting)."""
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        # Every publish waits for the broker's confirm (py-amqp confirm mode).
        "broker_transport_options": {
            "confirm_publish": True,
            "confirm_timeout": settings.publish_timeout,
            # A blocking socket read or write gives up after this (SO_RCVTIMEO /
            # SO_SNDTIMEO). Without it, closing a connection to a frozen node waits
            # for a Close-Ok that never comes: a reconnecting worker's event
            # dispatcher hung there until the node thawed.
            "read_timeout": settings.publish_timeout,
            "write_timeout": settings.publish_timeout,
        },
        # A frozen node accepts TCP but never answers the handshake; every reconnect
        # tries the list's first node again, so a short connect timeout is what
        # lets a worker reach the next node quickly.
        "broker_connection_timeout": min(settings.publish_timeout, CONNECT_TIMEOUT_MAX),
        # A worker gives up a frozen or cut-off node after two missed heartbeats and
        # moves on to the next URL of a failover list (``amqp://a;amqp://b``, round robin).
        "broker_heartbeat": settings.broker_heartbeat,
        # py-amqp notes that data arrived only when a check runs, and gives up 2 intervals
        # after that: with Celery's 3 checks per interval a frozen node was left 10-13.3 s
        # after it froze (5 s heartbeats); with 10, 10-11 s. A check compares byte
        # counters; an idle connection also sends its 8-byte heartbeat frame that often.
        "broker_heartbeat_checkrate": HEARTBEAT_CHECKS_PER_INTERVAL,
        # Right after a failover the cluster may still hold the dead connection's
        # exclusive pidbox queue (RESOURCE_LOCKED) or a classic queue on the dead
        # node: a channel error at start-up retries the connection instead of
        # stopping the worker ("Unrecoverable error").
        "broker_channel_error_retry": True,
        "broker_connection_retry_on_startup": True,
        # A publish that can't reach the broker gives up within a bounded time.
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_default_delivery_mode": "persistent",
        # receive -> process -> commit side effects -> ACK
        "task_acks_late": True,
        "task_acks_on_failure": True,
        "task_reject_on_worker_lost": True,
        # The worker layout's command line passes its own window (config.layout).
        "worker_prefetch_multiplier": max(settings.worker_prefetch, 1),
        "task_queues": topology.consumer_queues(),
        "task_default_queue": settings.default_queue,
        "task_default_exchange": TASKS_EXCHANGE,
        "task_default_exchange_type": "direct",
        "task_default_routing_key": settings.default_queue,
        "task_create_missing_queues": False,
        "task_routes": (route_by_module(settings),),
        "worker_consumer": CONSUMER_CLASS,
        "worker_concurrency": settings.concurrency,
        "worker_send_task_events": True,
        # A task-sent event rides the publisher's confirmed channel, so it costs
        # a second confirm per task; Flower shows tasks from task-received on.
        "task_send_sent_event": settings.task_sent_events,
        "task_track_started": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "include": list(settings.task_modules),
    }
    ssl_options = broker_ssl_options(settings)
    if ssl_options is not None:
        # amqps://: every connection of the app (workers, publishers, tools) verifies the broker.
        config["broker_use_ssl"] = ssl_options
    if settings.result_backend:
        config["result_backend"] = settings.result_backend
    else:
        # No results to expire: beat would otherwise send a daily celery.backend_cleanup.
        config["result_expires"] = None
    return config


def build_topology(settings: Settings, subscriptions: tuple[Subscription, ...] | None = None) -> Topology:
    """The topology for ``settings``: every work queue plus the default one, and the subscribers."""
    tiers = max(settings.max_retries, settings.max_unknown_retries)
    names = (*settings.queues, settings.default_queue)
    topology = Topology.build(names, tiers, settings.delivery_limit)
    if subscriptions is None:
        subscriptions = load_subscriptions(settings.subscriptions_file)
    if not subscriptions:
        return topology
    return topology.with_subscribers(
        tuple(subscriber_work_queue(s, settings, tiers) for s in subscriptions),
        settings.events_exchange,
        settings.event_log_retention,
    )


def subscriber_work_queue(subscription: Subscription, settings: Settings, tiers: int) -> WorkQueue:
    """The queue of one subscribing service: a work queue bound to its event patterns."""
    limits = subscriber_limit_arguments(
        settings.subscriber_max_length if subscription.max_length is None else subscription.max_length,
        settings.subscriber_max_age if subscription.max_age is None else subscription.max_age,
        subscription.overflow or settings.subscriber_overflow,
        subscription.queue,
    )
    return WorkQueue(
        subscription.queue,
        max(tiers, 1),
        settings.delivery_limit,
        event_patterns=subscription.patterns,
        extra_arguments=tuple(limits.items()),
    )


def create_app(settings: Settings | None = None, main: str = "platform") -> Celery:
    """Build a Celery app configured for the platform."""
    settings = settings or load_settings()
    subscriptions = tuple(load_subscriptions(settings.subscriptions_file))
    topology = build_topology(settings, subscriptions)
    config = celery_config(settings, topology)
    include = config.pop("include")
    for module in (m for subscription in subscriptions for m in subscription.modules):
        if module not in include:
            include.append(module)
    app = Celery(main, task_cls=TASK_CLASS, amqp=AMQP_CLASS, include=include)
    app.conf.update(config)
    app.conf[PLATFORM_KEY] = PlatformConfig(settings, topology, subscriptions)
    # Events: the step that runs subscriber queues' deliveries as handler tasks.
    if subscriptions:
        app.steps["consumer"].add(EVENTS_STEP)
        # Sagas: facts their handlers committed are relayed even after a crash.
        if settings.saga_relay_interval > 0:
            app.steps["consumer"].add(SAGA_RELAY_STEP)
    add_cli_error_reporting(app)
    return app


#: The preload option that keeps Python's traceback for an error a command did not catch.
TRACEBACK_OPTION = click.Option(
    ["--traceback"], is_flag=True, default=False, help="Show the traceback of an error instead of one line."
)


def add_cli_error_reporting(app: Celery) -> None:
    """Errors Celery's own commands let through print one line (see :data:`CLI_ERRORS`).

    Through Celery's seam for command-line extensions: a preload option
    (``--traceback``, on every ``celery`` sub-command) and the
    ``user_preload_options`` signal, which only the ``celery`` command sends,
    once it has parsed them. A program that imports the app is left alone.
    """
    app.user_options["preload"].add(TRACEBACK_OPTION)
    user_preload_options.connect(_report_cli_errors, weak=False, dispatch_uid=CLI_ERRORS)


def _report_cli_errors(sender: Any = None, app: Any = None, options: Any = None, **kwargs: Any) -> None:
    if app is None or not isinstance(app.conf.get(PLATFORM_KEY), PlatformConfig):
        return
    if (options or {}).get(TRACEBACK_OPTION.name):
        return
    symbol_by_name(CLI_ERRORS)(app)
