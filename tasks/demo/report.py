"""What the demo prints: the work it sent, the event's fan-out, and the summary.

Every line is written through ``out`` (``print`` by default), so a test can
collect them. URLs are printed without passwords: the broker's masked
(:func:`workers.broker.masked_url`), the management UI's without credentials
at all (:func:`management_ui`).
"""

from __future__ import annotations

import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from config.topology import dead_letter_queue
from workers.delivery.headers import retry_count

if TYPE_CHECKING:
    from config.settings import Settings
    from config.subscriptions import Subscription
    from tasks.demo.follow import Follower
    from tasks.demo.samples import Sample

#: Where each line goes.
Out = Callable[[str], None]


def print_idle(idle: Sequence[str], out: Out = print) -> None:
    """Why nothing was sent: no worker consumes ``idle``."""
    out(f"\nNo worker consumes {', '.join(idle)}, so nothing was sent.")
    out("Start the workers with 'make up' (or 'make worker' in another terminal), then try again.")


def print_sent(samples: Sequence[Sample], skipped: Sequence[str], out: Out = print) -> None:
    """The tasks sent, one a line with its story, and the sample queues left out."""
    out(f"\nSent {len(samples)} tasks:")
    for sample in samples:
        out(f"  {sample.queue:<10} {sample.call:<52} {sample.story}")
    if skipped:
        out(f"  (not sent: {', '.join(skipped)} is not in PLATFORM_QUEUES)")


def print_event(
    event_id: str, subscriptions: Sequence[Subscription], exchange: str, out: Out = print
) -> None:
    """The published event and the subscriber queues it fans out to."""
    subscribers = [
        subscription.queue for subscription in subscriptions if subscription.handler_for("order.created")
    ]
    out(f"\nPublished 1 event: order.created {event_id} to {exchange}")
    out(f"  delivered to {len(subscribers)} subscriber queues: {', '.join(subscribers)}")
    out("  (the publisher knows only the exchange; each service handles its own copy)")


def print_summary(
    follower: Follower, settings: Settings, took: float | None, timeout: float, out: Out = print
) -> None:
    """The summary for a reader new to the platform, once settled or at the deadline."""
    if took is None:
        out(f"Not settled after {timeout:g}s. Are the workers running? (make up; make logs)")
    else:
        out(f"Settled in {took:.1f}s.")
    _print_completed(follower, out)
    _print_dead_letters(follower, out)
    _print_pending(follower, out)
    if took is not None:
        _print_problems(follower.surprises(), out)
    _print_look_around(settings, out)


def _print_completed(follower: Follower, out: Out) -> None:
    completed = [
        sample for task_id, sample in follower.sent.items() if task_id in follower.progress.completed
    ]
    out(f"\nCompleted: {len(completed)} of {len(follower.sent)}")
    for queue, count in Counter(sample.queue for sample in completed).items():
        out(f"  {queue:<17} {count} completed")


def _print_dead_letters(follower: Follower, out: Out) -> None:
    progress = follower.progress
    out(f"\nDead-lettered: {len(progress.dead)} (each message keeps its body and gains x- headers)")
    # The DLQ a letter was found in is its sample's queue's: only those are browsed.
    found = sorted(
        (
            (dead_letter_queue(follower.sent[task_id].queue), letter)
            for task_id, letter in progress.dead.items()
        ),
        key=lambda item: item[0],
    )
    for dlq, letter in found:
        out(f"  {dlq:<14} {letter.task_name or '?'}  x-error-class={letter.error_class or '?'}")
        out(f"  {'':<14} {letter.error_type or '?'}: {letter.error_message}")
        out(f"  {'':<14} x-retry-count={retry_count(letter.headers)}  x-task-id={letter.task_id or '?'}")
    older = {dlq: count for dlq, count in progress.older_dead.items() if count}
    if older:
        listed = ", ".join(f"{dlq} {count}" for dlq, count in sorted(older.items()))
        out(f"  (also in the DLQs from earlier runs: {listed})")


def _print_pending(follower: Follower, out: Out) -> None:
    progress = follower.progress
    pending = [
        sample
        for task_id, sample in follower.sent.items()
        if task_id not in progress.completed and task_id not in progress.dead
    ]
    if pending:
        out(f"\nStill pending: {len(pending)}")
        for sample in pending:
            out(f"  {sample.queue:<10} {sample.call}")


def _print_problems(problems: Sequence[str], out: Out) -> None:
    if problems:
        out("\nNot as expected:")
        for problem in problems:
            out(f"  {problem}")


def _print_look_around(settings: Settings, out: Out) -> None:
    url = flower_url(settings)
    out("\nLook around:")
    out(f"  Flower tasks    {url}/tasks     every task, with retries and failures")
    out(f"  Flower workers  {url}/workers   the workers of every queue (make up)")
    out(f"  Flower broker   {url}/broker    every queue: work, delay and dead-letter")
    out(f"  Dead letters    {url}/dlq       error groups, tracebacks, replay (or: make dlq-list)")
    out(f"  RabbitMQ        {management_ui(settings.management_url)}/#/queues")
    if settings.flower_basic_auth:
        out("  (Flower asks for the user and password of FLOWER_BASIC_AUTH)")


def flower_url(settings: Settings) -> str:
    """Where a browser on this machine reaches Flower.

    A wildcard listen address (``0.0.0.0``, ``::`` or empty) becomes the
    loopback address of its family; an IPv6 address gets brackets.
    """
    host = settings.flower_address
    if host in {"", "0.0.0.0", "::"}:
        host = "127.0.0.1" if host != "::" else "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.flower_port}"


def management_ui(management_url: str) -> str:
    """The management web UI for an API URL (``.../api/``; the first of a list), without credentials."""
    parts = urllib.parse.urlsplit(management_url.split(";")[0])
    netloc = parts.netloc.rpartition("@")[2]
    path = parts.path.rstrip("/").removesuffix("/api")
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, "", ""))
