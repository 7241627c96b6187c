"""Celery's own options on the platform: time limits classified, priority refused, one size limit.

Declaration checks run as a user declares a task (``@app.task``); publish
checks run where every publish path meets (``app.amqp``), with a producer that
records what kombu would be handed. No broker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, signature
from celery.exceptions import CDeprecationWarning, SoftTimeLimitExceeded, TimeLimitExceeded

from tests.unit.fakes import unit_app
from workers.delivery.classify import ClassifierRules, ErrorClass, classify
from workers.delivery.options import check_priority
from workers.delivery.publishing import SizeLimitedProducer, check_body_size
from workers.errors import MessageTooLarge, PermanentError, UnsupportedOption
from workers.events.publisher import EventTooLarge


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Celery]:
    app = unit_app(tmp_path)
    app.finalize()
    yield app
    app.close()


# -- time limits: unknown by default, the task's or the settings' rules win ------------------


def rules_for(app: Celery, **options: Any) -> ClassifierRules:
    """The classifier rules of a task declared on ``app`` with ``options``."""

    @app.task(name=f"tests.limited.{len(app.tasks)}", shared=False, **options)
    def limited() -> None: ...

    return limited._classifier_rules


TIME_LIMITS = [SoftTimeLimitExceeded(), TimeLimitExceeded(0.3)]


@pytest.mark.parametrize("exc", TIME_LIMITS, ids=["soft", "hard"])
@pytest.mark.parametrize(
    ("options", "settings", "expected"),
    [
        pytest.param({}, {}, ErrorClass.UNKNOWN, id="by default: unknown"),
        pytest.param({"transient_errors": (SoftTimeLimitExceeded, TimeLimitExceeded)}, {},
                     ErrorClass.TRANSIENT, id="the task's transient_errors"),
        pytest.param({"permanent_errors": ("celery.exceptions.SoftTimeLimitExceeded",
                                           "celery.exceptions.TimeLimitExceeded")}, {},
                     ErrorClass.PERMANENT, id="the task's permanent_errors, by name"),
        pytest.param({"classify_error": lambda exc: "permanent"}, {}, ErrorClass.PERMANENT,
                     id="the task's classify_error"),
        pytest.param({}, {"extra_transient": ("billiard.exceptions.SoftTimeLimitExceeded",
                                              "billiard.exceptions.TimeLimitExceeded")},
                     ErrorClass.TRANSIENT, id="PLATFORM_EXTRA_TRANSIENT"),
        pytest.param({"permanent_errors": (SoftTimeLimitExceeded, TimeLimitExceeded)},
                     {"extra_transient": ("billiard.exceptions.SoftTimeLimitExceeded",
                                          "billiard.exceptions.TimeLimitExceeded")},
                     ErrorClass.PERMANENT, id="the task over the settings"),
    ],
)  # fmt: skip
def test_a_time_limit_is_unknown_unless_the_task_or_the_settings_say_otherwise(
    tmp_path: Path, exc: BaseException, options: dict, settings: dict, expected: ErrorClass
) -> None:
    app = unit_app(tmp_path, **settings)
    app.finalize()
    try:
        assert classify(exc, rules_for(app, **options)).error_class is expected
    finally:
        app.close()


# -- priority: refused at declaration and on every publish ------------------------------------


def test_a_task_declared_with_a_priority_is_refused_naming_the_task_and_what_to_do(app: Celery) -> None:
    """(Celery itself only warns that the attribute is deprecated.)"""
    refused = pytest.raises(UnsupportedOption, match=r"task tests\.urgent.*priority=5.*own queue")
    with pytest.warns(CDeprecationWarning, match="'priority' task attribute"), refused:

        @app.task(name="tests.urgent", priority=5, shared=False)
        def urgent() -> None: ...


def test_task_default_priority_is_refused_when_the_tasks_are_declared(tmp_path: Path) -> None:
    app = unit_app(tmp_path)
    app.conf.task_default_priority = 3
    try:
        with pytest.raises(UnsupportedOption, match="task_default_priority"):
            app.finalize()
    finally:
        app.close()


@pytest.mark.parametrize("option", ["acks_late", "acks_on_failure_or_timeout", "reject_on_worker_lost"])
def test_a_task_that_turns_off_late_ack_or_redelivery_is_refused_when_declared(
    app: Celery, option: str
) -> None:
    with pytest.raises(UnsupportedOption, match=rf"task tests\.early: {option}=False is not supported"):

        @app.task(name="tests.early", shared=False, **{option: False})
        def early() -> None: ...


def test_an_app_that_turns_off_late_ack_is_refused_when_its_tasks_are_declared(tmp_path: Path) -> None:
    app = unit_app(tmp_path)
    app.conf.task_acks_late = False
    try:
        with pytest.raises(UnsupportedOption, match="acks_late=False"):
            app.finalize()
    finally:
        app.close()


@pytest.mark.parametrize("priority", [0, 5, 9, "5"])
def test_any_priority_but_none_is_refused(priority: Any) -> None:
    with pytest.raises(UnsupportedOption) as refused:
        check_priority(priority, "task tests.x")
    assert isinstance(refused.value, ValueError) and isinstance(refused.value, PermanentError)
    assert "route urgent work to its own queue" in str(refused.value)


def test_no_priority_passes(app: Celery) -> None:
    check_priority(None, "task tests.x")

    @app.task(name="tests.plain", shared=False)
    def plain() -> None: ...

    assert plain.priority is None


@pytest.mark.parametrize(
    "publish",
    [
        pytest.param(lambda app: app.tasks["tests.ok"].apply_async(priority=5), id="apply_async"),
        pytest.param(lambda app: app.send_task("tests.ok", priority=5), id="send_task"),
        pytest.param(lambda app: signature("tests.ok", app=app, priority=5).apply_async(), id="signature"),
        pytest.param(lambda app: app.tasks["tests.ok"].si().set(priority=5).delay(), id="signature.set"),
    ],
)
def test_a_publish_with_a_priority_is_refused_before_any_connection(app: Celery, publish: Any) -> None:
    """The unit app's broker is unreachable: refusing before connecting is the only way to pass."""

    @app.task(name="tests.ok", shared=False)
    def ok() -> None: ...

    with pytest.raises(UnsupportedOption, match="own queue"):
        publish(app)


