"""A frame reader for py-amqp that tolerates message properties that are not UTF-8.

py-amqp decodes a message's short-string properties (``content_type``,
``correlation_id``, ``type``, ``app_id``...) as strict UTF-8 while it reads the
frames. A foreign producer that puts other bytes there makes that decode raise
inside the connection's frame reader: the worker's connection drops, the
worker exits, and every redelivery of the message kills the next worker until
the queue's own delivery limit dead-letters it, with no reason given.

Here the frames are read by :func:`tolerant_frame_handler`, the same state
machine as py-amqp's (method frame, content header, body frames) whose
messages fall back to :func:`decode_properties_tolerantly` when a property is
not UTF-8: that property is left out, and its raw bytes are put in the header
``x-undecodable-properties`` (name -> bytes). The worker's receipt check then
dead-letters the message as ``undecodable`` with the property named, and keeps
consuming. Headers inside the header table were already tolerated by py-amqp
(it keeps undecodable values as bytes).

The same messages keep their body as the bytes that arrived (py-amqp would
decode it by its content encoding), so what the worker republishes is the
original, byte for byte.

py-amqp's ``Connection`` takes the frame reader as its ``frame_handler``
argument, and kombu passes a connection's transport options through to it:
the platform consumer opens its consuming connection with
:data:`TOLERANT_TRANSPORT_OPTIONS` (``PlatformConsumer.connection_for_read``),
and so do the tools that read messages (:func:`workers.broker.reading_connection`,
:func:`workers.broker.amqp_connection`): a dead letter browsed, replayed or
exported is the bytes that arrived, too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from struct import unpack_from
from typing import Any

import amqp
from amqp import spec
from amqp.exceptions import UnexpectedFrame
from amqp.serialization import loads

#: Header naming the message properties that were not UTF-8 on receipt (name -> raw bytes).
#: Named here, below every wing; :mod:`workers.delivery.headers` lists it with the others.
UNDECODABLE_PROPERTIES = "x-undecodable-properties"

#: Methods the broker sends with content: basic.return, basic.deliver, basic.get-ok.
_CONTENT_METHODS = frozenset({spec.Basic.Return, spec.Basic.Deliver, spec.Basic.GetOk})
#: AMQP frame types.
_METHOD, _HEADER, _BODY, _HEARTBEAT = 1, 2, 3, 8


def decode_properties_tolerantly(buf: Any, offset: int) -> tuple[dict[str, Any], int]:
    """A basic content header's property list, with non-UTF-8 short strings set aside.

    The properties come in the order of ``amqp.Message.PROPERTIES``, each
    present when its flag bit (from the highest down) is set.

    Returns:
        The properties (with ``x-undecodable-properties`` added to the
        application headers when some were not UTF-8) and the offset after them.
    """
    (flags,) = unpack_from(">H", buf, offset)
    offset += 2
    properties: dict[str, Any] = {}
    undecodable: dict[str, bytes] = {}
    for index, (name, kind) in enumerate(amqp.Message.PROPERTIES):
        if not flags & (1 << (15 - index)):
            continue
        if kind == "s":
            (length,) = unpack_from(">B", buf, offset)
            raw = bytes(buf[offset + 1 : offset + 1 + length])
            offset += 1 + length
            try:
                properties[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                undecodable[name] = raw
        elif kind == "F":
            (table,), offset = loads("F", buf, offset)
            properties[name] = table
        elif kind == "o":
            (properties[name],) = unpack_from(">B", buf, offset)
            offset += 1
        elif kind == "L":
            (properties[name],) = unpack_from(">Q", buf, offset)
            offset += 8
    if undecodable:
        headers = dict(properties.get("application_headers") or {})
        headers[UNDECODABLE_PROPERTIES] = undecodable
        properties["application_headers"] = headers
    return properties, offset


class TolerantMessage(amqp.Message):
    """A py-amqp message whose properties may hold bytes that are not UTF-8, and whose body stays bytes.

    py-amqp's channel decodes a body to text with its ``content_encoding``
    (``auto_decode``); passed on, such a body is encoded again, which for
    ``utf-16`` or ``utf-8-sig`` adds a byte-order mark, so a dead letter would
    not be the original bytes. kombu and Celery decode bytes with the content
    encoding themselves, so the body is kept as it arrived.
    """

    @property  # type: ignore[override]
    def body(self) -> Any:
        return self._body

    @body.setter
    def body(self, value: Any) -> None:
        if isinstance(value, str) and isinstance(
            getattr(self, "_body", None), bytes | bytearray | memoryview
        ):
            return  # py-amqp's auto_decode: keep the bytes
        self._body = value

    def _load_properties(self, class_id: int, buf: Any, offset: int) -> int:
        try:
            return super()._load_properties(class_id, buf, offset)
        except UnicodeDecodeError:
            self.properties, offset = decode_properties_tolerantly(buf, offset)
            return offset


def tolerant_frame_handler(connection: Any, callback: Callable[..., Any]) -> Callable[[Any], bool]:
    """py-amqp's frame reader, assembling content into :class:`TolerantMessage` objects.

    Returns:
        The ``on_frame`` callable py-amqp's connection feeds every frame to.
    """
    expected_types: defaultdict[int, int] = defaultdict(lambda: _METHOD)
    partial_messages: dict[int, TolerantMessage] = {}

    def on_frame(frame: tuple[int, int, Any]) -> bool:
        frame_type, channel, buf = frame
        connection.bytes_recv += 1
        if frame_type not in (expected_types[channel], _HEARTBEAT):
            raise UnexpectedFrame(
                f"Received frame {frame_type} while expecting type: {expected_types[channel]}"
            )
        if frame_type == _METHOD:
            method_sig = unpack_from(">HH", buf, 0)
            if method_sig in _CONTENT_METHODS:
                partial_messages[channel] = TolerantMessage(frame_method=method_sig, frame_args=buf)
                expected_types[channel] = _HEADER
                return False
            callback(channel, method_sig, buf, None)
            return True
        if frame_type == _HEARTBEAT:
            return False
        message = partial_messages[channel]
        if frame_type == _HEADER:
            message.inbound_header(buf)
        else:
            message.inbound_body(buf)
        if not message.ready:
            expected_types[channel] = _BODY
            return False
        expected_types[channel] = _METHOD
        partial_messages.pop(channel, None)
        callback(channel, message.frame_method, message.frame_args, message)
        return True

    return on_frame


#: Transport options that make a kombu py-amqp connection read frames with :func:`tolerant_frame_handler`.
TOLERANT_TRANSPORT_OPTIONS: dict[str, Any] = {"frame_handler": tolerant_frame_handler}
