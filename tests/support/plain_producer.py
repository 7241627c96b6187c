"""A Celery producer that does not import the platform: the README's recipe, run as a script.

    python -m tests.support.plain_producer BROKER_URL QUEUE[,QUEUE...]

It publishes with stock Celery only (no ``config``, ``workers`` or ``tasks``
import; it checks that before printing), prints the task ids as JSON
(``{"ok": ..., "flaky": ..., "permanent": ...}``) and exits 0:

- ``ok``: ``app.send_task(name, queue="orders")``;
- ``flaky``: a task declared here with ``@app.task(queue="orders")`` and called
  with ``.delay()`` (its body runs on the platform's worker, not here);
- ``permanent``: ``app.send_task(name, exchange="platform.tasks", routing_key="orders")``.
"""

from __future__ import annotations

import json
import sys
import warnings

from celery import Celery
from kombu import Exchange, Queue


def producer(broker_url: str, queues: list[str]) -> Celery:
    """The recipe: the platform's queues, never declared by the producer."""
    tasks_exchange = Exchange("platform.tasks", type="direct")
    app = Celery("shop", broker=broker_url)
    app.conf.update(
        # The platform declares its queues (quorum, with dead-lettering); a producer
        # that declared them with its own arguments would get PRECONDITION_FAILED.
        task_queues=[Queue(name, tasks_exchange, routing_key=name, no_declare=True) for name in queues],
        task_default_queue="default",
        task_create_missing_queues=False,
        broker_transport_options={"confirm_publish": True},
    )
    return app


def main(argv: list[str]) -> int:
    broker_url, queues = argv[0], argv[1].split(",")
    app = producer(broker_url, queues)
    with warnings.catch_warnings():
        # Celery 5 deprecates a task's own queue= option (removal in 6.0); it still works.
        warnings.simplefilter("ignore")

        @app.task(name="tests.flaky", queue="orders")
        def flaky(fail_times: int) -> None:  # runs on the platform's worker
            raise NotImplementedError

    ids = {
        "ok": app.send_task("tests.ok", args=["plain"], queue="orders").id,
        "flaky": flaky.delay(1).id,
        "permanent": app.send_task("tests.permanent", exchange="platform.tasks", routing_key="orders").id,
    }
    ours = sorted(m for m in sys.modules if m.split(".")[0] in {"config", "workers", "tasks"})
    if ours:
        print(f"the plain producer imported platform modules: {ours}", file=sys.stderr)
        return 1
    print(json.dumps(ids))
    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
