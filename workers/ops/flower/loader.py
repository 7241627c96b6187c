"""A Tornado template loader: our templates first, then Flower's, with our nav links."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import flower
from tornado.template import Loader, Template

logger = logging.getLogger(__name__)

#: Our templates.
OWN_TEMPLATES = Path(__file__).resolve().parent / "templates"
#: Flower's templates (read, never changed).
FLOWER_TEMPLATES = Path(flower.__file__).resolve().parent / "templates"

#: The navigation item added after Flower's "Broker" item.
DLQ_NAV_ITEM = """
        <li class="nav-item">
          <a class="nav-link{% if active_tab == 'dlq' %} active{% end %}"
            href="{{ reverse_url('dlq') }}" id="nav-dlq"
            {% if active_tab == 'dlq' %}aria-current="page"{% end %}>Dead letters</a>
        </li>"""

#: The navigation item added after "Dead letters".
EVENTS_NAV_ITEM = """
        <li class="nav-item">
          <a class="nav-link{% if active_tab == 'events' %} active{% end %}"
            href="{{ reverse_url('events') }}" id="nav-events"
            {% if active_tab == 'events' %}aria-current="page"{% end %}>Events</a>
        </li>"""

#: The navigation item added after "Sagas".
SCALE_NAV_ITEM = """
        <li class="nav-item">
          <a class="nav-link{% if active_tab == 'scale' %} active{% end %}"
            href="{{ reverse_url('scale') }}" id="nav-scale"
            {% if active_tab == 'scale' %}aria-current="page"{% end %}>Scaling</a>
        </li>"""

#: The navigation item added after "Events".
SAGAS_NAV_ITEM = """
        <li class="nav-item">
          <a class="nav-link{% if active_tab == 'sagas' %} active{% end %}"
            href="{{ reverse_url('sagas') }}" id="nav-sagas"
            {% if active_tab == 'sagas' %}aria-current="page"{% end %}>Sagas</a>
        </li>"""

_AFTER_BROKER_ITEM = re.compile(r">Broker</a>\s*</li>")
_AFTER_DLQ_ITEM = re.compile(r">Dead letters</a>\s*</li>")
_AFTER_EVENTS_ITEM = re.compile(r">Events</a>\s*</li>")
_AFTER_SAGAS_ITEM = re.compile(r">Sagas</a>\s*</li>")


def insert_nav_item(source: str, after: re.Pattern[str], item: str, what: str) -> str:
    """``source`` with ``item`` inserted after the first match of ``after``.

    If the markup changed so that the anchor is gone, the navbar is left as it
    is (the page still answers at its URL) and a warning names ``what``.
    """
    match = after.search(source)
    if match is None:
        logger.warning("the navbar has no anchor for the %s link; it is not added", what)
        return source
    return source[: match.end()] + item + source[match.end() :]


def navbar_with_dlq_link(source: str) -> str:
    """Flower's navbar template with the "Dead letters" item after "Broker"."""
    return insert_nav_item(source, _AFTER_BROKER_ITEM, DLQ_NAV_ITEM, "Dead letters")


def navbar_with_events_link(source: str) -> str:
    """The navbar with the "Events" item after "Dead letters" (left as it is without one)."""
    return insert_nav_item(source, _AFTER_DLQ_ITEM, EVENTS_NAV_ITEM, "Events")


def navbar_with_sagas_link(source: str) -> str:
    """The navbar with the "Sagas" item after "Events" (left as it is without one)."""
    return insert_nav_item(source, _AFTER_EVENTS_ITEM, SAGAS_NAV_ITEM, "Sagas")


def navbar_with_scale_link(source: str) -> str:
    """The navbar with the "Scaling" item after "Sagas" (left as it is without one)."""
    return insert_nav_item(source, _AFTER_SAGAS_ITEM, SCALE_NAV_ITEM, "Scaling")


class PlatformLoader(Loader):
    """Loads ``name`` from our templates if there, else from Flower's.

    Autoescaping stays Tornado's default (``xhtml_escape``): every ``{{ }}``
    is escaped, so strings from tasks render as text.
    """

    def __init__(self, own: Path = OWN_TEMPLATES, fallback: Path = FLOWER_TEMPLATES) -> None:
        super().__init__(str(fallback))
        self.own = own

    def _create_template(self, name: str) -> Template:
        own_path = self.own / name
        if own_path.is_file():
            source = own_path.read_text(encoding="utf-8")
        else:
            source = Path(os.path.join(self.root, name)).read_text(encoding="utf-8")
            if name == "navbar.html":
                source = navbar_with_scale_link(
                    navbar_with_sagas_link(navbar_with_events_link(navbar_with_dlq_link(source)))
                )
        return Template(source, name=name, loader=self)
