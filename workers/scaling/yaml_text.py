"""Block-style YAML for generated manifests (pure: no I/O).

The manifests are plain data (mappings, lists, strings, numbers, booleans),
so a small writer is enough, and the runtime needs no YAML library (PyYAML is
a test-only dependency here). A string is written bare only when YAML can't
read it as anything else; otherwise it is double-quoted, with everything but
printable ASCII escaped (YAML's ``\\x``, ``\\u`` and ``\\U`` escapes). Mappings keep their
insertion order, so the output is stable and diffs of committed manifests stay
small.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

#: A string YAML reads back as that same string when written bare.
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
#: Bare words YAML 1.1 (and so many readers) takes for booleans or null.
_SPECIAL = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def scalar(value: object) -> str:
    """One scalar as YAML text.

    Raises:
        TypeError: ``value`` is not a string, number, boolean or None.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _SPECIAL:
            return value
        return _quoted(value)
    raise TypeError(f"cannot write {type(value).__name__} as a YAML scalar")


def _quoted(text: str) -> str:
    """``text`` in YAML's double-quoted style, ASCII only."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def document(value: object) -> str:
    """``value`` (a mapping) as one YAML document's lines, ending with a newline."""
    return "\n".join(_lines(value, 0)) + "\n"


def documents(values: Sequence[object]) -> str:
    """Several documents, each after a ``---`` line."""
    return "".join(f"---\n{document(value)}" for value in values)


def _lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        lines: list[str] = []
        for key, item in value.items():
            lines.extend(_entry(f"{pad}{scalar(key)}:", item, indent + 2, list_item=False))
        return lines
    if isinstance(value, list | tuple):
        if not value:
            return [pad + "[]"]
        lines = []
        for item in value:
            lines.extend(_entry(f"{pad}-", item, indent + 2, list_item=True))
        return lines
    return [pad + scalar(value)]


def _entry(head: str, item: object, indent: int, list_item: bool) -> list[str]:
    """``head`` followed by ``item``: inline when it is a scalar or empty, else on the next lines."""
    if isinstance(item, Mapping | list | tuple) and item:
        if list_item and isinstance(item, Mapping):
            # "- key: value" with the rest of the mapping under the first key.
            inner = _lines(item, indent)
            return [f"{head} {inner[0].lstrip()}", *inner[1:]]
        if not list_item and isinstance(item, list | tuple):
            # A list under a key sits at the key's own indentation (the usual Kubernetes style).
            return [head, *_lines(item, indent - 2)]
        return [head, *_lines(item, indent)]
    if isinstance(item, Mapping):
        return [f"{head} {{}}"]
    if isinstance(item, list | tuple):
        return [f"{head} []"]
    return [f"{head} {scalar(item)}"]
