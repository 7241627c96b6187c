"""make lint's audit: known vulnerabilities in the project's installed environment (pip-audit).

Run with the project's interpreter (it audits the environment it runs in)::

    .venv/bin/python compose/scripts/audit.py

pip-audit asks PyPI for each installed version's advisories
(``/pypi/<name>/<version>/json``). Where that answer is missing (some mirrors
and proxies serve only ``/pypi/<name>/json``), a package installed at its
latest release is audited from that project answer instead, whose
``vulnerabilities`` are the latest release's; the rest are listed as not
audited. The project itself (installed editable) is not on PyPI.

Advisories that don't apply are ignored in :data:`IGNORE_FILE`, one per line:
the advisory id, then the reason (a reason is required).

Exit codes: 0 no known vulnerability in what was audited, 1 vulnerabilities
found (each printed with its fixed versions), 2 nothing could be audited
(PyPI unreachable: ``make lint AUDIT=0`` skips the audit offline).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

#: Advisories ignored on purpose: ``ID reason...`` per line, ``#`` comments.
IGNORE_FILE = Path(__file__).resolve().parents[2] / ".pip-audit-ignore"
OK, VULNERABLE, NOT_AUDITED = 0, 1, 2


def ignored() -> dict[str, str]:
    """The ignored advisory ids and their reasons.

    Raises:
        SystemExit: a line gives no reason.
    """
    found: dict[str, str] = {}
    if not IGNORE_FILE.exists():
        return found
    for number, line in enumerate(IGNORE_FILE.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        advisory, _, reason = text.partition(" ")
        if not reason.strip():
            sys.exit(f"audit: {IGNORE_FILE.name}:{number}: {advisory} needs a reason after its id")
        found[advisory] = reason.strip()
    return found


def run_pip_audit(ignore: dict[str, str]) -> list[dict[str, object]]:
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--skip-editable",
        "--progress-spinner",
        "off",
        "-f",
        "json",
    ]
    for advisory in ignore:
        command += ["--ignore-vuln", advisory]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    try:
        return list(json.loads(result.stdout)["dependencies"])
    except (ValueError, KeyError):
        sys.exit(f"audit: pip-audit failed: {(result.stderr.strip().splitlines() or ['no output'])[-1]}")


def latest_release_advisories(name: str, version: str) -> list[dict[str, object]] | None:
    """The advisories of ``name`` if ``version`` is its latest release on PyPI, else None."""
    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=15) as response:
            project = json.load(response)
    except (OSError, ValueError):
        return None
    if project.get("info", {}).get("version") != version:
        return None
    return list(project.get("vulnerabilities") or [])


def main() -> int:
    ignore = ignored()
    vulnerable: list[str] = []
    audited = by_project = 0
    not_audited: list[str] = []
    skipped: list[tuple[str, str]] = []
    for dependency in run_pip_audit(ignore):
        name = str(dependency["name"])
        if "skip_reason" not in dependency:
            audited += 1
            for vuln in dependency.get("vulns", []):  # type: ignore[attr-defined]
                fixed = vuln.get("fix_versions") or "no release yet"
                vulnerable.append(f"{name} {dependency['version']}: {vuln['id']} (fixed in {fixed})")
        elif "editable" not in str(dependency["skip_reason"]):
            try:
                skipped.append((name, metadata.version(name)))
            except metadata.PackageNotFoundError:
                not_audited.append(name)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda pair: latest_release_advisories(*pair), skipped))
    for (name, version), advisories in zip(skipped, answers, strict=True):
        if advisories is None:
            not_audited.append(f"{name} {version}")
            continue
        by_project += 1
        for vuln in advisories:
            if vuln.get("id") in ignore or vuln.get("withdrawn"):
                continue
            fixed = vuln.get("fixed_in") or "no release yet"
            vulnerable.append(f"{name} {version}: {vuln.get('id')} (fixed in {fixed})")
    for line in vulnerable:
        print(f"audit: VULNERABLE {line}")
    for advisory, reason in ignore.items():
        print(f"audit: ignored {advisory}: {reason}")
    print(
        f"audit: {audited + by_project} packages audited ({audited} by pip-audit, {by_project} at their "
        f"latest release from PyPI's project data), {len(vulnerable)} known vulnerabilities"
    )
    if not_audited:
        print(
            f"audit: not audited (no advisory data for the installed version): {', '.join(sorted(not_audited))}"
        )
    if vulnerable:
        return VULNERABLE
    if audited + by_project == 0:
        print(
            "audit: nothing could be audited (is PyPI reachable? make lint AUDIT=0 skips the audit)",
            file=sys.stderr,
        )
        return NOT_AUDITED
    return OK


if __name__ == "__main__":
    sys.exit(main())