def test_a_bad_rate_limit_is_refused_when_the_task_is_declared(app: Celery) -> None:
    with pytest.raises(ValueError, match=r"task tests\.rated: rate_limit='5/x' is not a rate"):

        @app.task(name="tests.rated", rate_limit="5/x", shared=False)
        def rated() -> None: ...


# -- one size limit --------------------------------------------------------------------------


class RecordingProducer:
    """What kombu's ``Producer.publish`` would be handed."""

    serializer = "json"

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []
        self.connection = "the producer's connection"

    def publish(self, body: Any, **options: Any) -> str:
        self.published.append({"body": body, **options})
        return "published"


def test_a_body_within_the_limit_is_serialized_once_and_handed_to_kombu_as_bytes() -> None:
    producer = RecordingProducer()
    body = ([1, "two"], {"three": 3}, {"callbacks": None})
    limited = SizeLimitedProducer(producer, limit=1000, name="tests.ok")

    assert limited.publish(body, serializer="json", exchange="", routing_key="orders") == "published"

    [sent] = producer.published
    assert sent["body"] == json.dumps(body).encode()
    assert sent["content_type"] == "application/json" and sent["content_encoding"] == "utf-8"
    assert sent["routing_key"] == "orders"
    assert limited.connection == "the producer's connection"  # the rest is the producer's


def test_a_body_over_the_limit_is_refused_and_not_handed_to_kombu() -> None:
    producer = RecordingProducer()
    limited = SizeLimitedProducer(producer, limit=1024, name="tests.ok")
    with pytest.raises(MessageTooLarge, match=r"task tests\.ok: body of \d+ bytes is over the limit of 1024"):
        limited.publish((["x" * 2000], {}, None), serializer="json")
    assert producer.published == []


def test_a_body_of_exactly_the_limit_passes_one_byte_more_does_not() -> None:
    check_body_size(1024, 1024, "tests.ok")
    with pytest.raises(MessageTooLarge, match="PLATFORM_MAX_MESSAGE_BYTES"):
        check_body_size(1025, 1024, "tests.ok")


def test_tasks_and_events_share_one_size_error() -> None:
    assert EventTooLarge is MessageTooLarge
    assert issubclass(MessageTooLarge, PermanentError) and issubclass(MessageTooLarge, ValueError)
