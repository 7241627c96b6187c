"""Which services subscribe to which events: declarative, read from a file.

An operator adds a subscriber by editing this file (or pointing
``PLATFORM_SUBSCRIPTIONS_FILE`` at another one) and starting workers on the new
service's queue; no producer changes. TOML (or JSON with the same shape)::

    [services.email]
    events = { "order.created" = "tasks.events.email.send_order_confirmation" }

    [services.fraud]
    events = { "order.created" = "tasks.events.fraud.score_order" }
    max_length = 100000          # optional, overrides PLATFORM_SUBSCRIBER_MAX_LENGTH
    max_age = 86400              # optional seconds, overrides PLATFORM_SUBSCRIBER_MAX_AGE
    overflow = "dead-letter"     # optional: reject-publish | dead-letter

Each key of ``events`` is an AMQP topic pattern over event types (``*`` one
word, ``#`` any number of words); its value names the Celery task that handles
a matching event. Each service gets one queue, :func:`config.topology.subscriber_queue`.
The handler's module (the task name up to its last dot, or ``modules = [...]``)
is imported by the workers. Pure data and parsing; nothing here touches the broker.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.settings import SettingsError
from config.topology import subscriber_queue

#: Service names: they become queue names, so the same rule as work queues.
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,56}$")
#: One word of a topic pattern: a literal word, ``*`` or ``#``.
PATTERN_WORD = re.compile(r"^([a-z][a-z0-9_]*|\*|#)$")
#: What a full subscriber queue may do.
OVERFLOW_CHOICES = ("reject-publish", "dead-letter")


class SubscriptionError(SettingsError):
    """The subscriptions file says something the platform can't use."""


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether ``routing_key`` matches the AMQP topic ``pattern`` (as RabbitMQ decides)."""

    def match(words: list[str], keys: list[str]) -> bool:
        if not words:
            return not keys
        head, rest = words[0], words[1:]
        if head == "#":
            return any(match(rest, keys[i:]) for i in range(len(keys) + 1))
        if not keys:
            return False
        return (head == "*" or head == keys[0]) and match(rest, keys[1:])

    return match(pattern.split("."), routing_key.split("."))


@dataclass(frozen=True)
class Subscription:
    """One service's subscription: its queue, patterns and handlers, its limits."""

    service: str
    #: ``(pattern, handler task name)`` in file order; the first match wins.
    handlers: tuple[tuple[str, str], ...]
    #: Modules the worker imports for the handlers.
    modules: tuple[str, ...] = ()
    #: Ready messages allowed in the queue (None: the setting's default).
    max_length: int | None = None
    #: Seconds an event may wait in the queue (None: the setting's default).
    max_age: float | None = None
    #: ``reject-publish`` or ``dead-letter`` (None: the setting's default).
    overflow: str | None = None

    @property
    def queue(self) -> str:
        return subscriber_queue(self.service)

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(pattern for pattern, _ in self.handlers)

    def handler_for(self, event_type: str) -> str | None:
        """The handler task for an event of ``event_type``, or None if none matches."""
        for pattern, handler in self.handlers:
            if topic_matches(pattern, event_type):
                return handler
        return None


def parse_subscriptions(
    document: Mapping[str, Any], origin: str = "subscriptions"
) -> tuple[Subscription, ...]:
    """Subscriptions from a parsed document (``{"services": {name: {...}}}``).

    Raises:
        SubscriptionError: a service, pattern, handler or limit is malformed;
            the message names it and ``origin``.
    """
    services = document.get("services")
    if not isinstance(services, Mapping):
        raise SubscriptionError(f"{origin}: expected a [services.<name>] table")
    result = []
    for service, entry in services.items():
        where = f"{origin}: service {service!r}"
        if not isinstance(service, str) or not SERVICE_NAME.match(service):
            raise SubscriptionError(f"{where}: name must be lower-case letters, digits, '-' or '_'")
        if not isinstance(entry, Mapping):
            raise SubscriptionError(f"{where}: expected a table")
        unknown = set(entry) - {"events", "modules", "max_length", "max_age", "overflow"}
        if unknown:
            raise SubscriptionError(f"{where}: unknown keys {sorted(unknown)}")
        events = entry.get("events")
        if not isinstance(events, Mapping) or not events:
            raise SubscriptionError(f"{where}: 'events' must map at least one pattern to a handler")
        handlers = []
        for pattern, handler in events.items():
            if not all(PATTERN_WORD.match(word) for word in str(pattern).split(".")):
                raise SubscriptionError(f"{where}: {pattern!r} is not a topic pattern over event types")
            if not isinstance(handler, str) or "." not in handler:
                raise SubscriptionError(f"{where}: handler for {pattern!r} must be a dotted task name")
            handlers.append((str(pattern), handler))
        modules = entry.get("modules")
        if modules is None:
            modules = sorted({handler.rpartition(".")[0] for _, handler in handlers})
        elif not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
            raise SubscriptionError(f"{where}: 'modules' must be a list of module names")
        result.append(
            Subscription(
                service=service,
                handlers=tuple(handlers),
                modules=tuple(modules),
                max_length=_limit(where, "max_length", entry.get("max_length"), int),
                max_age=_limit(where, "max_age", entry.get("max_age"), float),
                overflow=_overflow(where, entry.get("overflow")),
            )
        )
    return tuple(result)


def _limit(where: str, key: str, value: Any, kind: type) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SubscriptionError(f"{where}: {key} must be a number >= 0, got {value!r}")
    return kind(value)


def _overflow(where: str, value: Any) -> str | None:
    if value is None:
        return None
    if value not in OVERFLOW_CHOICES:
        raise SubscriptionError(f"{where}: overflow must be one of {', '.join(OVERFLOW_CHOICES)}")
    return str(value)


def load_subscriptions(path: str) -> tuple[Subscription, ...]:
    """The subscriptions declared in the TOML or JSON file at ``path`` (none if empty).

    Raises:
        SubscriptionError: the file is missing, unreadable or malformed.
    """
    if not path:
        return ()
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise SubscriptionError(f"PLATFORM_SUBSCRIPTIONS_FILE: can't read {path}: {exc}") from None
    try:
        document = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise SubscriptionError(f"{path}: not valid {file.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    return parse_subscriptions(document, origin=path)
