"""The order in which a worker's next connection tries the nodes of a failover list (pure)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from workers.delivery.failover import NodeMemory, node_of_url, ordered, split_urls

A = "amqp://u:p@127.0.0.1:5681/v"
B = "amqp://u:p@127.0.0.1:5682/v"
C = "amqp://u:p@127.0.0.1:5683/v"


def node(port: int) -> str:
    return f"127.0.0.1:{port}"


def connection(port: int) -> SimpleNamespace:
    """What the memory reads of a kombu connection after failover: its host and port."""
    return SimpleNamespace(hostname="127.0.0.1", port=port, ssl=False)


@pytest.mark.parametrize(
    ("preferred", "broken", "expected"),
    [
        (None, [], [A, B, C]),
        (node(5682), [], [B, A, C]),
        (None, [node(5681)], [B, C, A]),
        (node(5683), [node(5681)], [C, B, A]),
        (None, [node(5682), node(5681)], [C, B, A]),
        (node(5681), [node(5681)], [B, C, A]),  # broke after it was reached: last
        (node(5999), [node(5998)], [A, B, C]),  # nodes outside the list change nothing
    ],
)
def test_the_node_that_answered_last_comes_first_and_broken_ones_last(preferred, broken, expected) -> None:
    """Given a failover list A;B;C, a preferred node and broken nodes (oldest break first),
    when it is ordered, then the preferred node leads, the others keep their order, broken ones trail."""
    assert ordered([A, B, C], preferred, broken) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://u:p@10.0.0.5:5682/v", "10.0.0.5:5682"),
        ("amqp://u:p@rabbit-1/v", "rabbit-1:5672"),
        ("amqps://u:p@rabbit-1/v", "rabbit-1:5671"),
        ("pyamqp://u:p%40x@h:99//", "h:99"),
    ],
)
def test_a_url_names_its_node_by_host_and_port(url: str, expected: str) -> None:
    assert node_of_url(url) == expected


def test_a_list_is_split_on_semicolons_or_taken_as_given() -> None:
    assert split_urls(f"{A};{B}; {C}") == [A, B, C]
    assert split_urls([A, B]) == [A, B]
    assert split_urls(A) == [A]


def test_a_worker_frozen_out_of_its_first_node_goes_to_the_node_it_reached_and_tries_the_frozen_one_last() -> (
    None
):
    """Given a worker that consumed through node A (first in its list),
    when A stops answering and the reconnect reaches B,
    then every later connection (the event connection, the next reconnect) starts at B, A last;
    and once A answers again a connection that reaches it moves A back to the front."""
    memory = NodeMemory(clock=iter(range(100)).__next__)
    assert memory.ordered(f"{A};{B};{C}") == f"{A};{B};{C}"
    memory.reached(connection(5681))
    memory.lost(connection(5681))
    assert memory.ordered(f"{A};{B};{C}") == f"{B};{C};{A}"
    memory.reached(connection(5682))
    assert memory.ordered([A, B, C]) == f"{B};{C};{A}"
    memory.lost(connection(5682))
    assert memory.ordered([A, B, C]) == f"{C};{A};{B}"  # A broke first, B after it
    memory.reached(connection(5681))
    assert memory.ordered([A, B, C]) == f"{A};{C};{B}"


def test_a_single_url_is_left_as_it_is() -> None:
    memory = NodeMemory()
    memory.lost(connection(5672))
    assert memory.ordered("amqp://guest:guest@127.0.0.1:5672//") == "amqp://guest:guest@127.0.0.1:5672//"
