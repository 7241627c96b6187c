"""Checks of everyday Celery task options against what the platform can honour.

Called once per task class when it is declared
(:meth:`workers.delivery.task.PlatformTask.on_bound`).
"""

from __future__ import annotations

from typing import Any


def check_celery_options(task_class: Any, settings: Any) -> None:
    """Refuse, or warn about, Celery options of ``task_class`` the platform treats differently."""
