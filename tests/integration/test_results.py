"""Results, states and canvas as a Celery client sees them, through retries, dead letters and replays.

Real RabbitMQ (a fresh vhost per test), real ``celery worker`` processes, the
machine's Redis as result backend (and Celery's ``rpc://`` backend where it
applies). A client acts on what ``AsyncResult`` says, so that is what is
asserted: the state while a task backs off, the exception ``.get()`` raises,
the value a chain hands on, how often an errback ran.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import chain, chord, group, signature

from config.app import create_app
from config.settings import load_settings
from tests.support.cli import run_cli
from tests.support.ledger import events
from tests.support.redis_backend import require_redis
from tests.support.result_tasks import GatewayDown, InvalidOrder
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker

TASK_MODULES = "tests.support.tasks,tests.support.result_tasks"


@pytest.fixture(params=["redis", "rpc"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        return require_redis()
    return "rpc://"


@pytest.fixture
def redis_backend() -> str:
    return require_redis()


@pytest.fixture
def results_env(platform_env: dict[str, str]) -> Callable[[str], dict[str, str]]:
    def env_for(backend_url: str) -> dict[str, str]:
        return {**platform_env, "PLATFORM_TASK_MODULES": TASK_MODULES, "CELERY_RESULT_BACKEND": backend_url}

    return env_for


class Platform:
    """A worker and a client app for one test, both with the same result backend."""

    def __init__(
        self, results_env: Callable[[str], dict[str, str]], start_worker: Callable[..., Any]
    ) -> None:
        self._env_for = results_env
        self._start_worker = start_worker
        self.apps: list[Any] = []
        self.worker: Any = None

    def __call__(self, backend_url: str, queues: str = "orders") -> Any:
        env = self._env_for(backend_url)
        self.worker = self._start_worker(queues=queues, **env)
        app = create_app(load_settings(env), main="results-client")
        self.apps.append(app)
        return app


@pytest.fixture
def platform(results_env, start_worker) -> Iterator[Platform]:
    """``platform(backend_url)``: start a worker and return a client app, both with that backend."""
    started = Platform(results_env, start_worker)
    yield started
    gc.collect()  # results still referenced from tracebacks unsubscribe now, while the backend is open
    for app in started.apps:
        close_backend(app.backend)
        app.close()


def close_backend(backend: Any) -> None:
    """Close the result backend's own connections (``app.close()`` leaves them open)."""
    consumer = getattr(backend, "result_consumer", None)
    if consumer is not None:
        try:
            consumer.stop()
        except AttributeError:  # it never started consuming
            pass
    client = backend.__dict__.get("client")  # the Redis backend's client, if it was made
    if client is not None:
        client.connection_pool.disconnect()


def step(name: str, app: Any, *args: Any) -> Any:
    """A signature of a test task routed to ``orders`` (test tasks' module names no queue)."""
    return signature(name, args=args, app=app).set(queue="orders")


def states_until_ready(result: Any, timeout: float) -> list[str]:
    """Every distinct state ``result`` showed, in order, until it was ready."""
    seen: list[str] = []

    def ready() -> bool:
        state = result.state
        if not seen or seen[-1] != state:
            seen.append(state)
        return state in ("SUCCESS", "FAILURE", "REVOKED")

    wait_for(ready, timeout, interval=0.02, message=lambda: f"{result.id} to be ready (states: {seen})")
    return seen


def test_a_task_shows_retry_while_it_backs_off_and_raises_its_own_exception_when_dead_lettered(
    vhost, platform, backend, tmp_path: Path
):
    """Given a task that always fails with its own transient exception and may
    retry twice, a client sees STARTED/RETRY (never FAILURE) while it backs off,
    then FAILURE once, and .get() raises the task's exception, not the platform's."""
    app = platform(backend)
    result = app.send_task("results.gateway_down", queue="orders")

    seen = states_until_ready(result, timeout=30)

    assert len(events(tmp_path / "ledger.txt", "attempt", result.id)) == 3
    assert seen[-1] == "FAILURE" and "FAILURE" not in seen[:-1], seen
    assert "RETRY" in seen, seen
    with pytest.raises(GatewayDown, match="gateway 7 did not answer"):
        result.get(timeout=10)
    wait_for(lambda: vhost.depth("orders.dlq") == 1, message="the dead letter")


