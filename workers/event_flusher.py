"""Publishing the worker's buffered task events off the consumer's critical path.

Celery buffers task events (received, started, succeeded, ...) and asks the
consumer to flush them; stock Celery flushes on the next turn of the event
loop, in the same thread that receives messages, hands them to the pool and
acks them. With one message in flight per process, every millisecond spent
there is a millisecond each pool process waits for its next message.

Here a thread of its own flushes instead: the event loop only wakes it. The
dispatcher guards every publish with its own lock, so events the loop still
publishes directly (worker heartbeats) never interleave with a flush, and
events that pile up while the thread is busy go out as one ``task.multi``
message (Celery's grouped format, which Flower reads).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class EventFlusher:
    """A daemon thread that flushes ``dispatcher()``'s buffered events when woken."""

    def __init__(self, dispatcher: Callable[[], Any], name: str = "platform-event-flusher") -> None:
        self._dispatcher = dispatcher
        self._name = name
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def wake(self) -> None:
        """Ask for a flush soon; starts the thread on first use."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what is buffered and stop the thread."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self._flush()
            if self._stopping:
                return

    def _flush(self) -> None:
        dispatcher = self._dispatcher()
        if dispatcher is None:
            return
        try:
            dispatcher.flush()
        except Exception:  # monitoring must never take the worker down
            logger.warning("could not publish buffered task events", exc_info=True)
