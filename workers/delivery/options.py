"""Checks of everyday Celery task options against what the platform can honour.

Called once per task class when it is declared
(:meth:`workers.delivery.task.PlatformTask.on_bound`), and, for what a single
publish can carry, on every publish (:mod:`workers.delivery.publishing`).

- ``priority``: refused. Work queues are quorum queues, which have no
  priorities in RabbitMQ 3.10-3.13 (a priority is silently ignored there;
  RabbitMQ 4.0's two-level "high/normal" is not Celery's 0-9 scale either).
  Urgent work gets its own queue and its own workers instead.
- ``acks_late=False``, ``acks_on_failure_or_timeout=False``,
  ``reject_on_worker_lost=False`` (per task, or ``task_acks_late`` and the like
  in the app's configuration): refused. The lifecycle is "ack after the work"
  and "a lost worker means redelivery"; an early ack would lose the message
  when the worker dies, and the platform settles failures itself.
- ``time_limit`` / ``soft_time_limit`` under the ``threads`` worker layout
  (``PLATFORM_WORKER_LAYOUT``): refused, Celery's thread pool can't stop a
  task. The ``solo`` layout enforces them itself
  (:mod:`workers.delivery.bootsteps.solo_limits`), ``prefork`` in its pool.
- ``rate_limit``: must be a rate Celery understands (``"10/s"``, ``"100/m"``,
  ``"3/h"``, a number of tasks per second); honoured per worker instance by
  :mod:`workers.delivery.rates`.
"""

from __future__ import annotations

from typing import Any

from celery.utils.time import rate

from workers.errors import UnsupportedOption

#: What to do instead of a priority (part of every refusal's message).
PRIORITY_ADVICE = (
    "the platform's work queues are quorum queues, which have no message priorities; "
    "route urgent work to its own queue (queue='<name>', with workers of its own) instead"
)


def check_priority(priority: Any, what: str) -> None:
    """Refuse any priority but None.

    Args:
        priority: the priority asked for (None: none).
        what: the task or publish it was asked for, for the message.

    Raises:
        UnsupportedOption: ``priority`` is not None.
    """
    if priority is not None:
        raise UnsupportedOption(f"{what}: priority={priority!r} is not supported: {PRIORITY_ADVICE}")


#: Celery options the lifecycle fixes, with the value it needs.
LIFECYCLE_OPTIONS = {
    "acks_late": True,
    "acks_on_failure_or_timeout": True,
    "reject_on_worker_lost": True,
}


def check_lifecycle_options(task_class: Any, name: str) -> None:
    """Refuse a task that turns off late ack or redelivery on a lost worker.

    Raises:
        UnsupportedOption: one of :data:`LIFECYCLE_OPTIONS` is set otherwise.
    """
    for option, needed in LIFECYCLE_OPTIONS.items():
        value = getattr(task_class, option, None)
        if value is not None and bool(value) is not needed:
            raise UnsupportedOption(
                f"task {name}: {option}={value!r} is not supported: the platform acks a message only "
                "after its task ran and settles failures itself (a lost worker's message is "
                "redelivered); leave it unset (per task and in the app's task_* settings)"
            )


def check_celery_options(task_class: Any, settings: Any) -> None:
    """Refuse Celery options of ``task_class`` the platform can't honour.

    ``settings`` (the platform's): time limits depend on its worker layout.

    Raises:
        UnsupportedOption: a priority, given to ``@app.task(priority=...)`` or
            inherited from Celery's ``task_default_priority``; late ack or
            redelivery on a lost worker turned off; a time limit under the
            ``threads`` layout.
        ValueError: a ``rate_limit`` Celery can't read.
    """
    name = task_class.name or task_class.__name__
    check_lifecycle_options(task_class, name)
    check_priority(
        task_class.priority,
        f"task {name} (from @app.task(priority=...) or the task_default_priority setting)",
    )
    check_time_limits(task_class, name, getattr(settings, "worker_layout", "prefork"))
    limit = getattr(task_class, "rate_limit", None)
    if limit is not None:
        try:
            rate(limit)
        except (TypeError, ValueError, KeyError):
            raise ValueError(
                f"task {name}: rate_limit={limit!r} is not a rate (e.g. '10/s', '100/m', '3/h')"
            ) from None


#: Layouts whose pool can't stop a running task, so time limits are refused there.
NO_TIME_LIMITS = ("threads",)


def check_time_limits(task_class: Any, name: str, layout: str) -> None:
    """Refuse ``time_limit`` / ``soft_time_limit`` where the worker layout can't enforce them.

    Raises:
        UnsupportedOption: a time limit under a layout of :data:`NO_TIME_LIMITS`.
    """
    if layout not in NO_TIME_LIMITS:
        return
    for option in ("time_limit", "soft_time_limit"):
        value = getattr(task_class, option, None)
        if value:
            raise UnsupportedOption(
                f"task {name}: {option}={value!r} is not supported under PLATFORM_WORKER_LAYOUT={layout}: "
                "its thread pool can't stop a running task; use the solo or prefork layout"
            )
