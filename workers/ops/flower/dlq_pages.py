"""Tornado handlers for the platform's Flower pages (built on Flower's BaseHandler).

- ``GET /dlq``: every work queue's DLQ depth, oldest age, inflow, error groups
  and hourly trend;
- ``GET /dlq/<queue>``: one DLQ's groups, trend and messages (headers,
  traceback, body), with replay and purge buttons;
- ``POST /dlq/<queue>/replay`` and ``POST /dlq/<queue>/purge``: authenticated
  like every Flower page, and always XSRF-checked (Flower itself skips the
  token check when no auth is configured; these actions change the broker);
- ``GET /broker``: Flower's broker view, listing retry, dead-letter and delay-level
  queues too (Flower lists only queues some worker consumes).

Broker work (and the audit record of a replay or purge, written by
:mod:`workers.ops.dlq.actions` as for the CLI) runs on Flower's executor,
never on the event loop. Every string that came from a task is rendered
through Tornado's autoescaping.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import tornado.web
from flower.views import BaseHandler
from flower.views.broker import BrokerView
from tornado.ioloop import IOLoop
from tornado.web import url

from config.app import platform_config
from config.topology import dead_letter_queue
from workers.broker import SCAN_LIMIT, reading_connection
from workers.ops import dlq
from workers.ops.text import age_text, json_safe

#: Dead letters whose details a queue page shows.
SHOWN_LETTERS = 50
#: Longest body shown on the page, in characters.
BODY_PREVIEW = 2000
#: Why a replay stopped, as the page may say it (the query string is not trusted).
STOP_REASONS = {
    dlq.STOP_REFAILURES: "stopped: too many replayed messages were dead-lettered again",
    dlq.STOP_PUBLISH_FAILED: "stopped: the broker did not confirm a publish",
}


@dataclass(frozen=True)
class QueueSummary:
    """What the DLQ page shows for one work queue."""

    stats: dlq.DlqStats
    #: True when the DLQ held more than :data:`workers.broker.SCAN_LIMIT` (stats cover the head).
    truncated: bool
    letters: list[dlq.DeadLetterMessage]


def body_preview(body: bytes) -> tuple[str, str]:
    """(text, encoding) of a body for display: UTF-8 text or base64, cut to BODY_PREVIEW."""
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode(), "base64"
    return (text if len(text) <= BODY_PREVIEW else text[:BODY_PREVIEW] + " ...[cut]"), encoding


def header_text(value: Any) -> str:
    """A header value as display text (datetimes ISO, nested values JSON-like)."""
    safe = json_safe(value)
    return safe if isinstance(safe, str) else repr(safe)


class PlatformHandler(BaseHandler):
    """Flower's BaseHandler plus the platform's app objects and a strict XSRF check."""

    @property
    def topology(self) -> Any:
        return platform_config(self.capp).topology

    @property
    def settings_(self) -> Any:
        return platform_config(self.capp).settings

    def work_queue(self, name: str) -> str:
        if name not in self.topology:
            raise tornado.web.HTTPError(404, f"no queue {name!r} in the platform's topology")
        return name

    def check_xsrf_cookie(self) -> None:
        super().check_xsrf_cookie()  # Flower's cross-site and origin checks
        tornado.web.RequestHandler.check_xsrf_cookie(self)  # and always the token

    def operator(self) -> str:
        """Who clicked: the basic-auth or OAuth user, else the client address."""
        user = self.current_user
        if isinstance(user, str) and user:
            return f"flower:{user}"
        header = self.request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                return "flower:" + base64.b64decode(header[6:]).decode().partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                pass
        return f"flower:anonymous@{self.request.remote_ip}"

    async def blocking(self, function: Any, *args: Any) -> Any:
        return await IOLoop.current().run_in_executor(None, function, *args)

    def summarize(self, queue: str, letters_shown: int) -> QueueSummary:
        """Browse ``queue``'s DLQ (no side effects) and compute its stats; blocking."""
        with reading_connection(self.capp) as connection:
            try:
                letters = dlq.browse(connection, queue, limit=SCAN_LIMIT + 1)
            except dlq.UnknownQueue:
                letters = []
        truncated = len(letters) > SCAN_LIMIT
        letters = letters[:SCAN_LIMIT]
        stats = dlq.dlq_stats(queue, letters, datetime.now(UTC))
        return QueueSummary(stats, truncated, letters[:letters_shown])

    def render_page(self, template: str, **values: Any) -> None:
        self.render(
            template,
            dlq_age=age_text,
            dlq_body=body_preview,
            dlq_header=header_text,
            dlq_name=dead_letter_queue,
            **values,
        )


