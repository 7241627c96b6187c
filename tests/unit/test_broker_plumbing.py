"""workers.broker: pipelined confirms (ConfirmWindow) and URLs fit to print (masked_url).

ConfirmWindow runs on a fake py-amqp channel and connection: the test scripts
what the broker sends back (acks, nacks, returns, "multiple" acks), and the
connection delivers one of those frames each time the window waits for the
broker, as ``drain_events`` does.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import amqp
import pytest
from amqp.exceptions import ChannelError
from kombu import Connection

from workers.broker import ConfirmWindow, masked_url
from workers.errors import PublishError


@dataclass
class Reply:
    """A frame the broker sends: ``basic_ack`` / ``basic_nack`` (tag, multiple) or ``basic_return``."""

    method: str
    args: tuple[Any, ...]


def ack(tag: int, multiple: bool = False) -> Reply:
    return Reply("basic_ack", (tag, multiple))


def nack(tag: int, multiple: bool = False) -> Reply:
    return Reply("basic_nack", (tag, multiple))


def returned(routing_key: str) -> Reply:
    """An unroutable mandatory publish coming back (RabbitMQ then acks it too)."""
    error = ChannelError(312, "NO_ROUTE", (60, 40), "Basic.return")
    return Reply("basic_return", (error, "platform.tasks", routing_key, amqp.Message(b"")))


@dataclass
class FakeAmqp:
    """A py-amqp channel and its connection, in one: what was sent, and the broker's replies."""

    replies: list[Reply] = field(default_factory=list)
    #: ``publish <routing key>`` and ``<method> <args>`` in the order they happened.
    log: list[str] = field(default_factory=list)
    confirm_mode: bool = False
    events: defaultdict[str, set[Any]] = field(default_factory=lambda: defaultdict(set))

    # -- the channel
    def confirm_select(self) -> None:
        self.confirm_mode = True

    def basic_publish(self, message: amqp.Message, exchange: str, routing_key: str, **kw: Any) -> None:
        self.log.append(f"publish {routing_key}")

    # -- the connection
    def drain_events(self, timeout: float | None = None) -> None:
        """Deliver the broker's next frame to the channel's handlers, or time out."""
        if not self.replies:
            time.sleep(min(timeout or 0.0, 0.01))
            raise TimeoutError("timed out")
        reply = self.replies.pop(0)
        self.log.append(
            f"{reply.method} {reply.args[0] if reply.method != 'basic_return' else reply.args[2]}"
        )
        for handler in list(self.events[reply.method]):
            handler(*reply.args)


def window_on(fake: FakeAmqp, **options: Any) -> ConfirmWindow:
    return ConfirmWindow(fake, fake, **{"timeout": 0.05, **options})  # type: ignore[arg-type]


def publish(window: ConfirmWindow, *items: str) -> None:
    for item in items:
        window.publish(amqp.Message(item.encode()), "platform.tasks", f"to-{item}", item=item)


@pytest.mark.parametrize(
    ("replies", "nacked", "returned_keys"),
    [
        pytest.param([ack(1), ack(2), ack(3)], [], [], id="one ack per message"),
        pytest.param([ack(3, multiple=True)], [], [], id="one multiple ack settles all three"),
        pytest.param([ack(2, multiple=True), ack(3)], [], [], id="a multiple ack then a single one"),
        pytest.param([ack(3), ack(1), ack(2)], [], [], id="acks out of order"),
        pytest.param([nack(2), ack(3, multiple=True)], ["b"], [], id="a nack among acks"),
        pytest.param([nack(3, multiple=True)], ["a", "b", "c"], [], id="a multiple nack refuses all three"),
        pytest.param([ack(1), nack(3, multiple=True)], ["b", "c"], [], id="a multiple nack after an ack"),
        pytest.param([returned("to-b"), ack(1), ack(2), ack(3)], [], ["to-b"],
                     id="an unroutable message is returned, then acked"),
        pytest.param([ack(9), ack(3, multiple=True)], [], [], id="an ack for an unknown tag is ignored"),
    ],
)  # fmt: skip
def test_wait_all_returns_once_every_message_is_settled_and_says_what_was_refused(
    replies: list[Reply], nacked: list[str], returned_keys: list[str]
) -> None:
    """Given three messages a, b, c in flight and the broker's replies, wait_all
    returns when all are settled; the nacked items and returned routing keys are
    listed, and every message counts as confirmed."""
    fake = FakeAmqp(replies=list(replies))
    window = window_on(fake)
    publish(window, "a", "b", "c")

    window.wait_all()

    assert window.nacked == nacked
    assert window.returned == returned_keys
    assert (window.sent, window.confirmed, window.outstanding) == (3, 3, {})
    assert fake.confirm_mode is True


def test_a_full_window_waits_for_a_confirm_before_the_next_publish() -> None:
    """Given a window of 2, the third publish waits until the broker confirmed one."""
    fake = FakeAmqp(replies=[ack(1), ack(2), ack(3)])
    window = window_on(fake, window=2)

    publish(window, "a", "b", "c")
    window.wait_all()

    assert fake.log == [
        "publish to-a",
        "publish to-b",
        "basic_ack 1",
        "publish to-c",
        "basic_ack 2",
        "basic_ack 3",
    ]


