"""Flower pages for sagas: counts by state, the sagas of one state, one saga's timeline.

- ``GET /sagas[?state=S]``: how many sagas are in each state, and the sagas
  (oldest first, at most :data:`PAGE_LIMIT`) of the chosen state, or of every
  state that has not ended well when none is chosen;
- ``GET /sagas/<saga id>``: the timeline (each transition, act and late
  event with its event id, service and time, and the operator's moves) and the
  saga's dead letters with their error, linked to that queue's Dead letters
  page. An unknown saga id answers 404.

Reads go through :mod:`workers.ops.sagas` (the same functions as ``celery -A
config saga list/show``), on Flower's executor, never on the event loop.
Authentication is Flower's; every string is rendered through Tornado's
autoescaping. The pages change nothing: retry and resolve stay commands.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import tornado.web
from tornado.web import url

from workers.broker import reading_connection
from workers.delivery.idempotency import open_store
from workers.ops import sagas
from workers.ops.flower.dlq_pages import PlatformHandler
from workers.ops.text import age_text

#: Most sagas one page lists.
PAGE_LIMIT = 200
#: States listed when no state is chosen: those that need an operator's eye or are still running.
ATTENTION_STATES = ("compensation_failed",)


def when(at: float) -> str:
    """A log time as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SagaPageHandler(PlatformHandler):
    """What both saga pages share: the state store."""

    @property
    def store(self) -> Any:
        return open_store(self.settings_.state_url)

    def render_saga_page(self, template: str, **values: Any) -> None:
        self.render_page(template, age=age_text, when=when, now=time.time(), **values)


class SagaIndexView(SagaPageHandler):
    """``GET /sagas``: counts by state; the sagas of one state."""

    @tornado.web.authenticated
    async def get(self) -> None:
        state = self.get_argument("state", "", strip=True)
        summary = await self.blocking(
            sagas.summarize_sagas, self.store, time.time(), self.settings_.saga_stuck_after
        )
        counts = summary.by_state if summary is not None else {}
        if state:
            listed = await self.blocking(sagas.list_sagas, self.store, (state,), None, PAGE_LIMIT)
        else:
            listed = await self.blocking(self.running_or_failed)
        self.render_saga_page(
            "sagas.html", counts=counts, state=state, sagas=listed, summary=summary, limit=PAGE_LIMIT
        )

    def running_or_failed(self) -> list[Any]:
        found = [s for s in sagas.list_sagas(self.store, (), None, 10 * PAGE_LIMIT) if not s.ended]
        found += sagas.list_sagas(self.store, ATTENTION_STATES, None, PAGE_LIMIT)
        return found[:PAGE_LIMIT]


class SagaView(SagaPageHandler):
    """``GET /sagas/<saga id>``: one saga's timeline and dead letters."""

    @tornado.web.authenticated
    async def get(self, saga_id: str) -> None:
        try:
            view = await self.blocking(sagas.load_view, self.store, saga_id)
        except sagas.SagaNotFound as exc:
            raise tornado.web.HTTPError(404, str(exc)) from None
        try:
            view.letters = await self.blocking(self.letters, saga_id)
        except Exception as exc:  # noqa: BLE001 - the timeline still shows; the page says why letters don't
            view.letters_error = f"dead letters not looked up: {exc}"
        self.render_saga_page("saga.html", view=view)

    def letters(self, saga_id: str) -> list[sagas.SagaLetter]:
        with reading_connection(self.capp) as connection:
            return sagas.saga_letters(connection, self.topology.names, saga_id)


def saga_page_handlers() -> list[Any]:
    """The saga pages' handlers, to add to Flower's application."""
    return [
        url(r"/sagas", SagaIndexView, name="sagas"),
        url(r"/sagas/", SagaIndexView),
        url(r"/sagas/([^/]+)", SagaView, name="saga"),
    ]
