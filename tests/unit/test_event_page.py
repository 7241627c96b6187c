"""The event pages' helpers that need no server: id checks, state counts, the navbar item."""

from __future__ import annotations

import pytest

from workers.ops.event_status import SubscriberStatus
from workers.ops.flower.event_pages import MAX_EVENT_ID, event_id_problem, state_counts
from workers.ops.flower.loader import FLOWER_TEMPLATES, navbar_with_dlq_link, navbar_with_events_link


@pytest.mark.parametrize(
    ("event_id", "problem"),
    [
        ("6f1c2d3e-0686-404c-8a4e-e46517ae6d5d", None),
        ("order-42/created?v=2", None),
        ("<b>html</b> & spaces", None),
        ("x" * MAX_EVENT_ID, None),
        (None, "not valid UTF-8"),
        ("", "empty"),
        ("   ", "empty"),
        ("x" * (MAX_EVENT_ID + 1), f"at most {MAX_EVENT_ID}"),
        ("bad\nid", "control characters"),
        ("bad\x00id", "control characters"),
    ],
)
def test_only_ids_no_producer_sends_are_refused(event_id: str | None, problem: str | None):
    """Any printable id up to the limit is looked up; the rest get a reason."""
    found = event_id_problem(event_id)
    assert found is None if problem is None else problem in (found or "")


def test_states_are_counted_in_page_order():
    """Every state appears, zero or not, in the order the page lists them."""
    rows = [
        SubscriberStatus("a", "a.events", "pending"),
        SubscriberStatus("b", "b.events", "processed"),
        SubscriberStatus("c", "c.events", "pending"),
    ]
    counts = state_counts(rows)
    assert list(counts) == ["processed", "retrying", "dead-lettered", "pending"]
    assert counts == {"processed": 1, "retrying": 0, "dead-lettered": 0, "pending": 2}


def test_flowers_navbar_gains_an_events_item_right_after_dead_letters():
    """The installed Flower's navbar, as loaded, links to /events once, after Dead letters."""
    navbar = navbar_with_events_link(navbar_with_dlq_link((FLOWER_TEMPLATES / "navbar.html").read_text()))
    assert navbar.count("reverse_url('events')") == 1
    assert navbar.index(">Dead letters</a>") < navbar.index(">Events</a>")


def test_a_navbar_without_a_dead_letters_item_is_left_as_it_is():
    """Without the Dead letters item to anchor on, the navbar is not changed."""
    assert navbar_with_events_link("<nav></nav>") == "<nav></nav>"
