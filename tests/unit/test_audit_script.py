"""make lint's audit (compose/scripts/audit.py): what it counts, reports and exits with, without the network."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "compose" / "scripts" / "audit.py"


@pytest.fixture
def audit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "IGNORE_FILE", tmp_path / "ignore")
    monkeypatch.setattr(module.metadata, "version", lambda name: {"kombu": "5.7.0", "oldpkg": "1.0"}[name])
    return module


def fake(
    audit: ModuleType, monkeypatch: pytest.MonkeyPatch, dependencies: list[dict[str, Any]], latest: dict
) -> None:
    monkeypatch.setattr(audit, "run_pip_audit", lambda ignore: dependencies)
    monkeypatch.setattr(audit, "latest_release_advisories", lambda name, version: latest.get(name))


def test_a_vulnerability_found_by_pip_audit_fails_with_its_fixed_versions(audit, monkeypatch, capsys) -> None:
    fake(
        audit,
        monkeypatch,
        [{"name": "celery", "version": "5.7.0", "vulns": [{"id": "PYSEC-1", "fix_versions": ["5.7.1"]}]}],
        {},
    )

    assert audit.main() == audit.VULNERABLE
    assert "audit: VULNERABLE celery 5.7.0: PYSEC-1 (fixed in ['5.7.1'])" in capsys.readouterr().out


def test_a_package_pip_audit_could_not_look_up_is_audited_from_its_latest_release(
    audit, monkeypatch, capsys
) -> None:
    skipped = [
        {"name": "kombu", "skip_reason": "Dependency not found on PyPI"},
        {"name": "oldpkg", "skip_reason": "Dependency not found on PyPI"},
        {"name": "rabbit-platform", "skip_reason": "distribution marked as editable"},
    ]
    fake(audit, monkeypatch, skipped, {"kombu": [{"id": "GHSA-x", "fixed_in": ["5.7.1"]}]})

    assert audit.main() == audit.VULNERABLE
    out = capsys.readouterr().out
    assert "VULNERABLE kombu 5.7.0: GHSA-x" in out
    assert "1 packages audited (0 by pip-audit, 1 at their latest release" in out
    assert "not audited (no advisory data for the installed version): oldpkg 1.0" in out


def test_an_ignored_advisory_needs_a_reason_and_is_then_reported_not_failed(
    audit, monkeypatch, capsys
) -> None:
    fake(audit, monkeypatch, [{"name": "kombu", "skip_reason": "not found"}], {"kombu": [{"id": "GHSA-x"}]})
    audit.IGNORE_FILE.write_text("GHSA-x  the vulnerable function is never called here\n")

    assert audit.main() == audit.OK
    assert "audit: ignored GHSA-x: the vulnerable function is never called here" in capsys.readouterr().out

    audit.IGNORE_FILE.write_text("GHSA-x\n")
    with pytest.raises(SystemExit, match="GHSA-x needs a reason"):
        audit.main()


def test_nothing_audited_is_its_own_exit_code_not_a_pass(audit, monkeypatch, capsys) -> None:
    fake(audit, monkeypatch, [{"name": "oldpkg", "skip_reason": "not found"}], {})

    assert audit.main() == audit.NOT_AUDITED
    assert "nothing could be audited" in capsys.readouterr().err
