"""Typed platform settings, read once from the environment.

Every option has a default that is safe on one developer machine, and a ``#:``
comment that the README's settings table mirrors. A bad value stops start-up
with :class:`SettingsError`, whose message names the variable.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from importlib.machinery import ModuleSpec
from typing import TypeVar

T = TypeVar("T")

#: Names a queue may have: what RabbitMQ accepts and a shell need not quote.
QUEUE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

DEFAULT_QUEUES = ("orders", "payments", "inventory", "email", "analytics")


class SettingsError(ValueError):
    """A setting from the environment has a value the platform can't use."""


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one platform process."""

    #: AMQP URL of the broker (Celery's usual variable name); several joined by ``;`` fail over in turn.
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    #: Work queues, one per service; tasks in ``tasks/<queue>.py`` go to ``<queue>``.
    queues: tuple[str, ...] = DEFAULT_QUEUES
    #: Queue for tasks whose module names no configured queue.
    default_queue: str = "default"
    #: Task modules a worker imports (comma separated).
    task_modules: tuple[str, ...] = (
        "tasks.orders",
        "tasks.payments",
        "tasks.inventory",
        "tasks.email",
        "tasks.analytics",
    )
    #: Seconds before the first retry: ``delay = min(base * 2**n + jitter, max)``.
    retry_base: float = 1.0
    #: Upper bound of the uniform jitter added to every delay, in seconds.
    retry_jitter_max: float = 0.5
    #: Longest wait between two attempts, in seconds.
    retry_max_delay: float = 60.0
    #: Retries of a transient failure before the message is dead-lettered.
    max_retries: int = 5
    #: Retries of an unclassified failure before the message is dead-lettered.
    max_unknown_retries: int = 2
    #: Deliveries a message may have that end with its worker process dying.
    delivery_limit: int = 3
    #: Seconds that publishing (a task, a retry, a dead letter) may take to be confirmed.
    publish_timeout: float = 5.0
    #: Longest traceback kept in a dead letter's ``x-error-traceback``, in characters.
    traceback_limit: int = 4000
    #: Exception classes (dotted paths) added to the transient ones.
    extra_transient: tuple[str, ...] = ()
    #: Exception classes (dotted paths) added to the permanent ones.
    extra_permanent: tuple[str, ...] = ()
    #: Where completed task ids live: ``sqlite:///path`` or ``postgresql://...`` (default: in ``run_dir``).
    state_url: str = "sqlite:///.run/state.sqlite3"
    #: Skip tasks whose id is already recorded as completed.
    idempotency: bool = True
    #: Publish Celery's ``task-sent`` event for every task (one more confirmed publish each).
    task_sent_events: bool = False
    #: Celery result backend URL; empty means results are not stored.
    result_backend: str = ""
    #: Task slots per queue: prefork children, threads, or (``solo`` layout) worker processes.
    concurrency: int = 2
    #: Folder for pid files, logs and the state database of ``make up``.
    run_dir: str = ".run"
    #: RabbitMQ management API, used by Flower's broker page and the tools (several: ``;``, tried in turn).
    management_url: str = "http://guest:guest@127.0.0.1:15672/api/"
    #: Address Flower listens on.
    flower_address: str = "127.0.0.1"
    #: Port Flower listens on.
    flower_port: int = 5555
    #: Flower basic auth as ``user:password`` (comma separated for several users).
    flower_basic_auth: str = ""
    #: Public URL of Flower, used in alert messages' links.
    flower_url: str = "http://127.0.0.1:5555"
    #: Slack-compatible webhook for alerts; empty turns webhook alerts off.
    alert_webhook_url: str = ""
    #: Seconds between two alert checks.
    alert_interval: float = 60.0
    #: Seconds before an alert for a condition that still holds is sent again.
    alert_repeat_after: float = 3600.0
    #: Dead letters per hour into one DLQ above which an alert fires.
    alert_dlq_inflow_per_hour: int = 10
    #: Ready messages in one queue above which an alert fires.
    alert_queue_depth: int = 1000
    #: Seconds a queue may hold ready messages with no consumer before an alert fires.
    alert_no_consumer_after: float = 120.0
    #: Port of the Prometheus metrics endpoint.
    metrics_port: int = 9808
    #: Share of replayed messages that may dead-letter again before a replay stops.
    replay_max_refail_ratio: float = 0.5
    #: Topic exchange every event is published to (routing key = event type).
    events_exchange: str = "platform.events"
    #: CloudEvents ``source`` of events this process publishes.
    events_source: str = "/platform"
    #: File (TOML or JSON) declaring which services subscribe to which events; empty: none.
    subscriptions_file: str = ""
    #: Largest task or event body accepted at publish, in bytes (1 MiB); larger raises MessageTooLarge.
    max_message_bytes: int = 1_048_576
    #: Put bodies over ``max_message_bytes`` in the blob store and send a reference instead.
    claim_check: bool = False
    #: Directory of the claim-check blob store (default: ``blobs`` in ``run_dir``).
    blob_dir: str = ".run/blobs"
    #: Seconds the event log stream keeps every event (7 days); 0 turns the log off.
    event_log_retention: float = 604_800.0
    #: Most ready messages in one subscriber queue; 0 means no limit.
    subscriber_max_length: int = 0
    #: Seconds an event may wait in a subscriber queue before it is dead-lettered; 0: forever.
    subscriber_max_age: float = 0.0
    #: What a full subscriber queue does: ``reject-publish`` (publishers get an error) or ``dead-letter``.
    subscriber_overflow: str = "reject-publish"
    #: The Compose file whose per-queue worker services (``worker-<queue>``) the compose pool scales.
    compose_file: str = "compose/docker-compose.yml"
    #: Its Compose project name; empty: the file's own ``name:``.
    compose_project: str = ""
    #: Fewest workers per queue; 0 lets an idle queue scale to zero.
    scale_min: int = 1
    #: Most workers per queue.
    scale_max: int = 8
    #: Due backlog (ready + unacked) above which a queue gets ``scale_step_up`` more workers.
    scale_up_above: int = 1000
    #: Due backlog below which, for the whole ``scale_window``, a queue gives up ``scale_step_down`` workers.
    scale_down_below: int = 100
    #: Workers added by one scale-up.
    scale_step_up: int = 2
    #: Workers removed by one scale-down.
    scale_step_down: int = 1
    #: Seconds between two scaling actions on one queue.
    scale_cooldown: float = 60.0
    #: Seconds of samples that must all say "down" before a queue scales down (hysteresis).
    scale_window: float = 300.0
    #: Seconds a due task should wait at most; sizes the pool by backlog x task time instead of the
    #: thresholds once task times are known. 0: off.
    scale_target_latency: float = 0.0
    #: Per-queue overrides of the scale settings: ``orders:min=1,max=20;email:max=4``.
    scale_queues: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()
    #: Seconds between two passes of the scaling engine (``celery -A config scale run``).
    scale_interval: float = 2.0
    # -- sagas (workers/sagas) --
    #: Seconds between two passes of a worker's outbox relay (facts a crash left unsent); 0: off.
    saga_relay_interval: float = 2.0
    #: Relay a handler's outbox rows right after its commit (off: only the periodic relay sends them).
    saga_relay_after_commit: bool = True
    #: Seconds each step of the order saga may take before its deadline fires.
    saga_step_deadline: float = 30.0
    #: Seconds a running saga may take before it counts as stuck in the metrics and alerts.
    saga_stuck_after: float = 300.0
    #: Seconds between AMQP heartbeats of a worker's connection; a frozen node is given up after two missed.
    broker_heartbeat: float = 5.0
    #: Run on the local cluster of ``make cluster-up``: broker and management URLs become its node lists.
    cluster: bool = False
    #: Folder of the local cluster's nodes (default: ``cluster`` in ``run_dir``).
    cluster_dir: str = ".run/cluster"
    #: First AMQP port of the local cluster (nodes on it and the next two; see README "Local cluster").
    cluster_port: int = 5681
    # -- worker layout (issue 16) --
    #: How a queue's workers run tasks: ``solo`` (``concurrency`` single-process consumers),
    #: ``prefork`` (one main process, ``concurrency`` children behind pipes) or ``threads``.
    worker_layout: str = "solo"
    #: Messages each task slot may hold unacknowledged (Celery's prefetch multiplier); 0: the
    #: layout's own (2 for ``solo``: one running, one waiting; 1 otherwise).
    worker_prefetch: int = 0
    # -- TLS to the broker (amqps:// URLs; README "Security") --
    #: CA bundle (PEM) that verifies the broker's certificate (and an https:// management API);
    #: empty: the system's CAs.
    broker_tls_ca: str = ""
    #: Client certificate (PEM) the platform presents to the broker over TLS; empty: none.
    broker_tls_cert: str = ""
    #: Private key (PEM, unencrypted) of the client certificate; empty: it is in the certificate file.
    broker_tls_key: str = ""
    #: Check the broker's certificate and host name over TLS (off only for a throw-away test broker).
    broker_tls_verify: bool = True
    #: Seconds of the broker heartbeat of a worker's connections (0: none).


#: Environment variable for each setting.
ENVIRONMENT_NAMES: Mapping[str, str] = {
    "broker_url": "CELERY_BROKER_URL",
    "queues": "PLATFORM_QUEUES",
    "default_queue": "PLATFORM_DEFAULT_QUEUE",
    "task_modules": "PLATFORM_TASK_MODULES",
    "retry_base": "PLATFORM_RETRY_BASE",
    "retry_jitter_max": "PLATFORM_RETRY_JITTER_MAX",
    "retry_max_delay": "PLATFORM_RETRY_MAX_DELAY",
    "max_retries": "PLATFORM_MAX_RETRIES",
    "max_unknown_retries": "PLATFORM_MAX_UNKNOWN_RETRIES",
    "delivery_limit": "PLATFORM_DELIVERY_LIMIT",
    "publish_timeout": "PLATFORM_PUBLISH_TIMEOUT",
    "traceback_limit": "PLATFORM_TRACEBACK_LIMIT",
    "extra_transient": "PLATFORM_EXTRA_TRANSIENT",
    "extra_permanent": "PLATFORM_EXTRA_PERMANENT",
    "state_url": "PLATFORM_STATE_URL",
    "idempotency": "PLATFORM_IDEMPOTENCY",
    "task_sent_events": "PLATFORM_TASK_SENT_EVENTS",
    "result_backend": "CELERY_RESULT_BACKEND",
    "concurrency": "PLATFORM_CONCURRENCY",
    "run_dir": "PLATFORM_RUN_DIR",
    "management_url": "PLATFORM_MANAGEMENT_URL",
    "flower_address": "FLOWER_ADDRESS",
    "flower_port": "FLOWER_PORT",
    "flower_basic_auth": "FLOWER_BASIC_AUTH",
    "flower_url": "PLATFORM_FLOWER_URL",
    "alert_webhook_url": "PLATFORM_ALERT_WEBHOOK_URL",
    "alert_interval": "PLATFORM_ALERT_INTERVAL",
    "alert_repeat_after": "PLATFORM_ALERT_REPEAT_AFTER",
    "alert_dlq_inflow_per_hour": "PLATFORM_ALERT_DLQ_INFLOW_PER_HOUR",
    "alert_queue_depth": "PLATFORM_ALERT_QUEUE_DEPTH",
    "alert_no_consumer_after": "PLATFORM_ALERT_NO_CONSUMER_AFTER",
    "metrics_port": "PLATFORM_METRICS_PORT",
    "replay_max_refail_ratio": "PLATFORM_REPLAY_MAX_REFAIL_RATIO",
    "events_exchange": "PLATFORM_EVENTS_EXCHANGE",
    "events_source": "PLATFORM_EVENTS_SOURCE",
    "subscriptions_file": "PLATFORM_SUBSCRIPTIONS_FILE",
    "max_message_bytes": "PLATFORM_MAX_MESSAGE_BYTES",
    "claim_check": "PLATFORM_CLAIM_CHECK",
    "blob_dir": "PLATFORM_BLOB_DIR",
    "event_log_retention": "PLATFORM_EVENT_LOG_RETENTION",
    "subscriber_max_length": "PLATFORM_SUBSCRIBER_MAX_LENGTH",
    "subscriber_max_age": "PLATFORM_SUBSCRIBER_MAX_AGE",
    "subscriber_overflow": "PLATFORM_SUBSCRIBER_OVERFLOW",
    "compose_file": "PLATFORM_COMPOSE_FILE",
    "compose_project": "PLATFORM_COMPOSE_PROJECT",
    "scale_min": "PLATFORM_SCALE_MIN",
    "scale_max": "PLATFORM_SCALE_MAX",
    "scale_up_above": "PLATFORM_SCALE_UP_ABOVE",
    "scale_down_below": "PLATFORM_SCALE_DOWN_BELOW",
    "scale_step_up": "PLATFORM_SCALE_STEP_UP",
    "scale_step_down": "PLATFORM_SCALE_STEP_DOWN",
    "scale_cooldown": "PLATFORM_SCALE_COOLDOWN",
    "scale_window": "PLATFORM_SCALE_WINDOW",
    "scale_target_latency": "PLATFORM_SCALE_TARGET_LATENCY",
    "scale_queues": "PLATFORM_SCALE_QUEUES",
    "scale_interval": "PLATFORM_SCALE_INTERVAL",
    "saga_relay_interval": "PLATFORM_SAGA_RELAY_INTERVAL",
    "saga_relay_after_commit": "PLATFORM_SAGA_RELAY_AFTER_COMMIT",
    "saga_step_deadline": "PLATFORM_SAGA_STEP_DEADLINE",
    "saga_stuck_after": "PLATFORM_SAGA_STUCK_AFTER",
    "broker_heartbeat": "PLATFORM_BROKER_HEARTBEAT",
    "cluster": "PLATFORM_CLUSTER",
    "cluster_dir": "PLATFORM_CLUSTER_DIR",
    "cluster_port": "PLATFORM_CLUSTER_PORT",
    "worker_layout": "PLATFORM_WORKER_LAYOUT",
    "worker_prefetch": "PLATFORM_WORKER_PREFETCH",
    "broker_tls_ca": "PLATFORM_BROKER_TLS_CA",
    "broker_tls_cert": "PLATFORM_BROKER_TLS_CERT",
    "broker_tls_key": "PLATFORM_BROKER_TLS_KEY",
    "broker_tls_verify": "PLATFORM_BROKER_TLS_VERIFY",
}

#: The file in ``cluster_dir`` where ``make cluster-up`` writes the cluster's URLs (KEY=value lines).
CLUSTER_ENV_FILE = "platform.env"

#: Keys of one queue's entry in ``PLATFORM_SCALE_QUEUES`` and the setting each overrides.
SCALE_KEYS: Mapping[str, str] = {
    "min": "scale_min",
    "max": "scale_max",
    "up_above": "scale_up_above",
    "down_below": "scale_down_below",
    "step_up": "scale_step_up",
    "step_down": "scale_step_down",
    "cooldown": "scale_cooldown",
    "window": "scale_window",
    "target_latency": "scale_target_latency",
}


def _number(parse: Callable[[str], T], minimum: float, maximum: float = math.inf) -> Callable[[str, str], T]:
    def convert(name: str, raw: str) -> T:
        try:
            value = parse(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise SettingsError(f"{name} must be a finite number, got {raw!r}")
        if value < minimum:  # type: ignore[operator]
            raise SettingsError(f"{name} must be at least {minimum}, got {raw!r}")
        if value > maximum:  # type: ignore[operator]
            raise SettingsError(f"{name} must be at most {maximum}, got {raw!r}")
        return value

    return convert


def _names(name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _exception_classes(name: str, raw: str) -> tuple[str, ...]:
    """Dotted paths of exception classes, each checked to import (a typo would never match)."""
    paths = _names(name, raw)
    for path in paths:
        module_name, _, attribute = path.rpartition(".")
        try:
            candidate = getattr(importlib.import_module(module_name or "builtins"), attribute)
        except (ImportError, AttributeError, ValueError):
            raise SettingsError(f"{name}: {path!r} is not an importable exception class") from None
        if not (isinstance(candidate, type) and issubclass(candidate, BaseException)):
            raise SettingsError(f"{name}: {path!r} is not an exception class")
    return paths


def _module_names(name: str, raw: str) -> tuple[str, ...]:
    """Dotted module names, each checked to exist, without importing (running) any of them."""
    modules = _names(name, raw)
    for module in modules:
        if not _module_exists(module):
            raise SettingsError(f"{name}: no module named {module!r} (a typo? each must be importable)")
    return modules


def _module_exists(module: str) -> bool:
    """Whether ``module`` can be imported: asks the import system's finders, part by part."""
    if module in sys.modules:
        return True
    parts = module.split(".")
    path: Sequence[str] | None = None
    for depth in range(1, len(parts) + 1):
        if not parts[depth - 1].isidentifier():
            return False
        spec = _find_spec(".".join(parts[:depth]), path)
        if spec is None:
            return False
        path = spec.submodule_search_locations
        if path is None and depth < len(parts):
            return False  # a plain module has no submodules
    return True