class DlqIndexView(PlatformHandler):
    """``GET /dlq``: every work queue's dead letters at a glance."""

    @tornado.web.authenticated
    async def get(self) -> None:
        names = list(self.topology.names)
        summaries = []
        for name in names:
            summaries.append(await self.blocking(self.summarize, name, 0))
        self.render_page("dlq.html", summaries=summaries, total=sum(s.stats.count for s in summaries))


class DlqQueueView(PlatformHandler):
    """``GET /dlq/<queue>``: one DLQ in detail, with replay and purge buttons."""

    @tornado.web.authenticated
    async def get(self, queue: str) -> None:
        name = self.work_queue(queue)
        summary = await self.blocking(self.summarize, name, SHOWN_LETTERS)
        outcome = None
        if self.get_argument("action", None, escape=False) in {"replay", "purge"}:
            outcome = {
                "action": self.get_argument("action", escape=False),
                "count": self.get_argument("count", "0", type=int),
                "matched": self.get_argument("matched", "0", type=int),
                "refailed": self.get_argument("refailed", "0", type=int),
                "stopped": STOP_REASONS.get(self.get_argument("stopped", "", escape=False) or ""),
            }
        self.render_page("dlq_queue.html", queue=name, summary=summary, outcome=outcome, shown=SHOWN_LETTERS)


class DlqReplayAction(PlatformHandler):
    """``POST /dlq/<queue>/replay``: replay all, one group, or one task id."""

    @tornado.web.authenticated
    async def post(self, queue: str) -> None:
        name = self.work_queue(queue)
        group = self.get_argument("group", "", escape=False)
        task_id = self.get_argument("task_id", "", escape=False)
        if group and (len(group) != 8 or any(c not in "0123456789abcdef" for c in group)):
            raise tornado.web.HTTPError(400, "group must be 8 hex digits")
        selection = dlq.Filter(ids=(task_id,) if task_id else (), groups=(group,) if group else ())
        result = await self.blocking(self._replay, name, selection, self.operator())
        query = f"action=replay&count={result.replayed}&matched={result.matched}&refailed={result.refailed}"
        if result.stopped:
            query += f"&stopped={result.stopped}"
        self.redirect(f"{self.reverse_url('dlq-queue', name)}?{query}", status=303)

    def _replay(self, name: str, selection: dlq.Filter, who: str) -> dlq.ReplayResult:
        with reading_connection(self.capp) as connection:
            return dlq.replay_and_audit(
                connection,
                name,
                selection,
                who=who,
                run_dir=self.settings_.run_dir,
                max_refail_ratio=self.settings_.replay_max_refail_ratio,
                confirm_timeout=self.settings_.publish_timeout,
            )


class DlqPurgeAction(PlatformHandler):
    """``POST /dlq/<queue>/purge``: delete every dead letter of the queue."""

    @tornado.web.authenticated
    async def post(self, queue: str) -> None:
        name = self.work_queue(queue)
        deleted = await self.blocking(self._purge, name, self.operator())
        self.redirect(f"{self.reverse_url('dlq-queue', name)}?action=purge&count={deleted}", status=303)

    def _purge(self, name: str, who: str) -> int:
        with reading_connection(self.capp) as connection:
            return dlq.purge_and_audit(connection, name, who=who, run_dir=self.settings_.run_dir)


class PlatformBrokerView(BrokerView):
    """Flower's broker page, also listing every retry, dead-letter and delay queue.

    The delay queues are the shared delay levels and their unroutable catch-all
    (``Topology.delay_queues()``): no worker consumes them, so Flower alone would hide them.
    """

    def get_active_queue_names(self) -> list[str]:
        names = set(super().get_active_queue_names())
        topology = platform_config(self.capp).topology
        for work_queue in getattr(topology, "work_queues", ()):
            names.update({work_queue.name, *work_queue.retry_queues, work_queue.dead_letter_queue})
        names.update(queue.name for queue in topology.delay_queues())
        return sorted(names)


#: Queue names in URLs: the settings' rule for work queues, plus dots for
#: subscriber queues (``<service>.events``); the topology decides what exists.
_QUEUE = r"([a-z][a-z0-9_.-]{0,63})"


def platform_handlers() -> list[Any]:
    """The handlers to add to Flower's application, in match order."""
    return [
        url(r"/dlq", DlqIndexView, name="dlq"),
        url(r"/dlq/", DlqIndexView),
        url(rf"/dlq/{_QUEUE}/replay", DlqReplayAction, name="dlq-replay"),
        url(rf"/dlq/{_QUEUE}/purge", DlqPurgeAction, name="dlq-purge"),
        url(rf"/dlq/{_QUEUE}", DlqQueueView, name="dlq-queue"),
        url(r"/broker", PlatformBrokerView, name="platform-broker"),
    ]
