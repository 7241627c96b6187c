"""What a task message must look like before a worker takes it (pure, no I/O).

Celery reads a protocol 2 message's headers and body in several places, and
some wrong values break it in ways that lose or wedge the message: an args /
kwargs / embed of the wrong type is reported as an internal error and acked as
if the task succeeded; a ``timelimit`` that is not numbers fails after a pool
slot was taken and never gives it back; a ``retries`` that is not an integer
makes the failure path raise with the message still unacknowledged. So every
header the platform or Celery reads is checked here, on receipt, in the
worker's main process, before any slot is taken: a message that fails is
dead-lettered as ``undecodable`` with the header named. (A valid ``eta`` in
the future, from a producer that does not use the platform's publisher, is
sent on to the broker's delay levels by the consumer, never held.)

The checks accept everything stock Celery's own ``apply_async`` sends.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workers.delivery.classify import ErrorClass
from workers.delivery.headers import DELIVERY_COUNT, RETRY_COUNT, UNDECODABLE_PROPERTIES

#: Longest ``argsrepr`` / ``kwargsrepr`` accepted (Celery itself cuts them at 1,024).
MAX_REPR = 65_536


@dataclass(frozen=True)
class Refusal:
    """Why a message can't be run; it goes to its queue's DLQ with these."""

    error_class: ErrorClass
    error_type: str
    message: str


def _undecodable(header: str, problem: str) -> Refusal:
    return Refusal(ErrorClass.UNDECODABLE, "InvalidHeader", f"header {header!r} {problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _optional(kind: type | tuple[type, ...]) -> Callable[[Any], bool]:
    return lambda value: value is None or (isinstance(value, kind) and not isinstance(value, bool))


def _seconds(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    )


def _time_limits(value: Any) -> bool:
    return value is None or (
        isinstance(value, list | tuple) and len(value) == 2 and all(map(_seconds, value))
    )


def _iso_time(value: Any) -> bool:
    if value is None or isinstance(value, datetime):
        return True
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _repr_text(value: Any) -> bool:
    return value is None or (isinstance(value, str) and len(value) <= MAX_REPR)


#: Header -> (test, what a good value is). Headers not named here are not read by Celery or us.
HEADER_RULES: Mapping[str, tuple[Callable[[Any], bool], str]] = {
    "id": (lambda value: isinstance(value, str) and value != "", "must be a non-empty string"),
    "task": (lambda value: isinstance(value, str) and value != "", "must be a non-empty string"),
    "retries": (lambda value: value is None or _count(value), "must be a whole number >= 0"),
    RETRY_COUNT: (lambda value: value is None or _count(value), "must be a whole number >= 0"),
    DELIVERY_COUNT: (lambda value: value is None or _count(value), "must be a whole number >= 0"),
    "timelimit": (_time_limits, "must be [soft, hard] seconds (numbers >= 0 or null)"),
    "expires": (_iso_time, "must be an ISO 8601 time"),
    "eta": (_iso_time, "must be an ISO 8601 time"),
    "argsrepr": (_repr_text, f"must be text of at most {MAX_REPR} characters"),
    "kwargsrepr": (_repr_text, f"must be text of at most {MAX_REPR} characters"),
    "root_id": (_optional(str), "must be a string"),
    "parent_id": (_optional(str), "must be a string"),
    "group": (_optional(str), "must be a string"),
    "group_index": (lambda value: value is None or _count(value), "must be a whole number >= 0"),
    "shadow": (_optional(str), "must be a string"),
    "origin": (_optional(str), "must be a string"),
    "lang": (_optional(str), "must be a string"),
    "ignore_result": (lambda value: value is None or isinstance(value, bool), "must be true or false"),
    "stamped_headers": (_optional((list, tuple)), "must be a list"),
    "stamps": (_optional(dict), "must be a table"),
    "replaced_task_nesting": (lambda value: value is None or _count(value), "must be a whole number >= 0"),
}


def check_headers(headers: Mapping[str, Any]) -> Refusal | None:
    """Why a protocol 2 task message's headers can't be run, or None if they can.

    Args:
        headers: the message's application headers (with a ``task`` header).
    """
    undecodable = headers.get(UNDECODABLE_PROPERTIES)
    if undecodable:
        names = ", ".join(sorted(undecodable)) if isinstance(undecodable, Mapping) else "?"
        return Refusal(
            ErrorClass.UNDECODABLE,
            "UndecodableProperty",
            f"message properties that are not UTF-8: {names} (raw bytes kept in {UNDECODABLE_PROPERTIES!r})",
        )
    for header, (good, expected) in HEADER_RULES.items():
        if header in headers and not good(headers[header]):
            return _undecodable(header, f"{expected}, got {_shown(headers[header])}")
    return None


def check_body(payload: Any) -> Refusal | None:
    """Why a decoded protocol 2 body can't be run, or None: ``[args, kwargs, embed]``.

    ``args`` is a list, ``kwargs`` a table, ``embed`` a table or null.
    """
    if not isinstance(payload, list | tuple) or len(payload) != 3:
        return Refusal(
            ErrorClass.UNDECODABLE,
            "InvalidBody",
            f"the body must be [args, kwargs, embed], got {_shown(payload)}",
        )
    args, kwargs, embed = payload
    for name, value, good, expected in (
        ("args", args, isinstance(args, list | tuple), "a list"),
        ("kwargs", kwargs, isinstance(kwargs, dict), "a table"),
        ("embed", embed, embed is None or isinstance(embed, dict), "a table or null"),
    ):
        if not good:
            return Refusal(
                ErrorClass.UNDECODABLE,
                "InvalidBody",
                f"the body's {name} must be {expected}, got {_shown(value)}",
            )
    return None


def _shown(value: Any, limit: int = 80) -> str:
    """``value`` as a short repr with its type, for a dead letter's message."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} ({type(value).__name__})"