def _find_spec(fullname: str, path: Sequence[str] | None) -> ModuleSpec | None:
    # What importlib.util.find_spec does, minus importing the parent package
    # (which would run its code): every meta path finder, in order.
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(fullname, path, None)
        except (ImportError, ValueError):
            return None
        if spec is not None:
            return spec
    return None


def _result_backend(name: str, raw: str) -> str:
    """A Celery result backend URL whose backend class Celery can load (empty: none).

    The message names the backend, never the URL (it may hold a password).
    """
    value = raw.strip()
    if not value:
        return ""
    from types import SimpleNamespace

    from celery.app.backends import BACKEND_ALIASES, by_url
    from celery.exceptions import ImproperlyConfigured

    backend = value.partition("://")[0].partition("+")[0] if "://" in value else value
    try:
        by_url(value, loader=SimpleNamespace(override_backends={}))
    except ImportError as exc:
        if backend in BACKEND_ALIASES:
            raise SettingsError(
                f"{name}: the {backend!r} result backend needs the Python package {exc.name!r}, "
                "which is not installed"
            ) from None
        raise SettingsError(
            f"{name}: {backend!r} is not a result backend Celery knows "
            "(e.g. redis://, rpc://, db+postgresql://, or module:Class)"
        ) from None
    except ImproperlyConfigured:
        raise SettingsError(f"{name}: {backend!r} is not a result backend Celery knows") from None
    return value


