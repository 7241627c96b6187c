"""A stand-in for ``docker compose`` on machines without a Docker engine (tests only).

No Docker engine runs where the suite runs (``docker`` there is only a
client without the compose plugin), so the compose pool is tested against
this script, put on PATH as ``docker``. It understands the two commands the
pool runs, keeps the project's containers in a JSON state file, and records
each argv, so a test sees what a user of Compose would see (the containers
``ps`` lists after a resize) and the exact commands.

Environment: FAKE_DOCKER_STATE (state file: {"containers": [...], "ps_format": "lines" | "array"}),
FAKE_DOCKER_LOG (argv log, one JSON list a line), FAKE_DOCKER_DOWN=1 (answer as a client
whose engine is not running).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml


def main(argv: list[str]) -> int:
    with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
        log.write(json.dumps(argv) + "\n")
    if os.environ.get("FAKE_DOCKER_DOWN"):
        print(
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
            file=sys.stderr,
        )
        return 1
    if argv[:1] != ["compose"]:
        print(f"fake docker: only 'compose' is faked, not {argv[:1]}", file=sys.stderr)
        return 2
    args = argv[1:]
    files, project = [], ""
    while args and args[0] in ("-f", "-p"):
        if args[0] == "-f":
            files.append(args[1])
        else:
            project = args[1]
        args = args[2:]
    (compose_file,) = files
    spec = yaml.safe_load(Path(compose_file).read_text())
    project = project or spec.get("name", "project")
    services = set(spec["services"])
    state_path = Path(os.environ["FAKE_DOCKER_STATE"])
    state = json.loads(state_path.read_text())
    command, rest = args[0], args[1:]
    named = [arg for arg in rest if not arg.startswith("-") and "=" not in arg and arg != "json"]
    unknown = [name for name in named if name not in services]
    if unknown:
        print(f"no such service: {unknown[0]}", file=sys.stderr)
        return 1
    if command == "ps":
        assert rest[:2] == ["--format", "json"], rest
        shown = [
            c for c in state["containers"] if c["State"] == "running" and (not named or c["Service"] in named)
        ]
        if state.get("ps_format") == "array":
            print(json.dumps(shown))
        else:
            for container in shown:
                print(json.dumps(container))
        return 0
    if command == "up":
        scale = dict(arg.split("=", 1) for arg in rest[rest.index("--scale") + 1 :: 2] if "=" in arg)
        for service, count in scale.items():
            mine = [c for c in state["containers"] if c["Service"] == service and c["State"] == "running"]
            others = [c for c in state["containers"] if c not in mine]
            mine.sort(key=lambda c: int(c["Name"].rsplit("-", 1)[1]))
            # Compose stops the surplus (SIGTERM, then stop_grace_period) and adds the missing.
            kept = mine[: int(count)]
            numbers = {int(c["Name"].rsplit("-", 1)[1]) for c in kept}
            n = 1
            while len(kept) < int(count):
                if n not in numbers:
                    kept.append({"Service": service, "Name": f"{project}-{service}-{n}", "State": "running"})
                n += 1
            state["containers"] = others + kept
        state_path.write_text(json.dumps(state))
        return 0
    print(f"fake docker: 'compose {command}' is not faked", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
