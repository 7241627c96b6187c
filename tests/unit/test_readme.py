"""The README stays true to the code: every setting and make target is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.settings import ENVIRONMENT_NAMES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("variable", sorted(ENVIRONMENT_NAMES.values()))
def test_every_setting_has_a_row_in_the_readme_settings_table(variable: str) -> None:
    assert re.search(rf"^\| `{variable}` \|", README, re.MULTILINE), f"{variable} is not in README's table"


def make_targets() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    return re.findall(r"^([a-z][a-z-]*):[^=\n]*## ", makefile, re.MULTILINE)


@pytest.mark.parametrize("target", make_targets())
def test_every_make_target_is_in_the_readme(target: str) -> None:
    assert f"make {target}" in README, f"make {target} is not described in README.md"


def test_the_quick_start_is_exactly_make_demo_and_make_test() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^    (make \S+)", quick_start, re.MULTILINE)
    assert commands == ["make demo", "make test"]