def _queue_names(name: str, raw: str) -> tuple[str, ...]:
    names = _names(name, raw)
    if not names:
        raise SettingsError(f"{name} must name at least one queue")
    for queue in names:
        _check_queue(name, queue)
    if len(set(names)) != len(names):
        raise SettingsError(f"{name} names a queue twice: {raw!r}")
    return names


def _check_queue(name: str, queue: str) -> str:
    if not QUEUE_NAME.match(queue):
        raise SettingsError(
            f"{name}: {queue!r} is not a valid queue name "
            "(lower-case letters, digits, '-' and '_', starting with a letter)"
        )
    return queue


def _flag(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _url(*schemes: str) -> Callable[[str, str], str]:
    def convert(name: str, raw: str) -> str:
        if not raw.startswith(tuple(f"{scheme}://" for scheme in schemes)):
            wanted = " or ".join(f"{scheme}://" for scheme in schemes)
            raise SettingsError(f"{name} must start with {wanted}, got {raw!r}")
        return raw

    return convert


def _url_list(*schemes: str) -> Callable[[str, str], str]:
    """One URL, or several joined by ``;`` (failover: every node of a cluster), each with a known scheme."""
    single = _url(*schemes)

    def convert(name: str, raw: str) -> str:
        parts = raw.split(";")
        if len(parts) == 1:
            return single(name, raw)
        for number, part in enumerate(parts, 1):
            if not part.strip().startswith(tuple(f"{scheme}://" for scheme in schemes)):
                wanted = " or ".join(f"{scheme}://" for scheme in schemes)
                raise SettingsError(
                    f"{name}: URL {number} of {len(parts)} (split at ';') must start with {wanted}"
                )
        return ";".join(part.strip() for part in parts)

    return convert


def _optional_url(*schemes: str) -> Callable[[str, str], str]:
    required = _url(*schemes)

    def convert(name: str, raw: str) -> str:
        return required(name, raw) if raw.strip() else ""

    return convert


def _text(name: str, raw: str) -> str:
    return raw.strip()


def _readable_file(name: str, raw: str) -> str:
    """A path to a file this process can read (a certificate, a key)."""
    path = raw.strip()
    if not os.path.isfile(path):
        raise SettingsError(f"{name}: no such file {path!r}")
    if not os.access(path, os.R_OK):
        raise SettingsError(f"{name}: {path!r} is not readable by this user")
    return path


def _basic_auth(name: str, raw: str) -> str:
    for pair in _names(name, raw):
        user, _, password = pair.partition(":")
        if not user or not password:
            raise SettingsError(f"{name} must be user:password[,user:password...]")
    return raw.strip()


#: Names an exchange may have (RabbitMQ allows more; these need no quoting).
EXCHANGE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,127}$")


