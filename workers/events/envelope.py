"""The CloudEvents 1.0 envelope in its AMQP binding, and event type names (pure, no I/O).

On the wire an event is a CloudEvent in *binary content mode* of the AMQP
protocol binding: the body is the event's ``data`` (JSON), the message's
content type is ``datacontenttype``, and every other attribute is an
application property (an AMQP 0-9-1 header) named ``cloudEvents_<attribute>``::

    headers:  cloudEvents_specversion = "1.0"
              cloudEvents_id          = "6f1c..."
              cloudEvents_source      = "/shop/orders"
              cloudEvents_type        = "order.created"
              cloudEvents_time        = "2026-11-26T17:02:03.123Z"
              cloudEvents_dataschema  = "urn:platform:schema:order.created:v1"
    content-type: application/json
    body:     {"order_id": "o-1", "amount": 12.5}

So a producer or consumer in any language with an AMQP client can take part,
with nothing Celery-specific. On receipt, the ``cloudEvents:`` prefix of the
older binding text, ``ce-``/``ce_`` headers, and *structured mode*
(``application/cloudevents+json``, the whole envelope in the body) are read too.

Event types are ``entity.action`` (or ``domain.entity.action``) with the
action in the past tense, optionally ending in a version ``.vN`` (N >= 2; no
suffix means version 1). The routing key of an event is its type.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: The CloudEvents version of every envelope.
SPEC_VERSION = "1.0"
#: Prefix of the attribute headers this platform writes (AMQP binding).
ATTRIBUTE_PREFIX = "cloudEvents_"
#: Prefixes read on receipt: the binding's two spellings and the HTTP/Kafka style.
ACCEPTED_PREFIXES = ("cloudEvents_", "cloudEvents:", "ce-", "ce_")
#: Content type of an event in structured mode.
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
#: Content type of the data this platform publishes.
JSON_CONTENT_TYPE = "application/json"
#: The attributes every CloudEvent has.
REQUIRED_ATTRIBUTES = ("id", "source", "type", "specversion")
#: Extension attribute naming the claim-check blob that holds the data.
CLAIM_CHECK_ATTRIBUTE = "claimcheck"

_WORD = r"[a-z][a-z0-9_]*"
#: ``entity.action`` or ``domain.entity.action``, optionally ``.vN``.
EVENT_TYPE = re.compile(
    rf"^(?P<base>{_WORD}\.{_WORD}(?:\.(?!v[0-9]+$){_WORD})?)(?:\.v(?P<version>[1-9][0-9]*))?$"
)
#: Past forms that don't end in -ed (an action must be one of these or end in -ed).
IRREGULAR_PAST = frozenset(
    "bought built caught chosen done drawn driven found forgotten frozen given gone got held hidden "
    "kept known laid led left lent lost made met paid put quit read rung run said sent set shaken shut "
    "sold spent split spun stolen struck sung swept taken thrown told torn understood undone withdrawn "
    "won written".split()
)


class EventTypeError(ValueError):
    """An event type is not ``entity.action`` in the past tense (with optional ``.vN``)."""


class EnvelopeError(ValueError):
    """A message claims to be a CloudEvent but lacks what one must have."""


@dataclass(frozen=True)
class EventType:
    """A parsed event type: ``order.created.v2`` is base ``order.created``, version 2."""

    name: str
    base: str
    version: int

    @property
    def action(self) -> str:
        return self.base.rsplit(".", 1)[1]


def parse_event_type(name: str) -> EventType:
    """Parse and check an event type.

    Raises:
        EventTypeError: the name is malformed or its action is not in the past
            tense; the message says what a good one looks like.
    """
    match = EVENT_TYPE.match(name) if isinstance(name, str) else None
    if match is None:
        raise EventTypeError(
            f"event type {name!r} is malformed: use 'entity.action' or 'domain.entity.action' "
            "in lower case, past tense, with an optional version suffix (order.created, "
            "shop.order.created, order.created.v2)"
        )
    base = match["base"]
    action = base.rsplit(".", 1)[1]
    if not (action.endswith("ed") or action in IRREGULAR_PAST):
        raise EventTypeError(
            f"event type {name!r}: the action {action!r} is not in the past tense; an event "
            "states a fact that happened (order.created, order.paid), a command is a task"
        )
    version = int(match["version"] or 1)
    if match["version"] == "1":
        raise EventTypeError(f"event type {name!r}: version 1 has no suffix; write {base!r}")
    return EventType(name, base, version)


def event_type_name(base: str, version: int) -> str:
    """The type name of version ``version`` of ``base`` (version 1 has no suffix)."""
    return base if version == 1 else f"{base}.v{version}"


def new_event_id() -> str:
    """A fresh, unique event id."""
    return str(uuid.uuid4())


def utc_now() -> str:
    """The current time as an RFC 3339 timestamp (UTC, milliseconds, ``Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class CloudEvent:
    """The attributes of one event (its data travels separately, as the body)."""

    id: str
    source: str
    type: str
    time: str
    datacontenttype: str = JSON_CONTENT_TYPE
    dataschema: str | None = None
    subject: str | None = None
    specversion: str = SPEC_VERSION
    #: Extension attributes (lower-case alphanumeric names), e.g. ``claimcheck``.
    extensions: Mapping[str, str] = field(default_factory=dict)

    def attributes(self) -> dict[str, str]:
        """Every attribute but ``datacontenttype`` (the content type carries it)."""
        values = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "dataschema": self.dataschema,
            "subject": self.subject,
            **self.extensions,
        }
        return {name: value for name, value in values.items() if value is not None}

    def headers(self) -> dict[str, str]:
        """The AMQP application properties of this event in binary mode."""
        return {ATTRIBUTE_PREFIX + name: value for name, value in self.attributes().items()}

    def properties(self) -> dict[str, Any]:
        """AMQP basic properties that help plain AMQP consumers (not part of the binding)."""
        return {
            "content_type": self.datacontenttype,
            "content_encoding": "utf-8",
            "message_id": self.id,
            "type": self.type,
            "delivery_mode": 2,
        }


