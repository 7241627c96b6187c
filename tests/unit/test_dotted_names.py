"""Every dotted name the platform hands to Celery imports, and names the right kind of object.

Celery resolves these strings lazily (when a worker starts, when a command
runs), so a typo or a moved class would otherwise surface only there.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
from celery import Task, bootsteps
from celery.app.amqp import AMQP
from celery.utils.imports import symbol_by_name
from celery.worker.consumer.consumer import Consumer
from celery.worker.request import Request

from config.app import (
    AMQP_CLASS,
    CLI_ERRORS,
    CONSUMER_CLASS,
    DOTTED_NAMES,
    EVENTS_STEP,
    SAGA_RELAY_STEP,
    TASK_CLASS,
)
from workers.delivery import consumer as consumer_module
from workers.delivery.task import PlatformTask

ROOT = Path(__file__).resolve().parents[2]


def is_subclass(base: type) -> Any:
    return lambda found: isinstance(found, type) and issubclass(found, base)


#: What each name must be: a Task subclass, a consumer, an AMQP helper, a request, a bootstep.
NAMES = [
    pytest.param(TASK_CLASS, is_subclass(Task), id="TASK_CLASS is a Task subclass"),
    pytest.param(CONSUMER_CLASS, is_subclass(Consumer), id="CONSUMER_CLASS is a Celery consumer"),
    pytest.param(EVENTS_STEP, is_subclass(bootsteps.Step), id="EVENTS_STEP is a bootstep"),
    pytest.param(AMQP_CLASS, is_subclass(AMQP), id="AMQP_CLASS is Celery's AMQP helper"),
    pytest.param(PlatformTask.Request, is_subclass(Request), id="PlatformTask.Request is a Celery request"),
    pytest.param(consumer_module.TOPOLOGY_STEP, is_subclass(bootsteps.StartStopStep),
                 id="TOPOLOGY_STEP is a start/stop bootstep"),
    pytest.param(CLI_ERRORS, callable, id="CLI_ERRORS is a callable"),
    pytest.param(SAGA_RELAY_STEP, is_subclass(bootsteps.StartStopStep), id="SAGA_RELAY_STEP is a start/stop bootstep"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "is_right_kind"), NAMES)
def test_each_dotted_name_imports_as_the_right_kind_of_object(name: str, is_right_kind: Any) -> None:
    """Celery's own resolver (symbol_by_name) imports the name to the right kind of object."""
    assert is_right_kind(symbol_by_name(name)), f"{name} is {symbol_by_name(name)!r}"


def test_every_name_config_hands_to_celery_is_checked_here() -> None:
    """DOTTED_NAMES lists what config.app hands to Celery; each is in the table above."""
    checked = {param.values[0] for param in NAMES}
    assert set(DOTTED_NAMES) <= checked


def test_the_consumer_blueprint_names_steps_that_import() -> None:
    """Every step of the consumer's blueprint imports as a bootstep, and the native
    delayed delivery step it leaves out is one Celery really has."""
    steps = consumer_module.PlatformConsumer.Blueprint.default_steps
    for step in steps:
        assert is_subclass(bootsteps.Step)(symbol_by_name(step)), step
    assert consumer_module.TOPOLOGY_STEP in steps
    assert consumer_module.NATIVE_DELAYED_DELIVERY in Consumer.Blueprint.default_steps
    assert consumer_module.NATIVE_DELAYED_DELIVERY not in steps


def celery_commands() -> list[Any]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry_points = pyproject["project"]["entry-points"]["celery.commands"]
    return [pytest.param(name, target, id=f"celery {name}") for name, target in sorted(entry_points.items())]


@pytest.mark.parametrize(("name", "target"), celery_commands())
def test_each_celery_command_entry_point_is_a_click_command_of_that_name(name: str, target: str) -> None:
    """Each celery.commands entry point imports as a click command whose own name is
    the entry point's: Celery adds it under the command's name (`celery -A config NAME`)."""
    module, _, attribute = target.partition(":")
    command = symbol_by_name(f"{module}:{attribute}")
    assert isinstance(command, click.Command), f"{target} is {command!r}"
    assert command.name == name