def _exchange_name(name: str, raw: str) -> str:
    value = raw.strip()
    if not EXCHANGE_NAME.match(value) or value.startswith("amq."):
        raise SettingsError(f"{name}: {raw!r} is not a usable exchange name")
    return value


def _choice(*choices: str) -> Callable[[str, str], str]:
    def convert(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return convert


#: A queue ``PLATFORM_SCALE_QUEUES`` may name: a work queue, or a subscriber queue ``<service>.events``.
SCALED_QUEUE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}(\.events)?$")


def _scale_queues(name: str, raw: str) -> tuple[tuple[str, tuple[tuple[str, float], ...]], ...]:
    """``queue:key=value[,key=value][;queue:...]``; each value is checked as its own variable is."""
    entries: dict[str, tuple[tuple[str, float], ...]] = {}
    for entry in (part.strip() for part in raw.split(";")):
        if not entry:
            continue
        queue, colon, pairs = (part.strip() for part in entry.partition(":"))
        if not colon or not SCALED_QUEUE_NAME.match(queue):
            raise SettingsError(
                f"{name}: {entry!r} is not queue:key=value[,key=value] (e.g. orders:min=1,max=20)"
            )
        if queue in entries:
            raise SettingsError(f"{name} names queue {queue!r} twice")
        values: dict[str, float] = {}
        for pair in (part.strip() for part in pairs.split(",")):
            if not pair:
                continue
            key, equals, value = (part.strip() for part in pair.partition("="))
            if not equals or key not in SCALE_KEYS:
                raise SettingsError(
                    f"{name}: {queue}: {pair!r} is not key=value with a key of {', '.join(SCALE_KEYS)}"
                )
            field = SCALE_KEYS[key]
            if field in values:
                raise SettingsError(f"{name}: {queue} sets {key} twice")
            values[field] = float(_CONVERTERS[field](f"{name} {queue}:{key}", value))  # type: ignore[arg-type]
        if not values:
            raise SettingsError(f"{name}: {queue} sets nothing (e.g. {queue}:min=1,max=20)")
        entries[queue] = tuple(values.items())
    return tuple(entries.items())


