"""Looking up an event id that is malformed, unknown, or a foreign producer's: Flower and ``pubsub show``.

The platform's event ids are UUIDs (``publish()`` makes them). An id that is
not one and that no subscriber has processed, retried or dead-lettered is a
mistake (a typo, a task id, an order id): Flower answers 400 and ``pubsub
show`` exits 2, each with one sentence. A UUID nobody has is unknown: 404 and
"pending" everywhere (exit 0). A foreign producer's non-UUID id that a
subscriber has is shown as usual. Plain HTTP and real subprocesses (no browser).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.e2e.test_event_page import SUBSCRIBERS, environment
from tests.support.cli import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.broker]

#: An id a foreign producer chose, dead-lettered at billing (seeded, see below).
FOREIGN_ID = "order-42/created"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def env(vhost, tmp_path: Path) -> dict[str, str]:
    """The four subscribers' topology declared, and billing's DLQ holding the foreign event."""
    env = environment(vhost, tmp_path)
    declared = run_cli(env, "topology", "declare")
    assert declared.returncode == 0, declared.stderr
    vhost.publish(
        "billing.events.dlq",
        b'{"order_id": "o-42", "amount": 1}',
        headers={
            "cloudEvents_specversion": "1.0",
            "cloudEvents_id": FOREIGN_ID,
            "cloudEvents_source": "/elsewhere",
            "cloudEvents_type": "order.created",
            "x-error-class": "permanent",
            "x-error-type": "workers.errors.PermanentError",
            "x-error-message": "rejected",
        },
    )
    return env


def test_pubsub_show_refuses_a_malformed_id_and_keeps_pending_for_an_unknown_uuid(env: dict[str, str]):
    """`pubsub show not-an-id`: exit 2, one line saying ids are UUIDs; an unknown UUID:
    exit 0, every subscriber pending; the foreign id: billing dead-lettered, exit 0."""
    malformed = run_cli(env, "pubsub", "show", "not-an-id")
    assert malformed.returncode == 2, malformed.stdout + malformed.stderr
    lines = malformed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 'not-an-id' is not an event id"), lines
    assert "UUID" in lines[0] and "Traceback" not in malformed.stderr
    assert malformed.stdout == ""

    empty = run_cli(env, "pubsub", "show", " ")
    assert empty.returncode == 2 and "empty" in empty.stderr, empty.stderr

    unknown = run_cli(env, "pubsub", "show", str(uuid.uuid4()), "--json")
    assert unknown.returncode == 0, unknown.stderr
    assert {row["state"] for row in json.loads(unknown.stdout)} == {"pending"}

    foreign = run_cli(env, "pubsub", "show", FOREIGN_ID, "--json")
    assert foreign.returncode == 0, foreign.stderr
    states = {row["service"]: row["state"] for row in json.loads(foreign.stdout)}
    assert states == {service: "pending" for service in SUBSCRIBERS} | {"billing": "dead-lettered"}


def test_flowers_event_page_answers_400_for_a_malformed_id_and_404_for_an_unknown_uuid(
    env: dict[str, str], start_flower
):
    """/events/not-an-id: 400 with the sentence; /events/<unknown uuid>: 404 saying no
    subscriber has it; /events/<foreign id>: 200."""
    flower = start_flower(env)

    status, page = get(f"{flower.url}/events/not-an-id")
    assert status == 400
    assert "is not an event id" in page and "UUID" in page and "Traceback" not in page

    status, page = get(f"{flower.url}/events/{uuid.uuid4()}")
    assert status == 404
    assert "No subscriber has processed, retried or dead-lettered this event" in page

    status, page = get(f"{flower.url}/events/{urllib.parse.quote(FOREIGN_ID, safe='')}")
    assert status == 200, page[-2000:]
