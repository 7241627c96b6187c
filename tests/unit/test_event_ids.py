"""Which event ids a lookup refuses: before looking (no producer sends them) and after (not a UUID, nobody has it)."""

from __future__ import annotations

import pytest

from workers.ops.event_status import SubscriberStatus, is_platform_event_id, unknown_id_problem

UUID = "6f1c2d3e-0686-404c-8a4e-e46517ae6d5d"


def rows(*states: str) -> list[SubscriberStatus]:
    return [SubscriberStatus(f"s{n}", f"s{n}.events", state) for n, state in enumerate(states)]


@pytest.mark.parametrize(
    ("event_id", "expected"),
    [
        (UUID, True),
        (UUID.upper(), True),
        ("6f1c2d3e0686404c8a4ee46517ae6d5d", False),  # no hyphens: not the form publish() makes
        ("{" + UUID + "}", False),
        ("not-an-id", False),
        ("order-42", False),
        (UUID + "x", False),
    ],
)
def test_the_platforms_ids_are_uuids_in_their_usual_form(event_id: str, expected: bool) -> None:
    assert is_platform_event_id(event_id) is expected


@pytest.mark.parametrize(
    ("event_id", "states", "malformed"),
    [
        pytest.param("not-an-id", ("pending", "pending"), True, id="not a UUID, nobody has it: malformed"),
        pytest.param(UUID, ("pending", "pending"), False, id="an unknown UUID: unknown, not malformed"),
        pytest.param("order-42", ("pending", "dead-lettered"), False, id="a foreign id someone has: shown"),
        pytest.param("order-42", ("processed",), False, id="a foreign id processed: shown"),
        pytest.param("not-an-id", (), False, id="no subscribers: nothing to say"),
    ],
)
def test_an_id_is_malformed_after_looking_only_when_it_is_no_uuid_and_nobody_has_it(
    event_id: str, states: tuple[str, ...], malformed: bool
) -> None:
    problem = unknown_id_problem(event_id, rows(*states))
    assert (problem is not None) is malformed
    if malformed:
        assert (
            problem is not None
            and problem.startswith(f"{event_id!r} is not an event id")
            and "UUID" in problem
        )