def scale_values(settings: Settings, queue: str | None = None) -> dict[str, float]:
    """The scale settings (by field name) for ``queue``: its ``PLATFORM_SCALE_QUEUES`` entry over the globals."""
    values: dict[str, float] = {field: getattr(settings, field) for field in SCALE_KEYS.values()}
    if queue is not None:
        values.update(dict(settings.scale_queues).get(queue, ()))
    return values


def _check_scaling(settings: Settings) -> None:
    """Cross-field checks of the scale settings: globally, then for each queue of ``PLATFORM_SCALE_QUEUES``.

    A message names the variable to change: ``PLATFORM_SCALE_MIN``, or
    ``PLATFORM_SCALE_QUEUES orders:min`` when the queue's entry set the value.
    """
    _check_scale_bounds(scale_values(settings), ENVIRONMENT_NAMES)
    known = (*settings.queues, settings.default_queue)
    keys = {field: key for key, field in SCALE_KEYS.items()}
    for queue, overrides in settings.scale_queues:
        if "." not in queue and queue not in known:
            raise SettingsError(
                f"PLATFORM_SCALE_QUEUES: {queue!r} is not a queue of PLATFORM_QUEUES or PLATFORM_DEFAULT_QUEUE"
            )
        labels = {
            **ENVIRONMENT_NAMES,
            **{f: f"PLATFORM_SCALE_QUEUES {queue}:{keys[f]}" for f, _ in overrides},
        }
        _check_scale_bounds(scale_values(settings, queue), labels)


