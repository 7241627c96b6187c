"""The retry schedule: exponential backoff with jitter (pure, no I/O).

    delay(n) = min(base * 2**n + uniform(0, jitter_max), max_delay)

``n`` counts from 0 for the first retry, so with the defaults (base 1 s, jitter
up to 0.5 s, cap 60 s) the waits are about 1, 2, 4, 8 and 16 s.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from workers.delivery.classify import ErrorClass


@dataclass(frozen=True)
class RetryPolicy:
    """How a task backs off. Precedence: call > task > settings."""

    #: Seconds before the first retry.
    base: float = 1.0
    #: Upper bound of the uniform jitter, in seconds.
    jitter_max: float = 0.5
    #: Longest wait, in seconds.
    max_delay: float = 60.0
    #: Retries of a transient failure.
    max_retries: int = 5
    #: Retries of an unknown failure.
    max_unknown_retries: int = 2

    def __post_init__(self) -> None:
        if self.base < 0 or self.jitter_max < 0 or self.max_delay <= 0:
            raise ValueError(
                "retry base and jitter_max must be >= 0 and max_delay > 0, got "
                f"base={self.base} jitter_max={self.jitter_max} max_delay={self.max_delay}"
            )
        if self.max_retries < 0 or self.max_unknown_retries < 0:
            raise ValueError("max_retries and max_unknown_retries must be >= 0")

    def retries_allowed(self, error_class: ErrorClass) -> int:
        """How many retries a failure of this class gets."""
        if error_class is ErrorClass.TRANSIENT:
            return self.max_retries
        if error_class is ErrorClass.UNKNOWN:
            return self.max_unknown_retries
        return 0


def backoff_delay(
    attempt: int,
    policy: RetryPolicy,
    retry_after: float | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait before retry number ``attempt + 1``.

    Args:
        attempt: retries already made (0 for the first retry).
        policy: the schedule.
        retry_after: a wait the remote side asked for; the larger wins.
        uniform: the jitter source (a parameter so tests can pin it).

    Returns:
        The delay, never above ``policy.max_delay``.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    # 2**attempt overflows float only for absurd attempts; cap the exponent.
    exponential = policy.base * 2 ** min(attempt, 64)
    delay = exponential + uniform(0.0, policy.jitter_max)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, policy.max_delay)
