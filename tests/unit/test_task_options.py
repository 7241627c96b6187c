"""PlatformTask options: checked when the task is declared; call > task > settings.

Failures are observed as a user of the task sees them: the task runs in this
process through Celery's tracer as a pool process runs it (not the eager path,
which is stock Celery) and its outcome is the verdict the worker's main process gets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from config.settings import SettingsError, load_settings
from tests.unit.fakes import run_attempt, unit_app
from workers.delivery.verdict import DeadLetterNow, RetryLater
from workers.errors import TransientError


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Celery]:
    """Settings: retry_base 2 s, max_retries 2, max delay 60 s, no jitter, KeyError permanent."""
    app = unit_app(tmp_path, retry_base=2.0, max_retries=2, extra_permanent=("builtins.KeyError",))
    app.finalize()
    yield app
    app.close()


def declare(app: Celery, name: str = "tests.declared", **options: Any) -> Any:
    """Declare a task that raises TransientError (or what it is given) on ``app``."""

    @app.task(name=name, bind=True, shared=False, **options)
    def declared(self: Any, error: BaseException | None = None) -> None:
        raise error or TransientError("gateway busy")

    return declared


# -- checked when declared --------------------------------------------------------


BAD_OPTIONS = [
    pytest.param({"retry_base": -1}, "retry base and jitter_max must be >= 0", id="a negative retry_base"),
    pytest.param({"retry_base": "soon"}, "could not convert string to float", id="a retry_base that is no number"),
    pytest.param({"retry_jitter_max": -0.5}, "jitter_max must be >= 0", id="a negative retry_jitter_max"),
    pytest.param({"retry_max_delay": 0}, "max_delay > 0", id="a zero retry_max_delay"),
    pytest.param({"max_retries": -1}, "max_retries and max_unknown_retries must be >= 0", id="negative max_retries"),
    pytest.param({"max_unknown_retries": -2}, "must be >= 0", id="negative max_unknown_retries"),
    pytest.param({"max_retries": "many"}, "invalid literal for int", id="max_retries that is no number"),
    pytest.param({"classify_error": "transient"}, "classify_error must be callable", id="a classify_error not callable"),
]  # fmt: skip


@pytest.mark.parametrize(("options", "problem"), BAD_OPTIONS)
def test_a_bad_option_fails_when_the_task_is_declared_naming_the_task(
    app: Celery, options: dict[str, Any], problem: str
) -> None:
    """Given a finalized app, declaring a task with a bad option raises ValueError
    at once, naming the task and the problem, not when the task first fails."""
    with pytest.raises(ValueError, match="^task tests.declared: ") as raised:
        declare(app, **options)
    assert problem in str(raised.value)


@pytest.mark.parametrize(("options", "problem"), BAD_OPTIONS[:2])
def test_a_bad_option_of_a_task_declared_before_the_app_is_finalized_fails_at_finalize(
    tmp_path: Path, options: dict[str, Any], problem: str
) -> None:
    """Given an app not finalized yet (Celery declares tasks lazily), the bad option
    fails as soon as the app is finalized, still naming the task."""
    app = unit_app(tmp_path, main="lazy")
    try:
        declare(app, **options)
        with pytest.raises(ValueError, match=f"^task tests.declared: .*{problem}"):
            app.finalize()
    finally:
        app.close()


def test_an_unimportable_exception_in_the_settings_stops_start_up_naming_the_variable() -> None:
    """Given PLATFORM_EXTRA_TRANSIENT naming a class that does not exist, loading
    the settings fails with one line naming the variable and the bad dotted path
    (before any task is bound, so no task is blamed for it)."""
    with pytest.raises(
        SettingsError, match=r"^PLATFORM_EXTRA_TRANSIENT: 'no_such_module.GatewayBusy' is not an importable"
    ):
        load_settings({"PLATFORM_EXTRA_TRANSIENT": "no_such_module.GatewayBusy"})
    with pytest.raises(
        SettingsError, match=r"^PLATFORM_EXTRA_PERMANENT: 'json.dumps' is not an exception class"
    ):
        load_settings({"PLATFORM_EXTRA_PERMANENT": "json.dumps"})


# -- precedence: call > task > settings ---------------------------------------------


def outcome(task: Any, retries: int, *args: Any) -> tuple[str, float | int]:
    """Run ``task`` as its ``retries + 1``-th attempt: ("retry", delay) or ("dead letter", retries)."""
    verdict = run_attempt(task, retries, args)
    if isinstance(verdict, RetryLater):
        assert verdict.retry_number == retries + 1
        return "retry", verdict.delay
    assert isinstance(verdict, DeadLetterNow), verdict
    return "dead letter", verdict.retries


@pytest.mark.parametrize(
    ("options", "retries", "expected"),
    [
        pytest.param({}, 0, ("retry", 2.0), id="settings: first retry after retry_base"),
        pytest.param({}, 1, ("retry", 4.0), id="settings: second retry after twice retry_base"),
        pytest.param({}, 2, ("dead letter", 2), id="settings: dead letter after max_retries"),
        pytest.param({"retry_base": 0.5}, 0, ("retry", 0.5), id="task over settings: retry_base"),
        pytest.param({"max_retries": 4}, 3, ("retry", 16.0), id="task over settings: max_retries"),
        pytest.param(
            {"max_retries": 4}, 4, ("dead letter", 4), id="task over settings: exhausted at its own max"
        ),
        pytest.param({"retry_max_delay": 3.0}, 1, ("retry", 3.0), id="task over settings: retry_max_delay"),
        pytest.param({"max_retries": 0}, 0, ("dead letter", 0), id="task over settings: no retries at all"),
    ],
)
def test_a_task_option_wins_over_the_setting(
    app: Celery, options: dict[str, Any], retries: int, expected: tuple[str, float | int]
) -> None:
    """Given settings retry_base 2 s and max_retries 2, a transient failure is
    retried or dead-lettered as the task's own options say, else as the settings say."""
    assert outcome(declare(app, **options), retries) == expected


