"""Flower pages for events: where one event stands at each subscribing service.

- ``GET /events``: a form to look up an event id, and the subscribing services
  with their queues, patterns and handlers (``GET /events?id=X`` redirects to
  the event's page);
- ``GET /events/<event id>``: per subscriber, processed / retrying (retry
  count, the delay tier the next attempt waits in, the last error) /
  dead-lettered (error class, type and message, a link to that queue's DLQ
  page) / pending. A malformed id answers 400 with the reason (before looking,
  or after it when the id is not a UUID and no subscriber has it:
  :func:`~workers.ops.event_status.unknown_id_problem`); a UUID nobody has, 404.

The lookup is :func:`workers.ops.event_status.event_status`, the same one
``celery -A config pubsub show`` prints; it browses DLQs and delay queues
without side effects and runs on Flower's executor, never on the event loop.
Authentication is Flower's (through :class:`~workers.ops.flower.dlq_pages.PlatformHandler`),
and every string from an event or a task is rendered through Tornado's
autoescaping.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from tornado.web import url

from config.app import platform_config
from workers.errors import PublishError
from workers.ops.event_status import (
    MAX_EVENT_ID,
    SubscriberStatus,
    event_id_problem,
    event_status,
    unknown_id_problem,
)
from workers.ops.flower.dlq_pages import PlatformHandler

#: States in the order the page counts them.
STATES = ("processed", "retrying", "dead-lettered", "pending")


def state_counts(rows: list[SubscriberStatus]) -> dict[str, int]:
    """How many subscribers are in each state, in :data:`STATES` order."""
    return {state: sum(1 for row in rows if row.state == state) for state in STATES}


class EventPageHandler(PlatformHandler):
    """What both event pages share: the subscriptions and the page's helpers."""

    @property
    def subscriptions(self) -> tuple[Any, ...]:
        return platform_config(self.capp).subscriptions

    def render_event_page(self, template: str, **values: Any) -> None:
        values.setdefault("event_id", "")
        values.setdefault("problem", None)
        self.render_page(
            template,
            subscriptions=self.subscriptions,
            in_topology=self.topology.__contains__,
            max_event_id=MAX_EVENT_ID,
            **values,
        )


class EventIndexView(EventPageHandler):
    """``GET /events``: look up an event id; the subscribing services."""

    @tornado.web.authenticated
    def get(self) -> None:
        event_id = self.get_argument("id", None, strip=True)
        if event_id:
            self.redirect(self.reverse_url("event", event_id), status=303)
            return
        problem = "enter an event id" if event_id is not None else None
        self.render_event_page("events.html", problem=problem)


class EventView(EventPageHandler):
    """``GET /events/<event id>``: where the event stands at each subscriber."""

    def decode_argument(self, value: bytes, name: str | None = None) -> Any:
        # Tornado answers invalid UTF-8 in the path with a bare 400; the page
        # says what is wrong instead (None fails event_id_problem).
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None

    @tornado.web.authenticated
    async def get(self, event_id: str | None) -> None:
        problem = event_id_problem(event_id)
        shown = event_id if event_id is not None else ""
        if problem is not None:
            self.set_status(400)
            self.render_event_page("events.html", event_id=shown[:MAX_EVENT_ID], problem=problem)
            return
        assert event_id is not None
        try:
            rows: list[SubscriberStatus] = await self.blocking(event_status, self.capp, event_id)
        except PublishError as exc:
            self.set_status(503)
            self.render_event_page("events.html", event_id=event_id, problem=f"broker unreachable: {exc}")
            return
        malformed = unknown_id_problem(event_id, rows)
        if malformed is not None:
            self.set_status(400)
            self.render_event_page("events.html", event_id=event_id, problem=malformed)
            return
        counts = state_counts(rows)
        if rows and counts["pending"] == len(rows):
            # Nothing anywhere: queued everywhere, or an id nobody published.
            self.set_status(404)
        self.render_event_page("event.html", event_id=event_id, rows=rows, counts=counts)


def event_page_handlers() -> list[Any]:
    """The event pages' handlers, to add to Flower's application."""
    return [
        url(r"/events", EventIndexView, name="events"),
        url(r"/events/", EventIndexView),
        url(r"/events/(.+)", EventView, name="event"),
    ]
