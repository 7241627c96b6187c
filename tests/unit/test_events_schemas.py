"""Schema evolution: the snapshot check passes additive changes and fails breaking ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from workers.events.schemas import SchemaRegistry, check_snapshots, compare_schemas, json_schema
from workers.ops.cli.pubsub import EXIT_SCHEMA_BREAKING, events

ROOT = Path(__file__).resolve().parents[2]


class Line(BaseModel):
    sku: str
    quantity: int


class V1(BaseModel):
    order_id: str
    amount: float
    note: str | None = None
    lines: list[Line] = []


class AddsOptional(BaseModel):
    order_id: str
    amount: float
    note: str | None = None
    lines: list[Line] = []
    coupon: str | None = None


class RemovesField(BaseModel):
    order_id: str
    note: str | None = None
    lines: list[Line] = []


class RetypesField(BaseModel):
    order_id: int
    amount: float
    note: str | None = None
    lines: list[Line] = []


class AddsRequired(BaseModel):
    order_id: str
    amount: float
    currency: str
    note: str | None = None
    lines: list[Line] = []


class MakesRequired(BaseModel):
    order_id: str
    amount: float
    note: str | None
    lines: list[Line] = []


class NestedLine(BaseModel):
    sku: str
    quantity: str


class RetypesNested(BaseModel):
    order_id: str
    amount: float
    note: str | None = None
    lines: list[NestedLine] = []


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        pytest.param(RemovesField, "amount: removed", id="a removed field"),
        pytest.param(RetypesField, "order_id: retyped", id="a retyped field"),
        pytest.param(
            AddsRequired, "currency: new required field without a default", id="a new required field"
        ),
        pytest.param(
            MakesRequired, "note: was optional, is now required", id="an optional field made required"
        ),
        pytest.param(RetypesNested, "lines[].quantity: retyped", id="a retyped nested field"),
    ],
)
def test_a_breaking_change_is_reported(model: type[BaseModel], problem: str) -> None:
    outcome = compare_schemas(json_schema(V1), json_schema(model))
    assert not outcome.ok
    assert any(line.startswith(problem) for line in outcome.breaking), outcome.breaking


def test_a_new_optional_field_is_additive() -> None:
    outcome = compare_schemas(json_schema(V1), json_schema(AddsOptional))
    assert outcome.ok
    assert outcome.additive == ["coupon: new optional field"]


def test_an_unchanged_schema_has_no_changes() -> None:
    outcome = compare_schemas(json_schema(V1), json_schema(V1))
    assert (outcome.breaking, outcome.additive) == ([], [])


def registry(model: type[BaseModel]) -> SchemaRegistry:
    schemas = SchemaRegistry()
    schemas.register("order.created", model)
    return schemas


ORIGINAL = registry(V1)
ADDITIVE = registry(AddsOptional)
BREAKING = registry(RemovesField)


@pytest.fixture
def snapshots(tmp_path: Path) -> Path:
    check_snapshots(ORIGINAL, tmp_path, update=True)
    assert (tmp_path / "order.created.v1.json").exists()
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(events, ["schema-check", *args])


def test_the_schema_check_command_fails_on_a_breaking_change(snapshots: Path) -> None:
    result = run("--registry", f"{__name__}:BREAKING", "--snapshots", str(snapshots))
    assert result.exit_code == EXIT_SCHEMA_BREAKING
    assert "BREAKING order.created: amount: removed" in result.output
    assert "new version" in result.output


def test_the_schema_check_command_passes_an_additive_change(snapshots: Path) -> None:
    result = run("--registry", f"{__name__}:ADDITIVE", "--snapshots", str(snapshots))
    assert result.exit_code == 0, result.output
    assert "additive order.created: coupon: new optional field" in result.output


def test_the_schema_check_command_fails_on_a_schema_without_a_snapshot(tmp_path: Path) -> None:
    result = run("--registry", f"{__name__}:ORIGINAL", "--snapshots", str(tmp_path))
    assert result.exit_code == EXIT_SCHEMA_BREAKING
    assert "MISSING  order.created" in result.output


def test_update_never_overwrites_a_snapshot_with_a_breaking_change(snapshots: Path) -> None:
    before = (snapshots / "order.created.v1.json").read_text()
    result = run("--registry", f"{__name__}:BREAKING", "--snapshots", str(snapshots), "--update")
    assert result.exit_code == EXIT_SCHEMA_BREAKING
    assert (snapshots / "order.created.v1.json").read_text() == before


def test_the_committed_catalog_matches_its_snapshots() -> None:
    """What CI runs, in a fresh process (tests register extra schemas in this one):
    the real catalog against tasks/events/schemas/."""
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "pubsub", "schema-check"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "event schemas are compatible with their snapshots" in done.stdout
