"""Sort a task's exception into transient, permanent or unknown.

Pure logic, no I/O. The mapping is data: tuples of exception classes (ours and
foreign ones named by dotted path, so that httpx, requests or pydantic are
recognised without being dependencies), HTTP status sets, and optional extras
from the settings or the task. Order of precedence::

    task's own decider > task's extra types > settings' extra types
      > TransientError / PermanentError > HTTP status > known foreign types > unknown

Celery's time limits (``SoftTimeLimitExceeded``, ``TimeLimitExceeded``) are
deliberately not among the known types: a task that took too long will usually
take too long again, so they are ``unknown`` (``PLATFORM_MAX_UNKNOWN_RETRIES``
retries, 2 by default) unless a task (``transient_errors`` / ``permanent_errors``
/ ``classify_error``) or the settings (``PLATFORM_EXTRA_TRANSIENT`` /
``PLATFORM_EXTRA_PERMANENT``) say otherwise.
"""

from __future__ import annotations

import email.utils
import importlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from workers.errors import PermanentError, TransientError


class ErrorClass(StrEnum):
    """What kind of failure, as written in ``x-error-class``."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"
    POISON = "poison"
    UNDECODABLE = "undecodable"
    DISALLOWED = "disallowed"
    UNKNOWN_TASK = "unknown-task"
    #: Its ``expires`` time passed before it could run.
    EXPIRED = "expired"
    #: Dead-lettered by RabbitMQ itself: the queue was full (``x-death`` reason ``maxlen``).
    OVERFLOW = "overflow"
    #: Dead-lettered by RabbitMQ itself: a consumer rejected it without requeue.
    REJECTED = "rejected"
    #: An operator cancelled it while it waited in the delay levels (``delays cancel``).
    CANCELLED = "cancelled"


#: HTTP statuses worth retrying: the remote side is overloaded or timing out.
TRANSIENT_STATUSES = frozenset({408, 429, 502, 503, 504})
#: HTTP statuses that will not change on retry: the request itself is wrong.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 410, 422})

#: Foreign exceptions that mean "try again later" (resolved only if imported).
TRANSIENT_TYPES: tuple[str, ...] = (
    "builtins.TimeoutError",  # also socket.timeout
    "builtins.ConnectionError",  # refused, reset, aborted, broken pipe
    "httpx.TimeoutException",
    "httpx.NetworkError",
    "requests.exceptions.Timeout",
    "requests.exceptions.ConnectionError",
    "psycopg.OperationalError",
    "kombu.exceptions.OperationalError",
)
#: Foreign exceptions that mean "this input will never work".
PERMANENT_TYPES: tuple[str, ...] = (
    "json.JSONDecodeError",
    "pydantic.ValidationError",
    "pydantic_core.ValidationError",
    "jsonschema.exceptions.ValidationError",
    "UnicodeDecodeError",
)

#: A task-supplied decider: returns a class, or None to fall through.
Decider = Callable[[BaseException], "ErrorClass | str | None"]


@dataclass(frozen=True)
class Classification:
    """The verdict on one exception."""

    error_class: ErrorClass
    #: Seconds the remote side asked us to wait (Retry-After), if it did.
    retry_after: float | None = None


@dataclass(frozen=True)
class ClassifierRules:
    """Extra rules on top of the built-in ones, in layers (task over settings)."""

    transient: tuple[str | type[BaseException], ...] = ()
    permanent: tuple[str | type[BaseException], ...] = ()
    decider: Decider | None = field(default=None, compare=False)
    #: The layer these rules override (the settings' rules under a task's).
    fallback: ClassifierRules | None = None

    def merged_with(self, other: ClassifierRules) -> ClassifierRules:
        """``other``'s rules, falling back to these where ``other`` says nothing."""
        return ClassifierRules(
            transient=other.transient,
            permanent=other.permanent,
            decider=other.decider or self.decider,
            fallback=self,
        )

    def layers(self) -> Iterator[ClassifierRules]:
        """These rules, then each fallback layer in turn."""
        layer: ClassifierRules | None = self
        while layer is not None:
            yield layer
            layer = layer.fallback


