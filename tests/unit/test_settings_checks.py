"""Settings checked when they load: task modules, the result backend, and what the run folder moves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    "modules",
    [
        pytest.param("tasks.orders", id="a module of a package"),
        pytest.param("tasks.orders, tasks.events.fraud", id="a module of a subpackage"),
        pytest.param("tasks.events", id="a package"),
        pytest.param("json", id="the standard library"),
    ],
)
def test_task_modules_that_exist_are_accepted(modules: str) -> None:
    load_settings({"PLATFORM_TASK_MODULES": modules})


@pytest.mark.parametrize(
    ("modules", "named"),
    [
        pytest.param("tasks.ordrs", "tasks.ordrs", id="a typo'd module"),
        pytest.param("tasks.orders,taks.payments", "taks.payments", id="a typo'd package"),
        pytest.param("tasks.orders.create_order", "tasks.orders.create_order", id="a task, not a module"),
        pytest.param("tasks/orders.py", "tasks/orders.py", id="a path, not a module"),
    ],
)
def test_a_task_module_that_does_not_exist_is_named_with_the_variable(modules: str, named: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"PLATFORM_TASK_MODULES": modules})
    assert str(raised.value).startswith(f"PLATFORM_TASK_MODULES: no module named {named!r}")


def test_checking_task_modules_runs_none_of_their_code(tmp_path: Path, monkeypatch) -> None:
    """The check finds modules without importing them (a package's import may connect, log...)."""
    package = tmp_path / "sidefx"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "jobs.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_settings({"PLATFORM_TASK_MODULES": "sidefx.jobs"}).task_modules == ("sidefx.jobs",)
    assert "sidefx" not in sys.modules
    with pytest.raises(SettingsError, match="no module named 'sidefx.job'"):
        load_settings({"PLATFORM_TASK_MODULES": "sidefx.job"})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("nosuch://user:s3cret@host/0", "'nosuch' is not a result backend", id="unknown scheme"),
        pytest.param(
            "nosuch+foo://user:s3cret@host", "'nosuch' is not a result backend", id="unknown with +"
        ),
        pytest.param("celery.nowhere:Backend", "is not a result backend", id="a class that doesn't import"),
        pytest.param(
            "db+sqlite:////tmp/results.db", "needs the Python package 'sqlalchemy'", id="a missing dependency"
        ),
    ],
)
def test_a_result_backend_celery_cannot_load_is_refused_without_printing_its_url(
    url: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whether or not SQLAlchemy is installed here, the backend sees it missing.
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    monkeypatch.delitem(sys.modules, "celery.backends.database", raising=False)
    with pytest.raises(SettingsError) as raised:
        load_settings({"CELERY_RESULT_BACKEND": url})
    text = str(raised.value)
    assert text.startswith("CELERY_RESULT_BACKEND: ") and message in text
    assert "s3cret" not in text


@pytest.mark.parametrize("url", ["rpc://", "redis://:s3cret@127.0.0.1:6379/0", "cache+memory://", ""])
def test_result_backends_celery_can_load_are_kept(url: str) -> None:
    assert load_settings({"CELERY_RESULT_BACKEND": url}).result_backend == url


def test_the_run_folder_holds_the_state_database_and_the_blob_store_by_default() -> None:
    settings = load_settings({"PLATFORM_RUN_DIR": "/srv/platform/run/"})
    assert settings.run_dir == "/srv/platform/run/"
    assert settings.state_url == "sqlite:////srv/platform/run/state.sqlite3"
    assert settings.blob_dir == "/srv/platform/run/blobs"


def test_a_relative_run_folder_keeps_a_relative_state_database() -> None:
    settings = load_settings({"PLATFORM_RUN_DIR": "var/run"})
    assert (settings.state_url, settings.blob_dir) == ("sqlite:///var/run/state.sqlite3", "var/run/blobs")


def test_a_state_url_or_blob_dir_of_its_own_wins_over_the_run_folder() -> None:
    settings = load_settings(
        {
            "PLATFORM_RUN_DIR": "/srv/run",
            "PLATFORM_STATE_URL": "postgresql://db/platform",
            "PLATFORM_BLOB_DIR": "/data/blobs",
        }
    )
    assert (settings.state_url, settings.blob_dir) == ("postgresql://db/platform", "/data/blobs")


def test_without_a_run_folder_the_defaults_stay_under_dot_run() -> None:
    settings = load_settings({})
    assert (settings.run_dir, settings.state_url, settings.blob_dir) == (
        ".run",
        "sqlite:///.run/state.sqlite3",
        ".run/blobs",
    )