def _check_scale_bounds(values: Mapping[str, float], labels: Mapping[str, str]) -> None:
    def named(field: str) -> str:
        return f"{labels[field]} ({values[field]:g})"

    if values["scale_min"] > values["scale_max"]:
        raise SettingsError(f"{named('scale_min')} must not be above {named('scale_max')}")
    if values["scale_down_below"] >= values["scale_up_above"]:
        raise SettingsError(f"{named('scale_down_below')} must be below {named('scale_up_above')}")


_CONVERTERS: Mapping[str, Callable[[str, str], object]] = {
    "broker_url": _url_list("amqp", "amqps", "pyamqp"),
    "queues": _queue_names,
    "default_queue": _check_queue,
    "task_modules": _module_names,
    "retry_base": _number(float, 0.0),
    "retry_jitter_max": _number(float, 0.0),
    "retry_max_delay": _number(float, 0.001),
    "max_retries": _number(int, 0),
    "max_unknown_retries": _number(int, 0),
    "delivery_limit": _number(int, 1),
    "publish_timeout": _number(float, 0.1),
    "traceback_limit": _number(int, 100),
    "extra_transient": _exception_classes,
    "extra_permanent": _exception_classes,
    "state_url": _url("sqlite", "postgresql", "postgres"),
    "idempotency": _flag,
    "task_sent_events": _flag,
    "result_backend": _result_backend,
    "concurrency": _number(int, 1),
    "run_dir": _text,
    "management_url": _url_list("http", "https"),
    "flower_address": _text,
    "flower_port": _number(int, 1, 65535),
    "flower_basic_auth": _basic_auth,
    "flower_url": _url("http", "https"),
    "alert_webhook_url": _optional_url("http", "https"),
    "alert_interval": _number(float, 1.0),
    "alert_repeat_after": _number(float, 0.0),
    "alert_dlq_inflow_per_hour": _number(int, 1),
    "alert_queue_depth": _number(int, 1),
    "alert_no_consumer_after": _number(float, 0.0),
    "metrics_port": _number(int, 1, 65535),
    "replay_max_refail_ratio": _number(float, 0.0, 1.0),
    "events_exchange": _exchange_name,
    "events_source": _text,
    "subscriptions_file": _text,
    "max_message_bytes": _number(int, 1024),
    "claim_check": _flag,
    "blob_dir": _text,
    "event_log_retention": _number(float, 0.0),
    "subscriber_max_length": _number(int, 0),
    "subscriber_max_age": _number(float, 0.0),
    "subscriber_overflow": _choice("reject-publish", "dead-letter"),
    "compose_file": _text,
    "compose_project": _text,
    "scale_min": _number(int, 0),
    "scale_max": _number(int, 1),
    "scale_up_above": _number(int, 1),
    "scale_down_below": _number(int, 0),
    "scale_step_up": _number(int, 1),
    "scale_step_down": _number(int, 1),
    "scale_cooldown": _number(float, 0.0),
    "scale_window": _number(float, 0.0),
    "scale_target_latency": _number(float, 0.0),
    "scale_queues": _scale_queues,
    "scale_interval": _number(float, 0.1),
    "saga_relay_interval": _number(float, 0.0),
    "saga_relay_after_commit": _flag,
    "saga_step_deadline": _number(float, 0.1),
    "saga_stuck_after": _number(float, 1.0),
    "broker_heartbeat": _number(float, 0.0),
    "cluster": _flag,
    "cluster_dir": _text,
    "cluster_port": _number(int, 1024, 35535),
    "worker_layout": _choice("solo", "prefork", "threads"),
    "worker_prefetch": _number(int, 0, 1000),
    "broker_tls_ca": _readable_file,
    "broker_tls_cert": _readable_file,
    "broker_tls_key": _readable_file,
    "broker_tls_verify": _flag,
}


