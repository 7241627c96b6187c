"""Event schemas: a registry of pydantic models per (event type, version), and
a backward-compatibility check against committed JSON Schema snapshots.

Each version of an event type has one model; consumers validate against it and
ignore unknown fields (so a producer may add optional fields). A change to a
version's model is backward compatible when data valid for the old schema is
still valid for the new one, as far as consumers care. Breaking:

- a field removed;
- a field retyped (its type, format, enum, items or union changed);
- a new required field (one without a default), or an optional one made required.

Anything else (a new optional field, a changed description) is additive.
Breaking changes get a new version (``order.created.v2``) instead. Snapshots
are ``<dir>/<base type>.v<N>.json``; :func:`check_snapshots` compares them
with the models, and ``celery -A config pubsub schema-check`` runs it in CI.
Pure logic apart from reading and writing the snapshot files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.events.envelope import event_type_name, parse_event_type

#: Keys of a JSON Schema node that document rather than constrain.
DESCRIPTIVE_KEYS = frozenset({"title", "description", "default", "examples", "$comment"})


class SchemaRegistry:
    """Pydantic models by (base event type, version)."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, int], type[Any]] = {}

    def register(self, event_type: str, model: type[Any]) -> type[Any]:
        """Register ``model`` as the schema of ``event_type`` (``order.created.v2`` is version 2).

        Raises:
            EventTypeError: the type name is malformed.
            ValueError: that type and version already has a different model.
        """
        parsed = parse_event_type(event_type)
        key = (parsed.base, parsed.version)
        existing = self._models.get(key)
        if existing is not None and existing is not model:
            raise ValueError(f"{event_type} already has the schema {existing.__name__}")
        self._models[key] = model
        return model

    def schema(self, event_type: str) -> type[Any] | None:
        """The model of ``event_type``, or None if it has none."""
        parsed = parse_event_type(event_type)
        return self._models.get((parsed.base, parsed.version))

    def __iter__(self) -> Iterator[tuple[str, int, type[Any]]]:
        for (base, version), model in sorted(self._models.items()):
            yield base, version, model

    def __len__(self) -> int:
        return len(self._models)


def snapshot_name(base: str, version: int) -> str:
    """File name of the snapshot of ``base`` version ``version``."""
    return f"{base}.v{version}.json"


def json_schema(model: type[Any]) -> dict[str, Any]:
    """The JSON Schema of a pydantic model (validation mode, as consumers see it)."""
    return model.model_json_schema(mode="validation")  # type: ignore[no-any-return]


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    seen = 0
    while "$ref" in node and seen < 32:
        path = str(node["$ref"]).removeprefix("#/").split("/")
        target: Any = root
        for part in path:
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        node = target
        seen += 1
    return node


def _shape(node: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """A node's type, without documentation, with nested objects reduced to ``object``."""
    node = _resolve(node, root)
    if "anyOf" in node or "oneOf" in node:
        options = node.get("anyOf") or node.get("oneOf") or []
        return ["union", sorted(json.dumps(_shape(o, root), sort_keys=True) for o in options)]
    if node.get("type") == "object" or "properties" in node:
        return ["object"]
    if node.get("type") == "array":
        return ["array", _shape(node.get("items") or {}, root)]
    return {k: v for k, v in node.items() if k not in DESCRIPTIVE_KEYS}


@dataclass
class Compatibility:
    """What changed between two versions of a schema."""

    breaking: list[str] = field(default_factory=list)
    additive: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaking


def compare_schemas(old: Mapping[str, Any], new: Mapping[str, Any]) -> Compatibility:
    """Compare two JSON Schemas of one event version (old = the committed snapshot)."""
    result = Compatibility()
    _compare(old, new, old, new, "", result, depth=0)
    return result


def _compare(
    old_node: Mapping[str, Any],
    new_node: Mapping[str, Any],
    old_root: Mapping[str, Any],
    new_root: Mapping[str, Any],
    path: str,
    result: Compatibility,
    depth: int,
) -> None:
    old_node, new_node = _resolve(old_node, old_root), _resolve(new_node, new_root)
    if depth > 16:
        return
    old_shape, new_shape = _shape(old_node, old_root), _shape(new_node, new_root)
    if old_shape != new_shape:
        result.breaking.append(f"{path or '(root)'}: retyped from {old_shape} to {new_shape}")
        return
    if old_node.get("type") == "array" and "items" in old_node:
        _compare(
            old_node["items"], new_node.get("items", {}), old_root, new_root, f"{path}[]", result, depth + 1
        )
        return
    old_properties = old_node.get("properties") or {}
    new_properties = new_node.get("properties") or {}
    old_required = set(old_node.get("required") or ())
    new_required = set(new_node.get("required") or ())
    for name, old_property in old_properties.items():
        where = f"{path}.{name}" if path else name
        if name not in new_properties:
            result.breaking.append(f"{where}: removed")
            continue
        if name in new_required and name not in old_required:
            result.breaking.append(f"{where}: was optional, is now required")
        _compare(old_property, new_properties[name], old_root, new_root, where, result, depth + 1)
    for name in new_properties.keys() - old_properties.keys():
        where = f"{path}.{name}" if path else name
        if name in new_required:
            result.breaking.append(f"{where}: new required field without a default")
        else:
            result.additive.append(f"{where}: new optional field")


@dataclass
class CheckReport:
    """The outcome of checking every registered schema against its snapshot."""

    breaking: dict[str, list[str]] = field(default_factory=dict)
    additive: dict[str, list[str]] = field(default_factory=dict)
    missing_snapshots: list[str] = field(default_factory=list)
    orphan_snapshots: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.breaking or self.missing_snapshots or self.orphan_snapshots)


def check_snapshots(registry: SchemaRegistry, directory: Path, update: bool = False) -> CheckReport:
    """Compare each registered schema with its snapshot in ``directory``.

    With ``update``, snapshots of new schemas and of additive changes are
    (re)written; breaking changes never are (they need a new version).
    """
    report = CheckReport()
    expected = set()
    for base, version, model in registry:
        name = event_type_name(base, version)
        file = directory / snapshot_name(base, version)
        expected.add(file.name)
        current = json_schema(model)
        if not file.exists():
            if update:
                _write(file, current)
                report.written.append(name)
            else:
                report.missing_snapshots.append(name)
            continue
        outcome = compare_schemas(json.loads(file.read_text()), current)
        if outcome.breaking:
            report.breaking[name] = outcome.breaking
        elif outcome.additive:
            report.additive[name] = outcome.additive
            if update:
                _write(file, current)
                report.written.append(name)
    if directory.is_dir():
        for file in sorted(directory.glob("*.v*.json")):
            if file.name not in expected:
                report.orphan_snapshots.append(file.name)
    return report


def _write(file: Path, schema: Mapping[str, Any]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
