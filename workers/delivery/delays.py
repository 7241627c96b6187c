"""Delayed tasks: how long, to which level path, refused when it can't be honoured (pure, no I/O).

A delay is held by the broker's delay levels (config.topology): it is cut into
units of ``DELAY_RESOLUTION_MS``, rounded up (a task never runs early), and
written in binary into the routing key, highest level first, then the target
queue. Level L's exchange sends the message into its queue (a fixed wait of
``2**L`` units) when bit L is 1, and straight on when it is 0.

What is refused at publish, with :class:`DelayError` (a ``ValueError``):
a countdown that is not a finite number >= 0, an eta without a timezone, and
any delay longer than :data:`MAX_DELAY_SECONDS` (about 31 days).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from config.topology import DELAY_LEVELS, DELAY_RESOLUTION_MS, delay_level

#: The longest delay the levels hold, in seconds (every bit set).
MAX_DELAY_SECONDS = (2**DELAY_LEVELS - 1) * DELAY_RESOLUTION_MS / 1000
#: Delays shorter than one unit are not delayed at all (the task is due now).
RESOLUTION_SECONDS = DELAY_RESOLUTION_MS / 1000


class DelayError(ValueError):
    """A countdown or eta the platform can't hold in the broker; the message says why."""


def delay_units(seconds: float) -> int:
    """``seconds`` in units of the resolution, rounded up (0 for no delay)."""
    if seconds <= 0:
        return 0
    return math.ceil(round(seconds * 1000 / DELAY_RESOLUTION_MS, 6))


def delay_routing_key(units: int, queue: str) -> str:
    """The routing key that carries a delay of ``units`` to ``queue`` through the levels.

    Raises:
        DelayError: ``units`` needs more levels than there are.
    """
    if not 0 <= units < 2**DELAY_LEVELS:
        raise DelayError(f"a delay of {units} units does not fit in {DELAY_LEVELS} levels")
    bits = format(units, f"0{DELAY_LEVELS}b")
    return ".".join(bits) + "." + queue


def delay_entry(units: int) -> str:
    """The level exchange a delay of ``units`` enters at: its highest set bit's.

    Every level above it would only pass the message on (its bit is 0), and
    each such hop costs the broker a topic match: entering at level 27 made a
    short delay six to twenty times dearer to publish (the bench's delays case).
    """
    if units <= 0:
        raise DelayError("a delay of no units has no entry level")
    return delay_level(units.bit_length() - 1)


def delay_route(units: int, queue: str) -> tuple[str, str]:
    """(exchange, routing key) that carry a delay of ``units`` to ``queue``."""
    return delay_entry(units), delay_routing_key(units, queue)


def levels_waited(units: int) -> list[int]:
    """The levels a delay of ``units`` waits in, highest first (its set bits)."""
    return [level for level in range(DELAY_LEVELS - 1, -1, -1) if units >> level & 1]


def check_countdown(countdown: Any) -> float:
    """``countdown`` as seconds, or :class:`DelayError` saying why it can't be held."""
    if isinstance(countdown, bool) or not isinstance(countdown, int | float):
        raise DelayError(f"countdown must be a number of seconds, got {countdown!r}")
    if not math.isfinite(countdown) or countdown < 0:
        raise DelayError(f"countdown must be a finite number of seconds >= 0, got {countdown!r}")
    if countdown > MAX_DELAY_SECONDS:
        raise DelayError(
            f"countdown of {countdown:g}s is longer than the longest delay the broker holds "
            f"({MAX_DELAY_SECONDS:g}s, about {MAX_DELAY_SECONDS / 86400:.0f} days)"
        )
    return float(countdown)


def check_eta(eta: Any, now: datetime | None = None) -> datetime:
    """``eta`` as an aware datetime, or :class:`DelayError` saying why it can't be held.

    An eta in the past is allowed (the task is due now), as in Celery.
    """
    moment = eta
    if isinstance(eta, str):
        try:
            moment = datetime.fromisoformat(eta)
        except ValueError:
            raise DelayError(f"eta must be an ISO 8601 time, got {eta!r}") from None
    if not isinstance(moment, datetime):
        raise DelayError(f"eta must be a datetime, got {eta!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise DelayError(
            f"eta {moment.isoformat()} has no timezone; give an aware datetime "
            "(e.g. datetime.now(timezone.utc) + timedelta(...)) so the due time is unambiguous"
        )
    current = now or datetime.now(UTC)
    if moment - current > timedelta(seconds=MAX_DELAY_SECONDS):
        raise DelayError(
            f"eta {moment.isoformat()} is further ahead than the longest delay the broker holds "
            f"({MAX_DELAY_SECONDS:g}s, about {MAX_DELAY_SECONDS / 86400:.0f} days)"
        )
    return moment


def seconds_until(due: datetime, now: datetime | None = None) -> float:
    """Seconds from ``now`` to ``due`` (negative when it is past)."""
    return (due - (now or datetime.now(UTC))).total_seconds()
