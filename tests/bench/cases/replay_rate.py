"""Case 7, replay rate: moving N dead letters from ``bench.dlq`` back to ``bench``.

Each side gets a fresh vhost holding N dead letters of a no-op task (with the
headers a platform worker writes, a traceback included), seeded with
pipelined confirmed publishes, and moves all of them in a fresh process
(:mod:`tests.bench.tools.mover`), with the same guarantee on both sides: get,
publish a copy, wait for that publish's confirm, then ack the dead letter.

- ``platform``: the platform's topology declared in the vhost (``bench`` a
  quorum queue, ``bench.dlq`` a classic one), then :func:`workers.ops.dlq.replaying.replay`,
  the code path of ``celery -A config dlq replay bench``: filter matching,
  header rewriting (fresh retry budget, ``x-replay-count``), and the re-failure
  watch (a temporary queue on the dead-letter exchange, read every 10 letters).
- ``raw``: a quorum ``bench`` and a classic ``bench.dlq``, moved by a py-amqp
  loop that copies each message as it is.

Afterwards ``bench`` must hold N and ``bench.dlq`` none, else the round fails.
"""

from __future__ import annotations

from tests.bench.broker import QueueProbe, dead_letters, declare_queue, fresh_vhost, publish_pipelined
from tests.bench.processes import run_tool
from tests.bench.runner import Case, Metric, Ratio, Side, SideRun
from tests.bench.sizes import Sizes
from tests.bench.systems import PLATFORM, System

#: The work queue whose dead letters are moved (the platform's ``bench`` queue).
QUEUE = "bench"
#: Its dead-letter queue.
DEAD_LETTER_QUEUE = f"{QUEUE}.dlq"

RAW = System("raw", "raw", "raw py-amqp move loop: basic_get, publish, wait for its confirm, ack")


def replay_once(system: System, letters: int, run: SideRun) -> dict[str, float]:
    """Seed ``letters`` dead letters in a fresh vhost and time ``system`` moving them all back."""
    with fresh_vhost() as vhost:
        env = system.environment(vhost, run.folder, **run.profile_environment())
        if system.kind == "platform":
            system.declare(vhost, env)
        else:
            declare_queue(vhost, QUEUE, {"x-queue-type": "quorum"})
            declare_queue(vhost, DEAD_LETTER_QUEUE, {"x-queue-type": "classic"})
        publish_pipelined(vhost, "", DEAD_LETTER_QUEUE, dead_letters(QUEUE, letters))
        with QueueProbe(vhost) as probe:
            seeded = probe.ready(DEAD_LETTER_QUEUE)
            if seeded != letters:
                raise RuntimeError(f"{seeded} of {letters} dead letters seeded in {DEAD_LETTER_QUEUE}")
            result = run_tool("mover", env, [system.kind, QUEUE], run.folder, 120 + letters / 20)
            moved, left = probe.ready(QUEUE), probe.ready(DEAD_LETTER_QUEUE)
    if result["moved"] != letters or moved != letters or left:
        raise RuntimeError(
            f"moved {result['moved']} of {letters}: {QUEUE} holds {moved}, {DEAD_LETTER_QUEUE} {left}"
        )
    return {"throughput": letters / result["seconds"], "seconds": result["seconds"]}


def replay_side(name: str, description: str, system: System) -> Side:
    def measure(run: SideRun) -> dict[str, float]:
        return replay_once(system, run.sizes.replay_letters, run)

    return Side(name, description, measure)


def case(sizes: Sizes) -> Case:
    return Case(
        name="replay_rate",
        title=f"replay {sizes.replay_letters:,} dead letters from bench.dlq back to bench",
        sides=[
            replay_side(
                "platform",
                "platform replay (workers.ops.dlq.replaying.replay, as `celery -A config dlq replay bench`)",
                PLATFORM,
            ),
            replay_side("raw", RAW.description, RAW),
        ],
        metrics=[
            Metric("throughput", "letters/s", higher_is_better=True),
            Metric("seconds", "s", higher_is_better=False),
        ],
        ratios=[Ratio("throughput", "platform", "raw", 0.5, ">=", "must")],
        profile_side="platform",
        notes=[
            "both sides wait for each copy's confirm before acking its dead letter, one letter at a time; "
            "bench is a quorum queue and bench.dlq a classic one on both sides",
            "the platform side also rewrites headers and reads its re-failure watch queue every 10 letters",
        ],
    )
