"""A real RabbitMQ for tests: one fresh vhost per test, removed afterwards.

Under CI=true a missing broker fails the test; locally it skips.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import amqp

from workers.frames import tolerant_frame_handler

#: The broker the tests use (host part only; vhosts are made per test).
AMQP_HOST = os.environ.get("TEST_AMQP_HOST", "127.0.0.1:5672")
AMQP_USER = os.environ.get("TEST_AMQP_USER", "guest")
AMQP_PASSWORD = os.environ.get("TEST_AMQP_PASSWORD", "guest")
MANAGEMENT_URL = os.environ.get("TEST_MANAGEMENT_URL", "http://127.0.0.1:15672/api/")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def broker_problem() -> str | None:
    """Why the broker can't be used, or None when it can."""
    try:
        connection = amqp.Connection(AMQP_HOST, userid=AMQP_USER, password=AMQP_PASSWORD, connect_timeout=3)
        connection.connect()
        connection.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no broker"
        return f"RabbitMQ at {AMQP_HOST} is not reachable: {exc!r}"
    try:
        management("GET", "overview")
    except Exception as exc:  # noqa: BLE001
        return (
            f"RabbitMQ management API at {MANAGEMENT_URL} is not reachable ({exc!r}); "
            "run: rabbitmq-plugins enable rabbitmq_management"
        )
    return None


def management(method: str, path: str, body: Any = None, timeout: float = 15) -> Any:
    """Call the management HTTP API; returns the decoded JSON (or None)."""
    url = MANAGEMENT_URL.rstrip("/") + "/" + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    token = base64.b64encode(f"{AMQP_USER}:{AMQP_PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


@dataclass
class Vhost:
    """A throw-away vhost on the test broker."""

    name: str

    @property
    def url(self) -> str:
        return f"amqp://{AMQP_USER}:{AMQP_PASSWORD}@{AMQP_HOST}/{urllib.parse.quote(self.name, safe='')}"

    @classmethod
    def create(cls, prefix: str = "test") -> Vhost:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        management("PUT", f"vhosts/{urllib.parse.quote(name, safe='')}", {})
        management(
            "PUT",
            f"permissions/{urllib.parse.quote(name, safe='')}/{AMQP_USER}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        return cls(name)

    def delete(self) -> None:
        try:
            management("DELETE", f"vhosts/{urllib.parse.quote(self.name, safe='')}")
        except urllib.error.HTTPError:
            pass

    def connect(self) -> amqp.Connection:
        host, _, port = AMQP_HOST.partition(":")
        connection = amqp.Connection(
            f"{host}:{port or 5672}",
            userid=AMQP_USER,
            password=AMQP_PASSWORD,
            virtual_host=self.name,
            connect_timeout=5,
            # Read bodies as the bytes that arrived (py-amqp would decode text encodings).
            frame_handler=tolerant_frame_handler,
        )
        connection.connect()
        return connection

    def depth(self, queue: str) -> int:
        """Ready messages in ``queue`` (a passive declare; exact and immediate)."""
        with self.connect() as connection:
            channel = connection.channel()
            _, count, _ = channel.queue_declare(queue, passive=True)
            return count

    def queue_info(self, queue: str) -> dict[str, Any]:
        """The management API's view of ``queue`` (includes unacked counts)."""
        return management("GET", f"queues/{urllib.parse.quote(self.name, safe='')}/{queue}")

    def take_all(self, queue: str) -> list[amqp.Message]:
        """Consume and ack every ready message of ``queue`` (for assertions)."""
        messages = []
        with self.connect() as connection:
            channel = connection.channel()
            while True:
                message = channel.basic_get(queue, no_ack=True)
                if message is None:
                    return messages
                messages.append(message)

    def give_back_until_dead_lettered(self, queue: str, timeout: float = 30) -> None:
        """Take ``queue``'s messages and give them back until RabbitMQ dead-letters them itself.

        A quorum queue counts each give-back as a delivery; past its
        ``x-delivery-limit`` the broker moves the message to the queue's DLQ
        with ``x-death`` reason ``delivery_limit`` (no platform headers).
        """
        from tests.support.wait import wait_for

        with self.connect() as connection:
            channel = connection.channel()

            def empty_after_giving_back() -> bool:
                message = channel.basic_get(queue, no_ack=False)
                if message is not None:
                    channel.basic_reject(message.delivery_tag, requeue=True)
                return message is None and self.depth(f"{queue}.dlq") > 0

            wait_for(
                empty_after_giving_back,
                timeout=timeout,
                message=f"RabbitMQ to dead-letter {queue}'s messages",
            )

    def publish(
        self,
        queue: str,
        body: bytes,
        content_type: str | None = "application/json",
        headers: dict[str, Any] | None = None,
        exchange: str = "",
        **properties: Any,
    ) -> None:
        """Publish raw bytes to ``queue`` (by routing key) with a confirm."""
        with self.connect() as connection:
            channel = connection.channel()
            channel.confirm_select()
            message = amqp.Message(
                body,
                content_type=content_type,
                application_headers=headers or {},
                delivery_mode=2,
                **properties,
            )
            channel.basic_publish_confirm(message, exchange=exchange, routing_key=queue, mandatory=True)
