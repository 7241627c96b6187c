"""The order saga while worker processes are SIGKILLed at random (main and pool).

``SAGA_CHAOS_SAGAS`` sagas (45 inside ``make test``; ``make saga-chaos`` runs
1,000) of a mix of orders (in stock, out of stock, declined) go through two
workers; after every 15 orders placed, and every two seconds after that, a random
pool process or a whole worker (its main process and pool) is SIGKILLed, and a killed worker is started again.
Then every saga must end and the invariants hold (:mod:`tasks.saga.invariants`):
no money kept for a cancelled order, no stock held for one not confirmed,
charges - refunds == confirmed total, each transition once in the log.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.support.sagas import SAGA_QUEUES, all_ended, order, saga_environment, state, states
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker

#: How many sagas (the short form by default).
SAGAS = int(os.environ.get("SAGA_CHAOS_SAGAS", "45"))
#: Seconds between two kills once every order is placed.
KILL_EVERY = 2.0
#: Orders placed between two kills.
CHUNK = 15


@pytest.fixture
def chaos_env(platform_env: dict[str, str]) -> dict[str, str]:
    # Deadlines long enough that most sagas finish between kills, short enough that a
    # saga whose message went poison still ends (timed out, then compensated).
    return saga_environment(platform_env, step_deadline=max(20, SAGAS / 25), PLATFORM_DELIVERY_LIMIT="5")


@pytest.fixture
def chaos_app(chaos_env: dict[str, str]) -> Iterator:
    from config.app import create_app
    from config.settings import load_settings

    app = create_app(load_settings(chaos_env), main="test-saga-chaos")
    yield app
    app.close()


def test_sagas_end_consistent_while_workers_are_killed_at_random(chaos_env, chaos_app, start_worker) -> None:
    """Given two saga workers and SAGA_CHAOS_SAGAS orders (in stock, out of stock,
    declined), when pool processes and whole workers are SIGKILLed every 15 orders
    placed and every two seconds after that until the sagas settle, then every saga ends, and no money or stock is
    kept that the invariants forbid."""
    from tasks.saga.invariants import check
    from tasks.saga.inventory import restock
    from tasks.saga.orders import place_order

    rng = random.Random(13)
    restock({"pen": 10 * SAGAS, "lamp": 0}, on=chaos_app)
    workers = [start_worker(queues=SAGA_QUEUES, concurrency=2, **chaos_env) for _ in range(2)]
    mix = [("pen", "visa")] * 6 + [("lamp", "visa")] * 2 + [("pen", "declined")]
    kills: Counter[str] = Counter()

    def kill_one() -> None:
        worker = rng.choice(workers)
        children = worker.child_pids()
        if children and rng.random() < 0.7:
            os.kill(rng.choice(children), signal.SIGKILL)
            kills["pool"] += 1
        else:
            worker.kill_main()
            kills["main"] += 1
            worker.start()

    for n in range(SAGAS):
        sku, card = rng.choice(mix)
        place_order(order(n, sku=sku, card=card), app=chaos_app)
        if n % CHUNK == CHUNK - 1:
            kill_one()  # while the sagas placed so far are in flight
    deadline = time.monotonic() + 120 + SAGAS * 0.5
    while time.monotonic() < deadline:
        due = time.monotonic() + KILL_EVERY
        wait_for(
            lambda: all_ended(chaos_env, SAGAS) or time.monotonic() >= due,  # noqa: B023 - read at once
            timeout=KILL_EVERY + 30,
            interval=0.2,
        )
        if all_ended(chaos_env, SAGAS):
            break
        kill_one()
    ended = states(chaos_env)
    print(f"kills: {dict(kills)}; sagas: {dict(Counter(ended.values()))}")
    assert all_ended(chaos_env, SAGAS), f"not ended: {Counter(s for s in ended.values())}"
    assert kills, "nothing was killed: the run was too short to test anything"
    with state(chaos_env) as c:
        problems = check(c, "?")
    assert problems == []
