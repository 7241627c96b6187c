"""The demo's pure parts: its sample work, when work has settled, what surprised it, the URLs it prints."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from config.settings import Settings
from tasks.demo.follow import PENDING, QUIET_POLLS, Progress, surprises
from tasks.demo.report import flower_url, management_ui, print_summary
from tasks.demo.samples import COMPLETED, Sample, sample_work, samples_for
from workers.ops.dlq import DeadLetterMessage

SETTINGS = Settings()
SERVICE_QUEUES = ("orders", "payments", "inventory", "email", "analytics")


def sample(queue: str = "orders", expect: str = COMPLETED) -> Sample:
    return Sample(queue, f"tasks.{queue}.work", ("order-1",), {}, expect, "a story")


def letter(task_id: str, error_class: str = "permanent", retries: int = 0) -> DeadLetterMessage:
    headers = {
        "x-task-id": task_id,
        "x-task-name": "tasks.inventory.reserve",
        "x-error-class": error_class,
        "x-error-type": "workers.errors.BusinessRuleViolation",
        "x-error-message": "sold out",
        "x-retry-count": retries,
    }
    return DeadLetterMessage(0, b"[]", {}, headers)


# ------------------------------------------------------------------ samples


def test_the_sample_work_covers_every_service_queue_and_every_outcome() -> None:
    """Given a run id, when the sample work is built, then every service queue gets
    work, and the outcomes are eight completions, one permanent and one unknown."""
    samples = sample_work("ab12")
    assert {s.queue for s in samples} == set(SERVICE_QUEUES)
    assert sorted(s.expect for s in samples) == [COMPLETED] * 8 + ["permanent", "unknown"]


def test_the_run_id_makes_the_order_ids_of_a_run_unique() -> None:
    """Given two run ids, when the sample work is built for each, then no call is the same
    except those without an order id."""
    first = {s.call for s in sample_work("aaaa")}
    second = {s.call for s in sample_work("bbbb")}
    assert first & second == {"track('page.viewed', {'path': '/'})"}
    assert all("order-aaaa-" in call for call in first - second)


@pytest.mark.parametrize(
    ("task", "args", "kwargs", "call"),
    [
        pytest.param("tasks.payments.charge", ("o-1", 25.0), {}, "charge('o-1', 25.0)", id="positional"),
        pytest.param(
            "tasks.payments.charge",
            ("o-2", 99.5),
            {"fail_times": 2},
            "charge('o-2', 99.5, fail_times=2)",
            id="keyword after positional",
        ),
        pytest.param("tasks.email.handle", (), {"event": "x"}, "handle(event='x')", id="keywords only"),
        pytest.param("noop", (), {}, "noop()", id="a name without a module"),
    ],
)
def test_a_sample_shows_its_call_as_a_reader_would_write_it(
    task: str, args: tuple[object, ...], kwargs: dict[str, object], call: str
) -> None:
    """Given a sample, when its call is shown, then it is the task's short name with its arguments."""
    assert Sample("q", task, args, kwargs, COMPLETED, "").call == call


@pytest.mark.parametrize(
    ("queues", "sent_queues", "skipped"),
    [
        pytest.param(SERVICE_QUEUES, set(SERVICE_QUEUES), [], id="every service queue configured"),
        pytest.param(
            ("orders", "email", "fraud"),
            {"orders", "email"},
            ["analytics", "inventory", "payments"],
            id="some",
        ),
        pytest.param((), set(), sorted(SERVICE_QUEUES), id="none"),
    ],
)
def test_only_the_samples_of_configured_queues_are_sent_and_the_others_are_named(
    queues: tuple[str, ...], sent_queues: set[str], skipped: list[str]
) -> None:
    """Given PLATFORM_QUEUES, when the samples are chosen, then those of other queues are
    left out and their queues listed, sorted."""
    samples, left_out = samples_for(queues, "ab12")
    assert {s.queue for s in samples} == sent_queues
    assert left_out == skipped


# ------------------------------------------------------- settled, surprises


SENT = {"ok": sample("orders"), "rule": sample("inventory", "permanent"), "odd": sample("email", "unknown")}


@pytest.mark.parametrize(
    ("progress", "settled", "problems"),
    [
        pytest.param(
            Progress(completed={"ok"}, dead={"rule": letter("rule"), "odd": letter("odd", "unknown", 2)}),
            True,
            [],
            id="all as expected",
        ),
        pytest.param(
            Progress(completed={"ok"}, dead={"rule": letter("rule")}),
            False,
            [f"email: work('order-1') ended {PENDING}, expected unknown"],
            id="one still pending",
        ),
        pytest.param(
            Progress(completed={"ok", "rule", "odd"}),
            True,
            [
                "inventory: work('order-1') ended completed, expected permanent",
                "email: work('order-1') ended completed, expected unknown",
            ],
            id="failures that completed",
        ),
        pytest.param(
            Progress(dead={k: letter(k, "transient") for k in SENT}),
            True,
            [
                "orders: work('order-1') ended transient, expected completed",
                "inventory: work('order-1') ended transient, expected permanent",
                "email: work('order-1') ended transient, expected unknown",
            ],
            id="dead letters of another class",
        ),
        pytest.param(
            Progress(completed={"ok"}, dead={"rule": letter("rule", ""), "odd": letter("odd", "unknown")}),
            True,
            ["inventory: work('order-1') ended ?, expected permanent"],
            id="a dead letter without x-error-class",
        ),
        pytest.param(
            Progress(),
            False,
            [f"{s.queue}: {s.call} ended {PENDING}, expected {s.expect}" for s in SENT.values()],
            id="nothing known yet",
        ),
    ],
)
def test_work_is_settled_once_every_task_completed_or_died_and_surprises_name_each_other_outcome(
    progress: Progress, settled: bool, problems: list[str]
) -> None:
    """Given what became of the sent tasks, when the demo asks, then it has settled only if
    none is pending, and every outcome other than the expected one is one line."""
    assert progress.settled(SENT) is settled
    assert surprises(SENT, progress) == problems


