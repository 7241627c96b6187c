"""``python -m workers.ops.alerts`` against a real broker, posting to a local HTTP receiver."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.conftest import management_url
from tests.integration.test_dlq_cli import run_cli, seed
from tests.support.messages import celery_message
from tests.support.wait import wait_for
from tests.support.worker import ROOT

pytestmark = pytest.mark.broker


class Receiver:
    """A Slack-like webhook on a free local port that records every JSON body."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/platform"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        return [body["text"] for body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()  # shutdown() stops serving; only this closes the listening socket


def checks_done(log: Path) -> int:
    return log.read_text().count("alert check done") if log.exists() else 0


def test_the_webhook_hears_once_per_condition_with_queue_count_group_and_flower_link(
    vhost, platform_env: dict[str, str], tmp_path: Path, receiver: Receiver
):
    """Given the alert runner checking every second (inflow threshold 3, depth
    threshold 5): empty queues post nothing; 2 dead letters post one "no longer
    empty" alert naming orders.dlq, 2, the top group and the Flower DLQ link;
    2 more post one inflow alert; 6 waiting messages on payments post one depth
    alert; and five more checks with all conditions still true post nothing more."""
    env = {
        **platform_env,
        "PLATFORM_MANAGEMENT_URL": management_url(),
        "PLATFORM_RUN_DIR": str(tmp_path / "run"),
        "PLATFORM_ALERT_WEBHOOK_URL": receiver.url,
        "PLATFORM_ALERT_INTERVAL": "1",
        "PLATFORM_ALERT_DLQ_INFLOW_PER_HOUR": "3",
        "PLATFORM_ALERT_QUEUE_DEPTH": "5",
        "PLATFORM_FLOWER_URL": "http://flower.example:5555",
    }
    assert run_cli(env, "topology", "declare").returncode == 0
    log = tmp_path / "alerts.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.ops.alerts"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: checks_done(log) >= 3, timeout=60, message=lambda: f"3 checks; log:\n{log.read_text()}"
        )
        assert receiver.received == [], "empty queues alert nothing"

        seed(vhost, task="tests.permanent", error_type="workers.errors.PermanentError")
        seed(vhost, task="tests.permanent", error_type="workers.errors.PermanentError")
        # The management API refreshes its counts every 5 s.
        wait_for(lambda: len(receiver.received) >= 1, timeout=30, message="the not-empty alert")
        [text] = receiver.texts()
        assert "orders.dlq is no longer empty: 2 dead letters" in text
        assert "tests.permanent · workers.errors.PermanentError" in text
        assert "http://flower.example:5555/dlq/orders" in text

        seed(vhost, task="tests.permanent", error_type="workers.errors.PermanentError")
        seed(vhost, task="tests.permanent", error_type="workers.errors.PermanentError")
        body, headers = celery_message("tests.ok")
        for _ in range(6):
            vhost.publish("payments", body, headers=headers, exchange="platform.tasks")
        wait_for(
            lambda: len(receiver.received) >= 3, timeout=30, message=lambda: f"3 alerts: {receiver.texts()}"
        )
        after = checks_done(log)
        wait_for(lambda: checks_done(log) >= after + 5, timeout=60, message="five more checks")
    finally:
        process.terminate()
        process.wait(timeout=10)
    texts = receiver.texts()
    assert len(texts) == 3, texts
    assert "4 dead letters entered orders.dlq in the last hour (more than 3)" in texts[1] + texts[2]
    assert "payments holds 6 ready messages (more than 5)" in texts[1] + texts[2]
