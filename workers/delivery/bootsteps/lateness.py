"""Consumer bootstep: count how late delayed tasks arrive (see :mod:`workers.delivery.lateness`)."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from celery import bootsteps

from config.app import platform_config
from workers.delivery.headers import DELAY_DUE_AT
from workers.delivery.lateness import LatenessRecorder

logger = logging.getLogger(__name__)

#: Seconds between two writes of the worker's counts to the state store.
FLUSH_INTERVAL = 10.0


class DelayLateness(bootsteps.StartStopStep):
    """Observe ``now - x-delay-due-at`` for every delivery that carries it; flush periodically."""

    name = "platform delay lateness"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        settings = platform_config(parent.app).settings
        self.recorder = LatenessRecorder(settings.state_url, parent.hostname or "worker")
        self.timer: Any = None
        parent.receive_translators.append(self.observe)

    def observe(self, message: Any) -> Any:
        """A receive translator that only looks: the message passes unchanged."""
        headers = message.headers
        due = headers.get(DELAY_DUE_AT) if isinstance(headers, dict) else None
        if isinstance(due, str):
            try:
                self.recorder.observe(time.time() - datetime.fromisoformat(due).timestamp())
            except ValueError:
                pass  # not ours to refuse: the receipt checks decide about the message
        return message

    def start(self, c: Any) -> None:
        self.timer = c.timer.call_repeatedly(FLUSH_INTERVAL, self.flush)

    def stop(self, c: Any) -> None:
        """The consumer restarts (a lost connection): write what was counted so far."""
        if self.timer is not None:
            self.timer.cancel()
        self.flush()

    def shutdown(self, c: Any) -> None:
        """The worker stops (Celery sends consumer steps ``shutdown``, not ``stop``)."""
        self.stop(c)

    def flush(self) -> None:
        try:
            self.recorder.flush()
        except Exception:  # monitoring must never stop a worker
            logger.exception("could not write delay lateness to the state store")
