"""The scaling limits of one queue: the settings' defaults under its ``PLATFORM_SCALE_QUEUES`` entry (pure).

The settings are checked when they are loaded (min above max, a down
threshold not below the up threshold, a negative cooldown stop start-up), so
limits built here are always consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import Settings, scale_values


@dataclass(frozen=True)
class ScaleLimits:
    """What the policy may do to one queue's pool. The defaults are the design's."""

    #: Fewest workers; 0 lets an idle queue scale to zero.
    min_workers: int = 1
    #: Most workers.
    max_workers: int = 8
    #: Due backlog above which the pool grows by ``step_up``.
    up_above: int = 1000
    #: Due backlog below which (for the whole ``window``) the pool shrinks by ``step_down``.
    down_below: int = 100
    #: Workers added by one action.
    step_up: int = 2
    #: Workers removed by one action.
    step_down: int = 1
    #: Seconds between two actions on the queue.
    cooldown: float = 60.0
    #: Seconds of samples that must all say "down" before the pool shrinks.
    window: float = 300.0
    #: Seconds a due task should wait at most (sizes the pool from backlog x task time); None: off.
    target_latency: float | None = None


def limits_for(settings: Settings, queue: str) -> ScaleLimits:
    """The limits of ``queue``: its ``PLATFORM_SCALE_QUEUES`` entry over the ``PLATFORM_SCALE_*`` defaults."""
    values = scale_values(settings, queue)
    latency = values["scale_target_latency"]
    return ScaleLimits(
        min_workers=int(values["scale_min"]),
        max_workers=int(values["scale_max"]),
        up_above=int(values["scale_up_above"]),
        down_below=int(values["scale_down_below"]),
        step_up=int(values["scale_step_up"]),
        step_down=int(values["scale_step_down"]),
        cooldown=float(values["scale_cooldown"]),
        window=float(values["scale_window"]),
        target_latency=float(latency) if latency > 0 else None,
    )
