"""Raw AMQP messages for the receipt fuzz test: hypothesis strategies and known cases.

A :class:`Case` says what is odd about a message and what may become of it;
:meth:`Case.wire` turns it into the exact bytes, headers and properties to
publish, given the case's unique marker (``fz-0001``...). The marker goes
where the case leaves it intact, so the test finds every message again:

- the ``x-fuzz-marker`` header, on every case (no case touches that header;
  dead letters keep their original headers);
- the AMQP ``message_id`` property, unless the case fuzzes that property;
- the body, as the first argument of a well-formed call, unless the case
  fuzzes the body (then the header is what the task and the test read).

Families (:data:`FAMILIES`, one of each per batch): well-formed protocol 2 task messages (with odd but
legal extras: random headers of every JSON type, big kwargs, time limits,
future ``expires``); bodies that are not JSON, JSON of the wrong outline, the
right outline with wrong inner types, big bodies; content types and encodings;
Celery and platform headers of wrong types; message properties that are not
UTF-8 (py-amqp writes a ``bytes`` value of a short-string property as is).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from hypothesis import strategies as st

from tests.support.fuzz_tasks import MARKER_HEADER
from tests.support.messages import celery_message

#: The tasks of tests/support/fuzz_tasks.py, by what they do.
RECORD = "tests.fuzz.record"
RECORD_ALWAYS = "tests.fuzz.record_always"
FLAKY = "tests.fuzz.flaky"
REFUSE = "tests.fuzz.refuse"
CRASH = "tests.fuzz.crash"
SUCCEEDING = (RECORD, FLAKY)
FAILING = (REFUSE, CRASH)
#: Tasks whose completion mark can't be fooled by an id shared with another message.
NOT_IDEMPOTENT = (RECORD_ALWAYS, REFUSE, CRASH)

#: Largest header value generated: the whole header table must fit in one AMQP
#: frame (RabbitMQ's and py-amqp's frame_max is 131,072 bytes), with room for
#: the failure headers a dead letter gains.
HEADER_BUDGET = 120_000
#: Body sizes for the few big cases (the platform's event limit is 1 MiB).
BIG_SIZES = (100_000, 1_048_576)
#: Not UTF-8: an invalid start byte, a lone continuation byte, an overlong NUL, Latin-1, a UTF-16 BOM.
NOT_UTF8 = (b"\xff", b"\x80abc", b"\xc0\x80", b"caf\xe9", b"\xfe\xff")

PAST = "2000-01-01T00:00:00+00:00"
FUTURE = "2099-01-01T00:00:00+00:00"


class Expect(StrEnum):
    """Where a case may end; the ledger only demands *somewhere*, this demands *where*."""

    PROCESSED = "processed"
    DEAD_LETTERED = "dead-lettered"
    EITHER = "processed or dead-lettered"


#: A header override that removes the header.
DROP = object()


@dataclass
class Wire:
    """One message as published: body bytes, application headers, other properties."""

    body: bytes
    headers: dict[str, Any]
    properties: dict[str, Any]


@dataclass
class Case:
    """What one generated message is, before it gets its marker."""

    description: str
    expect: Expect = Expect.EITHER
    #: Which strategy made it (``known``: one of :func:`known_cases`).
    family: str = "known"
    task: str = RECORD
    #: Header name -> value laid over the protocol 2 headers (:data:`DROP` removes one).
    headers: dict[str, Any] = field(default_factory=dict)
    #: Only the marker header, no Celery headers at all.
    bare: bool = False
    #: The body bytes (None: a well-formed body whose first argument is the marker).
    body: bytes | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Bytes of padding in the well-formed body's kwargs.
    pad: int = 0
    #: AMQP properties (content_type, correlation_id, ...) laid over the defaults.
    properties: dict[str, Any] = field(default_factory=dict)

    def wire(self, marker: str) -> Wire:
        """The message for ``marker``: exact bytes, headers and properties."""
        _, headers = celery_message(self.task, [marker], task_id=f"task-{marker}")
        if self.bare:
            headers = {}
        for name, value in self.headers.items():
            if value is DROP:
                headers.pop(name, None)
            else:
                headers[name] = value(marker) if callable(value) else value
        headers[MARKER_HEADER] = marker
        body = self.body
        if body is None:
            kwargs = dict(self.kwargs)
            if self.pad:
                kwargs["k_pad"] = "x" * self.pad
            embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
            body = json.dumps([[marker, *self.args], kwargs, embed]).encode()
        properties = {
            "content_type": "application/json",
            "content_encoding": "utf-8",
            "message_id": marker,
            "correlation_id": headers.get("id") if isinstance(headers.get("id"), str) else None,
            "delivery_mode": 2,
            **self.properties,
        }
        return Wire(body, headers, {k: v for k, v in properties.items() if v is not None})


def unique_int(marker: str) -> int:
    """A task id that is an integer, unique per marker (idempotency stays honest)."""
    return 10_000_000 + int(marker.rsplit("-", 1)[-1])


# -- building blocks -------------------------------------------------------------

INT64 = st.integers(-(2**63), 2**63 - 1)
#: JSON values. No NaN or infinity: a body must stay JSON, and RabbitMQ closes the
#: publishing connection (541 INTERNAL_ERROR) on a header table holding one, so such
#: a message can never reach a worker.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
#: Header values of every JSON type, plus what only AMQP tables have.
header_values = json_values | st.sampled_from([b"\xff\xfe", datetime(2000, 1, 1)])
not_utf8 = st.tuples(st.sampled_from(NOT_UTF8), st.binary(max_size=8)).map(lambda p: p[0] + p[1])
garbage_text = st.text(min_size=1, max_size=24)
times = st.sampled_from([PAST, "1970-01-01T00:00:00", "2020-02-30T00:00:00", "yesterday", "", "2000-01-01"])


def _wrong_headers() -> dict[str, st.SearchStrategy[Any]]:
    """Per Celery / platform header: values of the wrong type or out of range."""
    counts = st.sampled_from(["x", -1, 1.5, [], {}, True, "1", 2**40, -(2**63)]) | header_values
    return {
        "retries": counts,
        "timelimit": st.sampled_from(
            [
                ["abc", None],
                [None, "abc"],
                "x",
                [1],
                [1, 2, 3],
                {},
                [-1, None],
                ["1", "2"],
                5,
                [1e30, None],
            ]
        )
        | header_values,
        "eta": times | st.sampled_from([FUTURE, 5, 1.5, [], {}, datetime(2000, 1, 1)]) | garbage_text,
        "expires": times | st.sampled_from([5, -1.0, [], {}, datetime(2000, 1, 1)]) | garbage_text,
        "argsrepr": st.integers(1_000, HEADER_BUDGET).map(lambda n: "a" * n) | header_values,
        "kwargsrepr": header_values,
        "root_id": header_values,
        "parent_id": header_values,
        "group": header_values,
        "group_index": header_values,
        "lang": header_values,
        "origin": header_values,
        "shadow": header_values,
        "ignore_result": header_values,
        "stamped_headers": header_values,
        "stamps": header_values,
        "replaced_task_nesting": header_values,
        "x-delivery-count": counts,
        "x-retry-count": counts,
        "x-first-failed-at": header_values,
    }


WRONG_HEADERS = _wrong_headers()
#: The headers of a protocol 2 task message (tests/support/messages.py), any of which may be missing.
CELERY_HEADERS = (
    "lang",
    "task",
    "id",
    "root_id",
    "parent_id",
    "group",
    "retries",
    "eta",
    "expires",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
)
#: Task ids any number of messages may share: only tasks that never complete by id get them.
SHARED_IDS = st.sampled_from(["", None, [], {}, 1.5, True, b"\xff"]) | st.text(max_size=4)
#: Short-string properties whose bytes a producer controls.
STRING_PROPERTIES = (
    "correlation_id",
    "type",
    "app_id",
    "content_type",
    "content_encoding",
    "message_id",
    "reply_to",
)
CONTENT_TYPES = (
    "application/json",
    "application/x-python-serialize",
    "text/plain",
    None,
    "",
    "application/x-garbage",
    "application/json; charset=utf-8",
)
#: Content encodings: py-amqp decodes a body with any real text codec named here before
#: the worker sees it, so a codec that does not round-trip (a BOM) would change a dead letter.
ENCODINGS = ("utf-8", "binary", None, "garbage", "", "utf-16", "utf-32", "utf-8-sig", "latin-1")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


# -- families ----------------------------------------------------------------------


@st.composite
def valid_messages(draw: st.DrawFn) -> Case:
    """Well-formed protocol 2 messages, with odd but legal extras."""
    task = draw(st.sampled_from((*SUCCEEDING, RECORD_ALWAYS, *FAILING)))
    extras = draw(
        st.dictionaries(st.text(min_size=1, max_size=6).map("x-extra-".__add__), header_values, max_size=3)
    )
    legal = draw(
        st.sampled_from(
            [
                {},
                {},
                {"timelimit": [None, None]},
                {"timelimit": [60, 30]},
                {"expires": FUTURE},
                {"retries": 0},
            ]
        )
    )
    pad = draw(st.integers(0, 39).map(lambda i: BIG_SIZES[i % 2] if i >= 38 else 0))
    return Case(
        f"valid {task}"
        + (f" with {_short({**legal, **extras})}" if legal or extras else "")
        + (f" padded {pad} B" if pad else ""),
        Expect.PROCESSED if task in (*SUCCEEDING, RECORD_ALWAYS) else Expect.DEAD_LETTERED,
        "valid",
        task=task,
        headers={**extras, **legal},
        args=draw(st.lists(json_values, max_size=2)),
        kwargs=draw(st.dictionaries(st.text(max_size=6).map("k_".__add__), json_values, max_size=2)),
        pad=pad,
    )


def _not_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return True
    return False


@st.composite
def odd_bodies(draw: st.DrawFn) -> Case:
    """Bodies that are not JSON, JSON of the wrong outline, or the right outline with wrong inner types."""
    kind = draw(st.sampled_from(["not-json", "outline", "inner", "inner-named", "big", "not-utf8"]))
    if kind == "not-json":
        body = draw(st.binary(max_size=48) | st.text(max_size=24).map(str.encode)) + b"{"
    elif kind == "outline":
        value = draw(json_values.filter(lambda v: not (isinstance(v, list) and len(v) == 3)))
        body = json.dumps(value).encode()
    elif kind == "inner":
        triple = draw(st.tuples(json_values, json_values, json_values))
        if isinstance(triple[0], list) and isinstance(triple[1], dict) and isinstance(triple[2], dict | None):
            triple = (triple[1], triple[0], triple[2])  # make it wrong
        body = json.dumps(list(triple)).encode()
    elif kind == "inner-named":
        body = draw(
            st.sampled_from(
                [b"[[], null, {}]", b"[[], [], {}]", b"[{}, {}, {}]", b'["x", {}, {}]', b"[[], {}, 5]"]
            )
        )
    elif kind == "big":
        body = b'[["' + b"x" * draw(st.sampled_from(BIG_SIZES)) + b'"], {}, {'
    else:
        body = b'[["' + draw(not_utf8) + b'"], {}, {}]'
    expect = Expect.DEAD_LETTERED if _not_json(body) else Expect.EITHER
    task = draw(st.sampled_from(SUCCEEDING))
    return Case(f"body {kind}: {_short(body, 48)}", expect, "body", task=task, body=body)


@st.composite
def odd_content(draw: st.DrawFn) -> Case:
    """Content types and encodings the worker must refuse or read correctly, on any task."""
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    encoding = draw(st.sampled_from(ENCODINGS))
    task = draw(st.sampled_from((*SUCCEEDING, *FAILING)))
    body = None
    if content_type == "application/x-python-serialize" and draw(st.booleans()):
        body = pickle.dumps([["fz-pickled"], {}, {}])
    if content_type == "application/x-python-serialize":
        expect = Expect.DEAD_LETTERED
    elif content_type == "application/json" and encoding == "utf-8":
        expect = Expect.PROCESSED if task in SUCCEEDING else Expect.DEAD_LETTERED
    else:
        expect = Expect.EITHER
    return Case(
        f"content_type={content_type!r} content_encoding={encoding!r} on {task}"
        + (" pickle body" if body else ""),
        expect,
        "content",
        task=task,
        body=body,
        properties={"content_type": content_type, "content_encoding": encoding},
    )


@st.composite
def odd_headers(draw: st.DrawFn) -> Case:
    """One or two Celery / platform headers of wrong types, on a task that succeeds or fails."""
    names = draw(st.lists(st.sampled_from(sorted(WRONG_HEADERS)), min_size=1, max_size=2, unique=True))
    task = draw(st.sampled_from((*SUCCEEDING, *FAILING)))
    headers = {name: draw(WRONG_HEADERS[name]) for name in names}
    kind = draw(st.sampled_from(["fields", "fields", "fields", "id", "task", "missing", "bare"]))
    if kind == "id":
        value = draw(st.just(unique_int) | SHARED_IDS)
        if value is not unique_int:
            task = draw(st.sampled_from(NOT_IDEMPOTENT))
        headers["id"] = value
    elif kind == "task":
        task = draw(st.text(max_size=12).map("tests.fuzz.no_such.".__add__))
        headers["task"] = draw(st.just(task) | header_values.filter(lambda v: not isinstance(v, str)))
    elif kind == "missing":
        missing = draw(st.sampled_from(CELERY_HEADERS))
        headers[missing] = DROP
        if missing == "id":
            task = draw(st.sampled_from(NOT_IDEMPOTENT))
    elif kind == "bare":
        return Case("no Celery headers at all", Expect.DEAD_LETTERED, "headers", bare=True)
    shown = {
        k: "<unique int>" if v is unique_int else "<missing>" if v is DROP else v for k, v in headers.items()
    }
    expect = Expect.DEAD_LETTERED if kind == "task" and isinstance(headers["task"], str) else Expect.EITHER
    return Case(f"headers {_short(shown, 90)} on {task}", expect, "headers", task=task, headers=headers)


@st.composite
def odd_properties(draw: st.DrawFn) -> Case:
    """Short-string properties that are not UTF-8 (or odd but legal)."""
    names = draw(st.lists(st.sampled_from(STRING_PROPERTIES), min_size=1, max_size=2, unique=True))
    properties = {name: draw(not_utf8 | st.sampled_from(["", "x" * 255])) for name in names}
    return Case(
        f"properties {_short(properties, 90)}",
        Expect.EITHER,
        "properties",
        task=draw(st.sampled_from(SUCCEEDING)),
        properties=properties,
    )


#: The families of one batch: a message of each, header fuzz twice (hypothesis's
#: ``one_of`` would favour its first branches, so the mix is fixed and only the order drawn).
FAMILIES = (valid_messages(), odd_headers(), odd_headers(), odd_bodies(), odd_content(), odd_properties())
#: One batch of messages, in a drawn order.
batches = st.tuples(*FAMILIES).flatmap(lambda batch: st.permutations(list(batch)))


# -- the cases issue 17 names: always published, whatever hypothesis draws -----------------


def known_cases() -> list[Case]:
    """Every case the issue names, once (the rest is hypothesis's), published first."""
    e = Expect.EITHER
    return [
        Case("valid tests.fuzz.record", Expect.PROCESSED),
        Case("valid tests.fuzz.refuse", Expect.DEAD_LETTERED, task=REFUSE),
        Case("body [[], null, {}]", e, body=b"[[], null, {}]"),
        Case("body [[], [], {}]", e, body=b"[[], [], {}]"),
        Case("body [{}, {}, {}]", e, body=b"[{}, {}, {}]"),
        Case("body not JSON", Expect.DEAD_LETTERED, body=b'{"not": json'),
        Case("body JSON of the wrong outline", e, body=b'{"hello": "world"}'),
        Case(
            "pickle",
            Expect.DEAD_LETTERED,
            properties={"content_type": "application/x-python-serialize"},
            body=pickle.dumps([[], {}, {}]),
        ),
        Case("content_encoding garbage", e, properties={"content_encoding": "garbage"}),
        Case("content_encoding utf-16", e, properties={"content_encoding": "utf-16"}),
        Case(
            "content_encoding utf-8-sig on a failing task",
            e,
            task=REFUSE,
            properties={"content_encoding": "utf-8-sig"},
        ),
        Case("expires in the past", e, headers={"expires": PAST}),
        Case("eta in the future", e, headers={"eta": FUTURE}),
        Case("eta in the past", e, headers={"eta": PAST}),
        Case("eta garbage", e, headers={"eta": "garbage"}),
        Case("retries 'x' on a failing task", e, task=REFUSE, headers={"retries": "x"}),
        Case("retries -1 on a failing task", e, task=REFUSE, headers={"retries": -1}),
        Case("retries 1.5 on a crashing task", e, task=CRASH, headers={"retries": 1.5}),
        Case("retries [] on a flaky task", e, task=FLAKY, headers={"retries": []}),
        Case("id empty", e, task=RECORD_ALWAYS, headers={"id": ""}),
        Case("id an integer", e, headers={"id": unique_int}),
        Case("task unknown", Expect.DEAD_LETTERED, task="tests.fuzz.no_such_task"),
        Case("task not a string", e, headers={"task": 5}),
        Case(f"argsrepr {HEADER_BUDGET} chars", e, headers={"argsrepr": "a" * HEADER_BUDGET}),
        Case("x-delivery-count 'x'", e, headers={"x-delivery-count": "x"}),
        Case("body 1 MiB, not JSON", Expect.DEAD_LETTERED, body=b"[" + b"x" * 1_048_576),
        Case("valid, kwargs 1 MiB", Expect.PROCESSED, pad=1_048_576),
        Case("no Celery headers", Expect.DEAD_LETTERED, bare=True, body=b'{"hello": "world"}'),
        # Last, so that on a worker they kill or wedge the cases above have settled first:
        # a timelimit that is not numbers, properties that are not UTF-8.
        Case("timelimit ['abc', None]", e, headers={"timelimit": ["abc", None]}),
        Case("correlation_id not UTF-8", e, properties={"correlation_id": b"\xff\xfe"}),
        Case("type not UTF-8", e, properties={"type": b"caf\xe9"}),
        Case("app_id not UTF-8", e, properties={"app_id": b"\x80"}),
        Case("content_type not UTF-8", e, properties={"content_type": b"application/\xffjson"}),
        Case("timelimit 'x'", e, headers={"timelimit": "x"}),
        Case("timelimit [1]", e, headers={"timelimit": [1]}),
    ]