@pytest.mark.parametrize(
    ("polls", "completed"),
    [
        pytest.param([True] * (QUIET_POLLS - 1), set(), id="not quiet long enough"),
        pytest.param([True] * QUIET_POLLS, {"ok", "odd"}, id="quiet long enough"),
        pytest.param([True] * (QUIET_POLLS - 1) + [False, True], set(), id="a busy poll starts again"),
        pytest.param([False] + [True] * QUIET_POLLS, {"ok", "odd"}, id="quiet after a busy poll"),
    ],
)
def test_without_completion_records_quiet_queues_count_the_live_tasks_as_completed(
    polls: list[bool], completed: set[str]
) -> None:
    """Given PLATFORM_IDEMPOTENCY=false and one task dead-lettered, when the work and delay
    queues are polled, then only enough empty polls in a row complete the other tasks."""
    progress = Progress(dead={"rule": letter("rule")})
    for empty in polls:
        progress.record_queues(empty, SENT)
    assert progress.completed == completed


def test_a_browse_keeps_this_runs_dead_letters_and_counts_the_others() -> None:
    """Given a DLQ holding one letter of this run and two older ones, when it is recorded,
    then the run's letter is kept by task id and the older ones are counted for the DLQ."""
    progress = Progress()
    progress.record_dead_letters("inventory.dlq", [letter("old-1"), letter("rule"), letter("old-2")], SENT)
    assert list(progress.dead) == ["rule"]
    assert progress.older_dead == {"inventory.dlq": 2}


def test_the_summary_prints_each_dead_letter_with_its_queue_class_error_and_retries() -> None:
    """Given a settled run with two dead letters, when the summary is printed, then each
    letter shows its DLQ, task, x-error-class, error, x-retry-count and x-task-id, DLQs sorted."""
    progress = Progress(
        completed={"ok"},
        dead={"rule": letter("rule"), "odd": letter("odd", "unknown", 2)},
        older_dead={"email.dlq": 1},
    )
    lines: list[str] = []
    print_summary(
        SimpleNamespace(sent=SENT, progress=progress, surprises=lambda: []), SETTINGS, 2.0, 90, lines.append
    )
    text = "\n".join(lines)
    assert lines[0] == "Settled in 2.0s."
    assert "\nCompleted: 1 of 3\n  orders            1 completed\n" in text
    assert (
        "  email.dlq      tasks.inventory.reserve  x-error-class=unknown\n"
        "                 workers.errors.BusinessRuleViolation: sold out\n"
        "                 x-retry-count=2  x-task-id=odd\n"
        "  inventory.dlq  tasks.inventory.reserve  x-error-class=permanent\n"
    ) in text
    assert "  (also in the DLQs from earlier runs: email.dlq 1)" in lines
    assert "Not as expected" not in text and "Still pending" not in text


# -------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("address", "port", "url"),
    [
        pytest.param("127.0.0.1", 5555, "http://127.0.0.1:5555", id="loopback"),
        pytest.param("0.0.0.0", 5555, "http://127.0.0.1:5555", id="every IPv4 address"),
        pytest.param("", 5556, "http://127.0.0.1:5556", id="no address"),
        pytest.param("::", 5555, "http://[::1]:5555", id="every IPv6 address"),
        pytest.param("fe80::1", 5555, "http://[fe80::1]:5555", id="an IPv6 address"),
        pytest.param("flower.local", 8080, "http://flower.local:8080", id="a host name"),
    ],
)
def test_flower_is_reached_where_a_browser_on_this_machine_can_go(address: str, port: int, url: str) -> None:
    """Given FLOWER_ADDRESS and FLOWER_PORT, when the demo prints Flower's URL, then a
    wildcard address becomes loopback and an IPv6 address gets brackets."""
    settings = dataclasses.replace(SETTINGS, flower_address=address, flower_port=port)
    assert flower_url(settings) == url


@pytest.mark.parametrize(
    ("management_url", "ui"),
    [
        pytest.param("http://guest:guest@127.0.0.1:15672/api/", "http://127.0.0.1:15672", id="the default"),
        pytest.param("http://127.0.0.1:15672/api", "http://127.0.0.1:15672", id="no credentials"),
        pytest.param(
            "https://ops:s3cr@t@rabbit.example:443/rabbitmq/api/",
            "https://rabbit.example:443/rabbitmq",
            id="an @ in the password, under a path",
        ),
        pytest.param("http://admin@rabbit:15672/api/?x=1#y", "http://rabbit:15672", id="a user, a query"),
    ],
)
def test_the_management_ui_is_printed_without_credentials(management_url: str, ui: str) -> None:
    """Given PLATFORM_MANAGEMENT_URL (the API, maybe with a user and password), when the
    demo prints the UI's address, then it is the UI's, with no user or password in it."""
    printed = management_ui(management_url)
    assert printed == ui
    assert "guest" not in printed and "s3cr" not in printed and "admin" not in printed
