"""Celery's consumer, extended so that nothing is dropped on receipt.

Stock Celery acks a message it can't decode and loses it. Here every message
the worker can't run is dead-lettered to its queue's DLQ with the reason
(``x-error-class``: ``undecodable``, ``disallowed``, ``unknown-task``) and its
body byte for byte, and only then acked. A message whose delivery count
(counted by the quorum queue) reached the delivery limit is dead-lettered as
``poison`` before it can kill another worker process.

On receipt, in this order (each a refusal to the DLQ with a reason):

1. receive translators adapt the delivery (an event becomes its handler's task);
2. poison: the delivery count reached the limit (with a prefetch window above
   one message per slot, only the deliveries a worker took count, not those
   that only waited in a dead worker's window: :mod:`workers.delivery.starts`);
3. the headers and body Celery will read (:mod:`workers.delivery.receipt`):
   wrong types, properties that were not UTF-8 (the consuming connection
   reads frames with :mod:`workers.frames`, so such a message
   reaches this point instead of killing the connection);
4. an ``eta`` still ahead (a producer that did not use the platform's
   publisher): the message goes on to the broker's delay levels, never held
   here; an eta already due is cleared and the task runs now;
5. a task's ``rate_limit`` with no free slot (:mod:`workers.delivery.rates`):
   the message waits for its slot in the broker's delay levels, never held
   here, and the messages behind it flow (Celery's own token bucket, which
   holds it unacknowledged in this process, is never used);
6. Celery's own strategy, whose refusals come back through the hooks below;
   anything else it raises dead-letters the message as undecodable.

A refused message that has a task id also gets a FAILURE result (with a result
backend) and a ``task-failed`` event, once its dead letter is confirmed
(:mod:`workers.delivery.results`).

Installed through Celery's ``worker_consumer`` setting; the blueprint adds the
topology bootstep and leaves out Celery's native delayed delivery (this
platform never holds delayed messages in workers or in ``celery_delayed_*``
queues).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

from celery.utils.time import rate
from celery.worker.consumer.consumer import Consumer
from kombu.common import ignore_errors
from kombu.exceptions import ContentDisallowed

from config.app import platform_config
from workers.delivery.classify import ErrorClass
from workers.delivery.delays import DelayError, delay_units, seconds_until
from workers.delivery.failover import NodeMemory
from workers.delivery.headers import RATE_SLOT, Failure, delivery_count, retry_count
from workers.delivery.lifecycle import Lifecycle, install_lifecycle
from workers.delivery.rates import RateSchedules, Slot
from workers.delivery.receipt import Refusal, check_body, check_headers
from workers.delivery.results import record_refusal, refusal_exception
from workers.delivery.starts import TakeLedger, deliveries_taken, takes_folder
from workers.frames import TOLERANT_TRANSPORT_OPTIONS

logger = logging.getLogger(__name__)

#: Celery's step that would declare 28 ``celery_delayed_*`` queues; not used.
NATIVE_DELAYED_DELIVERY = "celery.worker.consumer.delayed_delivery:DelayedDelivery"
#: The consumer step that declares the whole topology on (re)connect.
TOPOLOGY_STEP = "workers.delivery.bootsteps.topology:DeclareTopology"
#: The consumer step that counts how late delayed tasks arrive.
LATENESS_STEP = "workers.delivery.bootsteps.lateness:DelayLateness"
#: The consumer step that gives a solo pool time limits and heartbeats while a task runs.
SOLO_STEP = "workers.delivery.bootsteps.solo_limits:SoloGuard"
#: Seconds task events may wait in the worker's buffer before they are published.
EVENT_FLUSH_INTERVAL = 0.1
#: Errors in a message's shape that surface while Celery builds the request.
MALFORMED_ERRORS = (ValueError, TypeError, KeyError, AttributeError)


class PlatformConsumer(Consumer):
    """The worker's consumer with dead-letter-on-receipt and poison protection."""

    class Blueprint(Consumer.Blueprint):
        default_steps = [step for step in Consumer.Blueprint.default_steps if step != NATIVE_DELAYED_DELIVERY]
        default_steps.insert(default_steps.index("celery.worker.consumer.tasks:Tasks"), TOPOLOGY_STEP)
        default_steps.append(LATENESS_STEP)
        default_steps.append(SOLO_STEP)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # -- extension point: receive translators (registry) -------------------
        #: Callables ``message -> message`` that adapt a delivery before the
        #: poison check and Celery's strategy see it; consumer bootsteps append
        #: to it (workers.events.receive runs CloudEvents as handler tasks).
        self.receive_translators: list[Callable[[Any], Any]] = []
        # -- end of extension point ----------------------------------------------
        #: When the scheduled flush of buffered task events is due (None: none is).
        self._event_flush_due: float | None = None
        #: This worker's rate-limit slots per task (Celery's __init__ fills it: reset_rate_limits).
        self.rate_schedules = RateSchedules()
        #: The node this worker last reached and those that broke under it (failover order).
        self.nodes = NodeMemory()
        super().__init__(*args, **kwargs)
        #: The one lifecycle of this worker process; requests find it through the app.
        self.lifecycle = Lifecycle(self.app, self.hostname or socket.gethostname(), self.queue_by_tag)
        install_lifecycle(self.app, self.lifecycle)
        self.delivery_limit = platform_config(self.app).settings.delivery_limit
        #: Deliveries workers took, so prefetched-only ones are not counted as poison.
        settings = platform_config(self.app).settings
        self.takes = TakeLedger(takes_folder(settings.state_url, settings.run_dir))

    def connection_for_read(self, heartbeat: float | None = None) -> Any:
        """The consuming connection: it reads frames tolerating properties that are not UTF-8.

        A failover list is tried from the node this worker last reached, nodes
        whose connection broke last (:mod:`workers.delivery.failover`).
        """
        connection = self.app.connection_for_read(
            url=self.nodes.ordered(self.app.conf.broker_read_url),
            heartbeat=heartbeat,
            transport_options=TOLERANT_TRANSPORT_OPTIONS,
        )
        connection = self.ensure_connected(connection)
        self.nodes.reached(connection)
        return connection

    def connection_for_write(self, url: str | None = None, heartbeat: float | None = None) -> Any:
        """The connection monitoring events go out on, without publisher confirms.

        Celery's ``Events`` step is this method's only caller in the consumer
        (task messages, retries and dead letters are published elsewhere, all
        confirmed). Worker events are transient messages on a non-durable
        exchange that nobody may depend on; waiting for a confirm of each of
        the three a task produces (received, started, succeeded) cost about a
        third of the worker's main-process time.
        """
        connection = self.app.connection_for_write(
            url=url or self.nodes.ordered(self.app.conf.broker_write_url),
            heartbeat=heartbeat,
            transport_options={"confirm_publish": False},
        )
        return self.ensure_connected(connection)

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        """The consuming connection broke: remember its node, drop the event connection, reconnect.

        The next connections try that node last. The event connection is
        replaced when Celery's ``Events`` step starts again, which first closes
        the old one with a Close handshake; on a node that does not answer
        (frozen) that waited the socket timeout (``read_timeout``) twice, so it
        is dropped here without one: its buffered events stay with the
        dispatcher and go out on the new connection. A channel error
        (``broker_channel_error_retry``: the pidbox queue of the lost connection
        still locked, say) restarts the worker too, but its node answered: it
        keeps its place.
        """
        if not isinstance(exc, tuple(self.channel_errors or ())):
            if self.connection is not None:
                self.nodes.lost(self.connection)
            dispatcher = getattr(self, "event_dispatcher", None)
            events_connection = getattr(dispatcher, "connection", None)
            if events_connection is not None:
                ignore_errors(events_connection, events_connection.collect)
        super().on_connection_error_after_connected(exc)

    def on_send_event_buffered(self) -> None:
        """Flush buffered task events once per :data:`EVENT_FLUSH_INTERVAL`, not per loop turn.

        Stock Celery flushes on the next turn of the event loop, so each task's
        events go out as one or two small messages, each a full publish in the
        thread that also receives, dispatches and acks. Flushing on a timer
        sends them as one ``task.multi`` message per interval (per 24 events at
        most: the dispatcher flushes a full buffer itself), which Flower reads
        like single events.
        """
        if self.hub is None:
            return self._flush_events()
        now = time.monotonic()
        # A timer lost with a restarted event loop is overdue: schedule anew.
        if self._event_flush_due is None or now > self._event_flush_due + EVENT_FLUSH_INTERVAL:
            self._event_flush_due = now + EVENT_FLUSH_INTERVAL
            self.hub.call_later(EVENT_FLUSH_INTERVAL, self._flush_buffered_events)
        return None

    def _flush_buffered_events(self) -> None:
        self._event_flush_due = None
        self._flush_events()

    def shutdown(self) -> None:
        # Events still waiting for the timer go out before the dispatcher closes.
        if getattr(self, "event_dispatcher", None) is not None:
            self._flush_events()
        super().shutdown()

    def queue_by_tag(self) -> dict[str, str]:
        """The queue each consumer tag of the running task consumer consumes."""
        task_consumer = getattr(self, "task_consumer", None)
        tags = getattr(task_consumer, "_active_tags", None) or {}
        return {tag: queue for queue, tag in tags.items()}

    # -- rate limits: slots in the broker instead of Celery's in-memory bucket --

    def bucket_for_task(self, type: Any) -> None:
        """No token bucket: Celery's strategy would hold the message here, unacknowledged."""
        return None

    def reset_rate_limits(self) -> None:
        """Read every task's ``rate_limit`` again (at start, and after ``celery control rate_limit``)."""
        super().reset_rate_limits()
        self.rate_schedules.set_rates({name: rate(task.rate_limit) for name, task in self.app.tasks.items()})

    def rate_limited_until(self, message: Any) -> datetime | None:
        """When a message of a rate-limited task may run, if not now.

        Takes the message's slot header off it (a retry or dead letter of a
        message that ran must not carry a slot); a message that has to wait
        gets its new slot written back, for the copy sent to the delay levels.
        """
        headers = message.headers
        if self.disable_rate_limits or not isinstance(headers, MutableMapping):
            return None
        carried = Slot.parse(headers.pop(RATE_SLOT, None))
        name = headers.get("task")
        if not isinstance(name, str):
            return None
        slot = self.rate_schedules.admit(name, time.time(), self.hostname, carried)
        if slot is None:
            return None
        headers[RATE_SLOT] = slot.header()
        return datetime.fromtimestamp(slot.at, UTC)

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
        handle = super().create_task_handler(*args, **kwargs)
        limit = self.delivery_limit
        # A window above one message per slot: a message may go back only having waited.
        windowed = (self.prefetch_multiplier or 1) > 1
        connection_errors = tuple(self.connection_errors or ())

        def on_task_received(message: Any) -> Any:
            message = self.translate(message)  # extension point: receive translators
            deliveries = delivery_count(message.headers)
            taken = deliveries
            if windowed and deliveries >= limit:
                taken = self.deliveries_taken(message, deliveries)
            if taken >= limit:
                return self.refuse(
                    message,
                    ErrorClass.POISON,
                    "DeliveryLimitExceeded",
                    f"delivered {deliveries + 1} times; the {taken} earlier deliveries "
                    "ended without an ack (the worker process died)",
                )
            refusal = receipt_refusal(message)
            if refusal is not None:
                return self.refuse(message, refusal.error_class, refusal.error_type, refusal.message)
            due = eta_of(message)
            if due is not None:
                if delay_units(seconds_until(due)) > 0:
                    return self.postpone(message, due)
                message.headers["eta"] = None  # due now: run it, don't schedule it in memory
            slot = self.rate_limited_until(message)
            if slot is not None:
                return self.postpone(message, slot)
            if windowed:
                self.take_delivery(message)
            try:
                return handle(message)
            except connection_errors:
                raise  # the connection is gone: Celery reconnects, the broker redelivers
            except MALFORMED_ERRORS as exc:
                return self.refuse(message, ErrorClass.UNDECODABLE, type(exc).__name__, str(exc))
            except Exception as exc:  # never lose or hold a message Celery choked on
                logger.exception("could not take a message; dead-lettering it")
                return self.refuse(message, ErrorClass.UNDECODABLE, type(exc).__name__, str(exc))

        return on_task_received

    # -- poison: deliveries taken, not deliveries returned -----------------------

    def deliveries_taken(self, message: Any, deliveries: int) -> int:
        """Earlier deliveries of ``message`` a worker took (see :mod:`workers.delivery.starts`).

        Without a task id, or if the take files can't be read, every return counts.
        """
        task_id = message.headers.get("id") if isinstance(message.headers, Mapping) else None
        if not isinstance(task_id, str):
            return deliveries
        try:
            return deliveries_taken(deliveries, self.takes.taken(task_id))
        except Exception as exc:  # noqa: BLE001 - count every return, as the broker does
            logger.warning(
                "could not read the redeliveries of %s (%r); counting all %d", task_id, exc, deliveries
            )
            return deliveries

    def take_delivery(self, message: Any) -> None:
        """Record that this worker takes ``message`` and runs it now."""
        task_id = message.headers.get("id")
        try:
            self.takes.take(task_id)
        except Exception as exc:  # noqa: BLE001 - the message still runs; the broker's own limit stays
            logger.warning("could not record the delivery of %s: %r", task_id, exc)

    # -- extension point: receive translators (method) ------------------------
    def translate(self, message: Any) -> Any:
        """``message`` as adapted by each of :attr:`receive_translators`, in order."""
        for translator in self.receive_translators:
            message = translator(message)
        return message

    # -- end of extension point ------------------------------------------------

    # -- Celery's hooks for messages it can't run -----------------------------

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        error_class = ErrorClass.DISALLOWED if isinstance(exc, ContentDisallowed) else ErrorClass.UNDECODABLE
        self.refuse(message, error_class, type(exc).__name__, str(exc))

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        error_class = ErrorClass.DISALLOWED if isinstance(exc, ContentDisallowed) else ErrorClass.UNDECODABLE
        self.refuse(message, error_class, type(exc).__name__, str(exc))

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self.refuse(
            message,
            ErrorClass.UNDECODABLE,
            "NotATaskMessage",
            "the message has no Celery 'task' header (not a task message)",
        )

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        name = (message.headers or {}).get("task", "?")
        self.refuse(message, ErrorClass.UNKNOWN_TASK, "NotRegistered", f"no task named {name!r} here")

    def postpone(self, message: Any, due: datetime) -> None:
        """Send a message that is not due yet to the delay levels, then ack it."""
        requeue = lambda: message.reject(requeue=True)  # noqa: E731 - one line, used twice
        try:
            self.lifecycle.postpone(message, due, ack=message.ack, requeue=requeue)
        except DelayError as exc:  # further ahead than the levels hold
            self.refuse(message, ErrorClass.DISALLOWED, "DelayTooLong", str(exc))

    def refuse(self, message: Any, error_class: ErrorClass, error_type: str, text: str) -> None:
        """Dead-letter a message that can't be run, then ack it.

        If even that fails, the delivery goes back to the broker: the quorum
        queue's own delivery limit dead-letters it after a few attempts.
        """
        failure = Failure(error_class.value, error_type, text)
        requeue = lambda: message.reject(requeue=True)  # noqa: E731 - one line, used twice
        try:
            moved = self.lifecycle.dead_letter(
                message, failure, retry_count(message.headers), ack=message.ack, requeue=requeue
            )
        except Exception:  # never crash the consumer over one message
            logger.exception("could not dead-letter a refused message; giving it back to the broker")
            requeue()
            return
        if moved:
            self.record_refusal(message, error_class, error_type, text)

    def record_refusal(self, message: Any, error_class: ErrorClass, error_type: str, text: str) -> None:
        """A refused task's FAILURE result and ``task-failed`` event, as stock Celery gives an unknown task."""
        headers = message.headers if isinstance(message.headers, Mapping) else {}
        exc = refusal_exception(error_class, error_type, text, str(headers.get("task", "?")))
        record_refusal(self.app, message, exc, getattr(self, "event_dispatcher", None))


