"""The Flower page helpers that need no server: the navbar link, age and body display."""

from __future__ import annotations

import pytest

from workers.ops.flower.dlq_pages import body_preview
from workers.ops.flower.loader import FLOWER_TEMPLATES, navbar_with_dlq_link
from workers.ops.text import age_text


def test_flowers_navbar_gains_a_dead_letters_item_right_after_broker():
    """The installed Flower's navbar.html, as loaded, links to the DLQ page after Broker."""
    source = (FLOWER_TEMPLATES / "navbar.html").read_text()
    navbar = navbar_with_dlq_link(source)
    assert navbar.count("reverse_url('dlq')") == 1
    assert navbar.index(">Broker</a>") < navbar.index(">Dead letters</a>")
    assert (FLOWER_TEMPLATES / "navbar.html").read_text() == source, "Flower's file is not changed"


def test_a_navbar_without_a_broker_item_is_left_as_it_is():
    """If Flower's markup changes, the navbar is not broken, only not extended."""
    assert navbar_with_dlq_link("<nav></nav>") == "<nav></nav>"


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "-"), (5, "5s"), (125, "2m5s"), (7260, "2h1m"), (90000, "1d1h"), (-3, "0s")]
)
def test_ages_read_like_a_clock(seconds: float | None, text: str):
    """Ages show the two largest units."""
    assert age_text(seconds) == text


def test_bodies_show_as_text_or_base64_and_are_cut():
    """UTF-8 bodies show as text, others as base64; long ones are cut."""
    assert body_preview(b'{"a": 1}') == ('{"a": 1}', "utf-8")
    assert body_preview(b"\xff\x00") == ("/wA=", "base64")
    text, _ = body_preview(b"x" * 5000)
    assert len(text) < 2100 and text.endswith("[cut]")