def test_a_redelivered_completed_task_keeps_its_result(vhost, platform, redis_backend, tmp_path: Path):
    """Given a task that completed with a value, when the same task id is
    delivered again, it is not run again and its stored result is still that value."""
    app = platform(redis_backend)
    first = app.send_task("results.answer", queue="orders")
    assert first.get(timeout=20) == {"answer": 42}

    again = app.send_task("results.answer", queue="orders", task_id=first.id)
    wait_for(
        lambda: f"[{first.id}] already completed" in platform.worker.log(),
        message="the worker to skip the second delivery",
    )

    assert len(events(tmp_path / "ledger.txt", "done", first.id)) == 1
    assert (again.state, again.get(timeout=5)) == ("SUCCESS", {"answer": 42})


def test_errbacks_get_the_tasks_exception_once_per_final_failure_not_per_retry_or_replay(
    vhost, platform, redis_backend, results_env, tmp_path: Path
):
    """Given a failing task with an inline errback and an id errback, each runs
    once with the task's own exception (after its retries, not on each), and a
    DLQ replay that fails again does not run them again."""
    ledger = tmp_path / "ledger.txt"
    app = platform(redis_backend)
    errbacks = [step("results.on_error", app), step("results.on_error_id", app)]
    retried = app.send_task("results.gateway_down", queue="orders", link_error=errbacks)
    failed = app.send_task("results.invalid_order", queue="orders", link_error=errbacks)

    for result in (retried, failed):
        wait_for(lambda r=result: events(ledger, "errback-id", r.id), timeout=30, message="the id errback")
    wait_for(lambda: vhost.depth("orders.dlq") == 2, message="both in the DLQ")
    assert [e.extra for e in events(ledger, "errback", retried.id)] == ["GatewayDown"]
    assert [e.extra for e in events(ledger, "errback-id", retried.id)] == ["GatewayDown"]
    assert [e.extra for e in events(ledger, "errback", failed.id)] == ["InvalidOrder"]
    assert [e.extra for e in events(ledger, "errback-id", failed.id)] == ["InvalidOrder"]

    replay = run_cli(results_env(redis_backend), "dlq", "replay", "orders", "--error-class", "permanent")
    assert replay.returncode == 0, replay.stderr
    wait_for(lambda: len(events(ledger, "attempt", failed.id)) == 2, message="the replayed attempt")
    wait_for(lambda: vhost.depth("orders.dlq") == 2, message="the replay to fail into the DLQ again")
    # Another task's errback that does run shows the errback queue is not merely slow.
    probe = app.send_task("results.invalid_order", queue="orders", link_error=errbacks)
    wait_for(lambda: events(ledger, "errback-id", probe.id), timeout=30, message="the probe's id errback")
    assert len(events(ledger, "errback", failed.id)) == 1
    assert len(events(ledger, "errback-id", failed.id)) == 1
    with pytest.raises(InvalidOrder):
        failed.get(timeout=5)


def test_a_chain_goes_through_a_retry_and_a_countdown_step(vhost, platform, backend, tmp_path: Path):
    """Given add(1, 2) | add_flaky(10) (fails once) | add(100) with countdown=0.5,
    the chain's result is 113, each step completed once, nothing dead-lettered."""
    app = platform(backend)
    workflow = chain(
        step("results.add", app, 1, 2),
        step("results.add_flaky", app, 10),
        step("results.add", app, 100).set(countdown=0.5),
    )
    result = workflow.apply_async(queue="orders")

    assert result.get(timeout=30) == 113
    done = [e.extra for e in events(tmp_path / "ledger.txt", "done")]
    assert sorted(done) == ["1+2", "13+100", "3+10"]  # a chained value comes first
    assert vhost.depth("orders.dlq") == 0