def test_a_full_window_and_a_silent_broker_raise_publish_error_without_publishing_more() -> None:
    """Given a window of 2 and a broker that confirms nothing, the third publish
    raises PublishError within the timeout and is not sent."""
    fake = FakeAmqp()
    window = window_on(fake, window=2)
    publish(window, "a", "b")

    started = time.monotonic()
    with pytest.raises(PublishError, match=r"2 messages not confirmed within 0.05s"):
        publish(window, "c")
    assert time.monotonic() - started < 1.0
    assert fake.log == ["publish to-a", "publish to-b"]


@pytest.mark.parametrize(
    ("replies", "unconfirmed"),
    [
        pytest.param([], 3, id="the broker confirms nothing"),
        pytest.param([ack(1)], 2, id="the broker stops after one ack"),
        pytest.param([ack(2, multiple=True)], 1, id="the broker stops after a multiple ack"),
    ],
)
def test_wait_all_raises_publish_error_when_the_broker_goes_silent(
    replies: list[Reply], unconfirmed: int
) -> None:
    """Given confirms that stop coming, wait_all raises PublishError saying how many
    messages may or may not have reached the broker, within the timeout."""
    window = window_on(FakeAmqp(replies=list(replies)))
    publish(window, "a", "b", "c")

    with pytest.raises(
        PublishError, match=f"^{unconfirmed} messages not confirmed within 0.05s; they may or may not"
    ):
        window.wait_all()
    assert window.confirmed == 3 - unconfirmed


def test_a_channel_already_in_confirm_mode_continues_its_delivery_tags() -> None:
    """Given a channel that published 4 confirmed messages before (select=False,
    first_tag=5), the window neither selects confirm mode again nor mistakes
    the broker's tags."""
    fake = FakeAmqp(replies=[ack(6, multiple=True)])
    window = window_on(fake, select=False, first_tag=5)
    publish(window, "a", "b")

    window.wait_all()

    assert fake.confirm_mode is False
    assert (window.confirmed, window.nacked) == (2, [])


def test_waiting_with_nothing_in_flight_returns_at_once() -> None:
    """wait_all with nothing published does not wait for the broker."""
    fake = FakeAmqp()
    window_on(fake, timeout=30).wait_all()
    assert fake.log == []


# -- masked_url ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("amqp://guest:s3cret@rabbit:5672//", "amqp://guest:**@rabbit:5672//", id="amqp with a password"),
        pytest.param("amqps://ops:s3cret@rabbit:5671/prod", "amqps://ops:**@rabbit:5671/prod", id="amqps"),
        pytest.param("amqp://ops:p%40ss%2Fw0rd@rabbit/prod", "amqp://ops:**@rabbit/prod",
                     id="a percent-encoded password"),
        pytest.param("amqp://ops:s3cret@[::1]:5672//", "amqp://ops:**@[::1]:5672//", id="an IPv6 host"),
        pytest.param("amqp://ops:@rabbit//", "amqp://ops:**@rabbit//", id="an empty password"),
        pytest.param("amqp://:s3cret@rabbit//", "amqp://:**@rabbit//", id="a password without a user"),
        pytest.param("amqp://guest@rabbit//", "amqp://guest@rabbit//", id="a user without a password"),
        pytest.param("amqp://rabbit:5672//", "amqp://rabbit:5672//", id="amqp without credentials"),
        pytest.param("http://guest:s3cret@127.0.0.1:15672/api/", "http://guest:**@127.0.0.1:15672/api/",
                     id="the management API with a password"),
        pytest.param("https://ops:s3cret@mgmt.example/api/?x=1", "https://ops:**@mgmt.example/api/?x=1",
                     id="https with a query"),
        pytest.param("http://127.0.0.1:15672/api/", "http://127.0.0.1:15672/api/", id="http without credentials"),
        pytest.param("amqp://ops:se/cret@rabbit//", "amqp://ops:**@rabbit//", id="a password with a raw slash"),
        pytest.param("amqp://ops:se@cret@rabbit//", "amqp://ops:**@rabbit//", id="a password with a raw @"),
        pytest.param("amqp://p:s3cret@h:5681/v;amqp://p:s3cret@h:5682/v", "amqp://p:**@h:5681/v;amqp://p:**@h:5682/v",
                     id="a failover list of two nodes"),
    ],
)  # fmt: skip
def test_a_url_is_printed_with_its_password_masked(url: str, shown: str) -> None:
    """A URL's password is replaced by ** wherever it is printed; the rest stays."""
    assert masked_url(url) == shown
    assert "s3cret" not in masked_url(url) and "cret" not in masked_url(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param(
            "amqp://guest:s3cret@rabbit:5672//", "amqp://guest:**@rabbit:5672//", id="with a password"
        ),
        pytest.param(
            "amqp://rabbit:5672//", "amqp://guest:**@rabbit:5672//", id="kombu's default guest login"
        ),
    ],
)
def test_a_kombu_connection_is_printed_with_its_password_masked(url: str, shown: str) -> None:
    """A kombu connection prints as its URL with the password masked."""
    assert masked_url(Connection(url)) == shown


def test_every_password_of_a_failover_list_in_a_text_is_masked_and_every_host_stays() -> None:
    """An error message naming every node of a cluster shows each host, no password."""
    from workers.broker import masked_text

    text = "could not connect to amqp://p:s3cret@h:5681/v;amqp://p:s3cret@h:5682/v: refused"
    shown = masked_text(text)
    assert "s3cret" not in shown
    assert "h:5681/v" in shown and "h:5682/v" in shown