def eta_of(message: Any) -> datetime | None:
    """The ``eta`` of a task message as an aware datetime (UTC if it has no zone), or None."""
    headers = message.headers
    eta = headers.get("eta") if isinstance(headers, Mapping) else None
    if eta is None:
        return None
    moment = eta if isinstance(eta, datetime) else datetime.fromisoformat(eta)  # receipt checked the format
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def receipt_refusal(message: Any) -> Refusal | None:
    """Why a protocol 2 task message can't be run (headers, then body), or None.

    Messages without a ``task`` header are left to Celery (protocol 1, or not
    a task message at all: :meth:`PlatformConsumer.on_unknown_message`), and
    so are bodies that don't decode (:meth:`PlatformConsumer.on_decode_error`).
    """
    headers = message.headers
    if not isinstance(headers, Mapping) or "task" not in headers:
        return None
    refusal = check_headers(headers)
    if refusal is not None:
        return refusal
    try:
        payload = message.decode()  # kombu caches it; Celery's strategy reads the same
    except Exception:  # noqa: BLE001 - Celery's own decode path reports it
        return None
    if isinstance(payload, Mapping):  # a hybrid message (an event translated to its handler)
        payload = [payload.get("args", ()), payload.get("kwargs", {}), payload.get("embed")]
    return check_body(payload)