def read_attributes(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """CloudEvents attributes found in AMQP headers, under any accepted prefix."""
    found: dict[str, str] = {}
    for key, value in (headers or {}).items():
        if not isinstance(key, str):
            continue
        for prefix in ACCEPTED_PREFIXES:
            if key.startswith(prefix):
                name = key[len(prefix) :].lower()
                found.setdefault(name, value.decode() if isinstance(value, bytes) else str(value))
                break
    return found


@dataclass(frozen=True)
class Received:
    """A CloudEvent as read from a message: its attributes and its data."""

    attributes: dict[str, str]
    #: The decoded data (JSON), or None when absent or undecodable.
    data: Any
    #: Why the data could not be decoded, if it could not.
    data_error: str | None = None

    @property
    def id(self) -> str:
        return self.attributes["id"]

    @property
    def type(self) -> str:
        return self.attributes["type"]

    def as_dict(self) -> dict[str, Any]:
        """The event as the JSON format of CloudEvents (what a handler receives)."""
        event: dict[str, Any] = {**self.attributes, "data": self.data}
        if self.data_error:
            event["dataerror"] = self.data_error
        return event


def is_cloud_event(headers: Mapping[str, Any] | None, content_type: str | None) -> bool:
    """Whether a message looks like a CloudEvent in binary or structured mode."""
    if (content_type or "").split(";")[0].strip() == STRUCTURED_CONTENT_TYPE:
        return True
    return "id" in read_attributes(headers) and "type" in read_attributes(headers)


def read_event(headers: Mapping[str, Any] | None, body: bytes, content_type: str | None) -> Received:
    """Read a CloudEvent from an AMQP message in binary or structured mode.

    Raises:
        EnvelopeError: a required attribute is missing, or a structured event
            is not a JSON object.
    """
    media_type = (content_type or "").split(";")[0].strip()
    if media_type == STRUCTURED_CONTENT_TYPE:
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise EnvelopeError(f"structured CloudEvent is not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise EnvelopeError("structured CloudEvent is not a JSON object")
        data = document.pop("data", None)
        attributes = {str(k).lower(): str(v) for k, v in document.items() if v is not None}
        received = Received(attributes, data)
    else:
        attributes = read_attributes(headers)
        if media_type:
            attributes.setdefault("datacontenttype", media_type)
        data, error = _decode_data(body, media_type)
        received = Received(attributes, data, error)
    missing = [name for name in REQUIRED_ATTRIBUTES if not received.attributes.get(name)]
    if missing:
        raise EnvelopeError(f"CloudEvent lacks required attributes: {', '.join(missing)}")
    return received


def _decode_data(body: bytes, media_type: str) -> tuple[Any, str | None]:
    if not body:
        return None, None
    if media_type and not (media_type == JSON_CONTENT_TYPE or media_type.endswith("+json")):
        return None, f"data of content type {media_type!r} is not JSON"
    try:
        return json.loads(body), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"data is not valid JSON: {exc}"