@pytest.mark.parametrize(
    ("countdown", "max_retries", "retries", "expected"),
    [
        pytest.param(3.0, None, 0, ("retry", 3.0), id="call over task: countdown replaces the backoff"),
        pytest.param(3.0, None, 3, ("retry", 3.0), id="call over task: countdown on a later retry"),
        pytest.param(None, 6, 4, ("retry", 8.0), id="call over task: a higher max_retries allows more"),
    ],
)
def test_retry_arguments_win_over_the_task_options(
    app: Celery,
    countdown: float | None,
    max_retries: int | None,
    retries: int,
    expected: tuple[str, float | int],
) -> None:
    """Given a task with retry_base 0.5 and max_retries 4 that calls
    ``self.retry(countdown=..., max_retries=...)``, the call's values decide."""

    @app.task(name="tests.retrying", bind=True, shared=False, retry_base=0.5, max_retries=4)
    def retrying(self: Any) -> None:
        self.retry(countdown=countdown, max_retries=max_retries)

    assert outcome(retrying, retries) == expected


@pytest.mark.parametrize(
    ("max_retries", "retries"),
    [
        pytest.param(0, 0, id="max_retries=0 in the call"),
        pytest.param(None, 4, id="the task's max_retries used up"),
    ],
)
def test_retry_with_no_retries_left_dead_letters_the_tasks_own_failure(
    app: Celery, max_retries: int | None, retries: int
) -> None:
    """Given a task (max_retries 4) calling ``self.retry(exc=TransientError(...))``
    with no retries left, the message is dead-lettered at once, as a transient
    TransientError: not retried further as an unknown failure."""

    @app.task(name="tests.retrying", bind=True, shared=False, max_retries=4)
    def retrying(self: Any) -> None:
        self.retry(exc=TransientError("gateway busy"), max_retries=max_retries)

    verdict = run_attempt(retrying, retries)
    assert isinstance(verdict, DeadLetterNow)
    assert (verdict.retries, verdict.failure.error_class, verdict.failure.error_type) == (
        retries,
        "transient",
        "workers.errors.TransientError",
    )


@pytest.mark.parametrize(
    ("options", "error", "expected"),
    [
        pytest.param({}, KeyError("sku"), ("dead letter", 0), id="settings over built-in: KeyError is permanent"),
        pytest.param({"transient_errors": (KeyError,)}, KeyError("sku"), ("retry", 2.0),
                     id="task over settings: its transient KeyError is retried"),
        pytest.param({"permanent_errors": ("builtins.TimeoutError",)}, TimeoutError("slow"), ("dead letter", 0),
                     id="task over built-in: a dotted path makes TimeoutError permanent"),
        pytest.param({"classify_error": lambda exc: "permanent"}, TransientError("busy"), ("dead letter", 0),
                     id="the task's classify_error decides first"),
        pytest.param({"classify_error": lambda exc: None}, TransientError("busy"), ("retry", 2.0),
                     id="a classify_error returning None falls through to the rules"),
    ],
)  # fmt: skip
def test_the_tasks_classifier_rules_win_over_the_settings_and_the_built_in_table(
    app: Celery, options: dict[str, Any], error: BaseException, expected: tuple[str, float | int]
) -> None:
    """Given settings that make KeyError permanent, a failure is classified by the
    task's decider, then its own error types, then the settings, then the built-ins."""
    assert outcome(declare(app, **options), 0, error) == expected


@pytest.mark.parametrize(
    ("setting", "option", "expected"),
    [
        pytest.param(True, None, True, id="the setting when the task says nothing"),
        pytest.param(False, None, False, id="the setting off"),
        pytest.param(False, True, True, id="the task's own idempotent=True"),
        pytest.param(True, False, False, id="the task's own idempotent=False"),
    ],
)
def test_idempotent_defaults_to_the_setting(
    tmp_path: Path, setting: bool, option: bool | None, expected: bool
) -> None:
    """A task is idempotent as it says, else as PLATFORM_IDEMPOTENCY says."""
    app = unit_app(tmp_path, main="idempotency", idempotency=setting)
    app.finalize()
    try:
        assert declare(app, idempotent=option).idempotent is expected
    finally:
        app.close()


# -- what is refused -----------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"args": (1,)}, id="new args"),
        pytest.param({"kwargs": {"amount": 2}}, id="new kwargs"),
    ],
)
def test_retry_refuses_to_change_the_message(app: Celery, arguments: dict[str, Any]) -> None:
    """self.retry() re-runs the same message: new args or kwargs are refused."""
    task = declare(app)
    with pytest.raises(ValueError, match="retry\\(\\) re-runs the same message"):
        task.retry(**arguments)