def resolve_types(names: Iterable[str | type[BaseException]]) -> tuple[type[BaseException], ...]:
    """Exception classes for dotted names whose module is already imported.

    A module that isn't imported can't have raised anything, so it is never
    imported here (classification stays cheap and free of side effects).
    Classes given as objects pass through.
    """
    resolved: list[type[BaseException]] = []
    for name in names:
        if isinstance(name, type):
            resolved.append(name)
            continue
        module_name, _, attribute = name.rpartition(".")
        module = sys.modules.get(module_name or "builtins")
        if module is None:
            continue
        candidate = getattr(module, attribute, None)
        if isinstance(candidate, type) and issubclass(candidate, BaseException):
            resolved.append(candidate)
    return tuple(resolved)


def import_types(names: Iterable[str]) -> tuple[type[BaseException], ...]:
    """Import exception classes by dotted path, for rules given in settings.

    Raises:
        ValueError: a name is not importable or not an exception class.
    """
    found: list[type[BaseException]] = []
    for name in names:
        module_name, _, attribute = name.rpartition(".")
        try:
            candidate = getattr(importlib.import_module(module_name or "builtins"), attribute)
        except (ImportError, AttributeError, ValueError, TypeError):
            raise ValueError(f"{name!r} is not an importable exception class") from None
        if not (isinstance(candidate, type) and issubclass(candidate, BaseException)):
            raise ValueError(f"{name!r} is not an exception class")
        found.append(candidate)
    return tuple(found)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (httpx, requests, or ``.status_code``)."""
    response = getattr(exc, "response", None)
    for holder in (response, exc):
        status = getattr(holder, "status_code", None)
        if status is None:
            status = getattr(holder, "status", None)
        if isinstance(status, int):
            return status
    return None


def retry_after_seconds(exc: BaseException, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta or HTTP date), if any."""
    explicit = getattr(exc, "retry_after", None)
    if isinstance(explicit, int | float):
        return max(float(explicit), 0.0)
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
    except AttributeError:
        return None
    if not value:
        return None
    value = str(value).strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


def classify(exc: BaseException, rules: ClassifierRules | None = None) -> Classification:
    """Classify ``exc`` for the retry decision.

    Args:
        exc: what the task raised.
        rules: extra types and an optional decider (settings merged with task).

    Returns:
        The error class and any Retry-After the exception carried.
    """
    rules = rules or ClassifierRules()
    verdict = _decide(exc, rules)
    retry_after = retry_after_seconds(exc) if verdict is ErrorClass.TRANSIENT else None
    return Classification(verdict, retry_after)


def _decide(exc: BaseException, rules: ClassifierRules) -> ErrorClass:
    if rules.decider is not None:
        decided = rules.decider(exc)
        if decided is not None:
            return ErrorClass(decided)
    for layer in rules.layers():
        if isinstance(exc, resolve_types(layer.permanent)):
            return ErrorClass.PERMANENT
        if isinstance(exc, resolve_types(layer.transient)):
            return ErrorClass.TRANSIENT
    if isinstance(exc, TransientError):
        return ErrorClass.TRANSIENT
    if isinstance(exc, PermanentError):
        return ErrorClass.PERMANENT
    status = http_status(exc)
    if status in TRANSIENT_STATUSES:
        return ErrorClass.TRANSIENT
    if status in PERMANENT_STATUSES:
        return ErrorClass.PERMANENT
    if isinstance(exc, (json.JSONDecodeError, *resolve_types(PERMANENT_TYPES))):
        return ErrorClass.PERMANENT
    if isinstance(exc, resolve_types(TRANSIENT_TYPES)):
        return ErrorClass.TRANSIENT
    return ErrorClass.UNKNOWN
