"""Flower page for scaling: ``GET /scale``, each queue's pool size and desired size.

Per work and subscriber queue: the due backlog now, the consumers, the
scaling engine's pool size and desired size with the reason and age of its
last decision (:func:`workers.ops.scale_view.scale_view`, the same rows
``celery -A config scale status`` prints). Without a running engine the
desired size is the policy's advice, marked so. The rows are read on Flower's
executor, never on the event loop; authentication is Flower's.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from tornado.web import url

from workers.broker import masked_url
from workers.ops.flower.dlq_pages import PlatformHandler
from workers.ops.scale_view import ScaleView, scale_view
from workers.ops.text import age_text


class ScaleIndexView(PlatformHandler):
    """``GET /scale``: pool size and desired size per queue."""

    @tornado.web.authenticated
    async def get(self) -> None:
        settings = self.settings_
        store_problem: str | None = None
        try:
            view: ScaleView = await self.blocking(scale_view, settings, self.topology)
        except Exception as exc:  # noqa: BLE001 - the page says what failed
            self.set_status(503)
            problem = f"state store not readable at {masked_url(settings.state_url)}: {exc}"
            view, store_problem = ScaleView([]), problem
        self.render(
            "scale.html",
            view=view,
            store_problem=store_problem,
            interval=settings.scale_interval,
            age=age_text,
        )


def scale_page_handlers() -> list[Any]:
    """The scaling page's handlers, to add to Flower's application."""
    return [url(r"/scale", ScaleIndexView, name="scale"), url(r"/scale/", ScaleIndexView)]