def _cluster_urls(folder: str) -> dict[str, str]:
    """The broker and management URL lists that ``make cluster-up`` wrote for the platform.

    Raises:
        SettingsError: no cluster was set up in ``folder``.
    """
    path = os.path.join(folder, CLUSTER_ENV_FILE)
    try:
        with open(path, encoding="utf-8") as lines:
            written = dict(line.strip().partition("=")[::2] for line in lines if "=" in line)
    except OSError:
        raise SettingsError(
            f"PLATFORM_CLUSTER is on but no cluster was set up in {folder!r} (run: make cluster-up)"
        ) from None
    names = {"CELERY_BROKER_URL": "broker_url", "PLATFORM_MANAGEMENT_URL": "management_url"}
    return {field: written[variable] for variable, field in names.items() if written.get(variable)}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (the process environment by default).

    Raises:
        SettingsError: a variable is set to a value the platform can't use; the
            message names the variable.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field in fields(Settings):
        variable = ENVIRONMENT_NAMES[field.name]
        raw = environ.get(variable)
        if raw is None or (raw.strip() == "" and field.name != "result_backend"):
            continue
        values[field.name] = _CONVERTERS[field.name](variable, raw)
    if values.get("run_dir"):
        # The state database and the blob store live in the run folder unless set apart.
        run_dir = str(values["run_dir"]).rstrip("/") or "/"
        values.setdefault("state_url", f"sqlite:///{os.path.join(run_dir, 'state.sqlite3')}")
        values.setdefault("blob_dir", os.path.join(run_dir, "blobs"))
        values.setdefault("cluster_dir", os.path.join(run_dir, "cluster"))
    if values.get("cluster"):
        values.update(_cluster_urls(str(values.get("cluster_dir") or Settings.cluster_dir)))
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.default_queue in settings.queues:
        raise SettingsError("PLATFORM_DEFAULT_QUEUE must differ from the queues in PLATFORM_QUEUES")
    _check_scaling(settings)
    _check_tls(settings)
    return settings