def test_a_chain_whose_step_was_dead_lettered_goes_on_after_the_replay(
    vhost, platform, redis_backend, results_env, tmp_path: Path
):
    """Given needs_flag | add(1) whose first step fails for good, when the cause
    is fixed and the DLQ replayed, the chain completes with 6."""
    flag = tmp_path / "flag"
    app = platform(redis_backend)
    workflow = chain(
        step("results.needs_flag", app, str(flag)),
        step("results.add", app, 1),
    )
    result = workflow.apply_async(queue="orders")
    wait_for(lambda: vhost.depth("orders.dlq") == 1, timeout=30, message="the first step in the DLQ")
    with pytest.raises(InvalidOrder):  # Celery's meaning: a chain fails with its failed step
        result.get(timeout=10)

    flag.touch()
    replay = run_cli(results_env(redis_backend), "dlq", "replay", "orders")
    assert replay.returncode == 0, replay.stderr
    after_replay = app.AsyncResult(result.id)
    wait_for(
        lambda: after_replay.state == "SUCCESS", timeout=30, message="the chain to complete after the replay"
    )
    assert after_replay.get(timeout=5) == 6
    assert vhost.depth("orders.dlq") == 0


def test_a_group_and_a_chord_collect_every_value_through_retries(vhost, platform, redis_backend):
    """Given a group and a chord whose members include one that fails once, the
    group's values and the chord's total are complete and right."""
    app = platform(redis_backend)
    members = [
        step("results.add", app, 1, 1),
        step("results.add_flaky", app, 2, 2),
        step("results.add", app, 3, 3),
    ]
    assert group(members).apply_async(queue="orders").get(timeout=30) == [2, 4, 6]

    header = group([m.clone() for m in members])
    outcome = chord(header)(step("results.total", app))
    assert outcome.get(timeout=30) == 12
    assert vhost.depth("orders.dlq") == 0


def test_a_group_collects_every_value_through_retries_with_the_rpc_backend(vhost, platform):
    """Given the rpc:// backend, a group with a member that fails once returns every
    value; a chord is refused at once, by Celery, before anything is sent."""
    app = platform("rpc://")
    members = [
        step("results.add", app, 1, 1),
        step("results.add_flaky", app, 2, 2),
    ]
    assert group(members).apply_async(queue="orders").get(timeout=30) == [2, 4]

    with pytest.raises(NotImplementedError, match="does not support chords"):  # Celery refuses at once
        chord(group([m.clone() for m in members]))(step("results.total", app))


def test_a_redelivered_completed_step_hands_its_recorded_value_to_the_rest_of_the_chain(
    vhost, platform, redis_backend, tmp_path: Path
):
    """Given add(1, 2) that completed with 3, when a chain delivers the same task
    id again with a next step, the step is not run again and the next step gets 3."""
    ledger = tmp_path / "ledger.txt"
    app = platform(redis_backend)
    first = app.send_task("results.add", args=(1, 2), queue="orders")
    assert first.get(timeout=20) == 3

    again = step("results.add", app, 1, 2).set(task_id=first.id)
    result = chain(again, step("results.add", app, 10)).apply_async(queue="orders")

    assert result.get(timeout=20) == 13
    assert [e.extra for e in events(ledger, "done", first.id)] == ["1+2"]


def test_a_revoked_task_waiting_in_the_delay_levels_is_not_run_when_due(
    vhost, platform, redis_backend, tmp_path
):
    """Given a task delayed 2 s and revoked meanwhile, when it comes due the
    worker acks it without running it, and its state is REVOKED."""
    app = platform(redis_backend)
    result = app.send_task("results.answer", queue="orders", countdown=2)
    app.control.revoke(result.id)
    wait_for(
        lambda: (
            f"Discarding revoked task: results.answer[{result.id}]" in platform.worker.log()
            or result.state == "REVOKED"
        ),
        timeout=20,
        message="the worker to discard the revoked task when due",
    )
    wait_for(lambda: result.state == "REVOKED", message="the REVOKED state")
    assert events(tmp_path / "ledger.txt", "done", result.id) == []
    wait_for(lambda: vhost.depth("orders") == 0, message="orders to be empty")
    assert vhost.depth("orders.dlq") == 0