def uses_tls(broker_url: str) -> bool:
    """Whether ``broker_url`` (one URL or a ``;`` failover list) connects over TLS (``amqps://``)."""
    return broker_url.split(";")[0].strip().lower().startswith("amqps://")


def _check_tls(settings: Settings) -> None:
    """The TLS files fit the broker URL and each other; each is loaded once, so a bad one stops here.

    The messages name the variable and the file, never a URL (it holds a password).
    """
    import ssl

    schemes = {url.strip().partition("://")[0].lower() for url in settings.broker_url.split(";")}
    if "amqps" in schemes and len(schemes) > 1:
        raise SettingsError("CELERY_BROKER_URL mixes amqps:// and amqp:// URLs: use amqps:// for every node")
    files = {
        "PLATFORM_BROKER_TLS_CA": settings.broker_tls_ca,
        "PLATFORM_BROKER_TLS_CERT": settings.broker_tls_cert,
        "PLATFORM_BROKER_TLS_KEY": settings.broker_tls_key,
    }
    given = [variable for variable, path in files.items() if path]
    if given and not uses_tls(settings.broker_url):
        raise SettingsError(
            f"{given[0]} is set but CELERY_BROKER_URL is not amqps://: use amqps:// (TLS) or unset it"
        )
    if settings.broker_tls_key and not settings.broker_tls_cert:
        raise SettingsError("PLATFORM_BROKER_TLS_KEY is set without PLATFORM_BROKER_TLS_CERT")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if settings.broker_tls_ca:
        try:
            context.load_verify_locations(cafile=settings.broker_tls_ca)
        except (ssl.SSLError, ValueError):
            raise SettingsError(
                f"PLATFORM_BROKER_TLS_CA: {settings.broker_tls_ca!r} holds no PEM certificate"
            ) from None
    if settings.broker_tls_cert:

        def no_passphrase() -> str:
            raise SettingsError(
                f"PLATFORM_BROKER_TLS_KEY: the key of {settings.broker_tls_cert!r} is encrypted; "
                "give an unencrypted key (readable only by the platform's user)"
            )

        try:
            context.load_cert_chain(
                settings.broker_tls_cert, settings.broker_tls_key or None, password=no_passphrase
            )
        except SettingsError:
            raise
        except (ssl.SSLError, ValueError):
            source = settings.broker_tls_key or settings.broker_tls_cert
            raise SettingsError(
                f"PLATFORM_BROKER_TLS_CERT / _KEY: {settings.broker_tls_cert!r} and {source!r} "
                "are not a PEM certificate and its matching private key"
            ) from None
