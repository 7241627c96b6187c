"""The platform's settings written back as environment variables, for pods (pure).

Generated manifests must run the same platform as the settings they were
generated from: the same queues, retries and subscriptions, or a worker
would declare a queue with other arguments than the broker holds. So every
setting that differs from its default goes into the pods' environment. The
ones that may carry a password (URLs, basic auth) never go into a manifest:
pods read them from a Secret, and only their names appear.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from config.settings import ENVIRONMENT_NAMES, SCALE_KEYS, Settings

#: Settings whose values may hold credentials: pods take them from the Secret.
SENSITIVE = frozenset(
    {"broker_url", "state_url", "management_url", "result_backend", "flower_basic_auth", "alert_webhook_url"}
)


def env_value(value: object) -> str:
    """One setting's value as its environment variable would spell it.

    Raises:
        TypeError: a value of a type the settings don't have.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, tuple) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    if isinstance(value, tuple):
        # PLATFORM_SCALE_QUEUES: ((queue, ((key-field, number), ...)), ...)
        return ";".join(f"{queue}:{','.join(_scale_pairs(pairs))}" for queue, pairs in value)
    raise TypeError(f"no environment spelling for {type(value).__name__}")


def changed_settings(settings: Settings) -> dict[str, str]:
    """Every non-sensitive setting that differs from its default: ``{variable: value}``."""
    defaults = Settings()
    env: dict[str, str] = {}
    for field in dataclasses.fields(Settings):
        value = getattr(settings, field.name)
        if field.name in SENSITIVE or value == getattr(defaults, field.name):
            continue
        env[ENVIRONMENT_NAMES[field.name]] = env_value(value)
    return dict(sorted(env.items()))


def sensitive_variables(settings: Settings, always: Mapping[str, str]) -> dict[str, str]:
    """``always`` plus each other sensitive setting that is set: ``{variable: secret key}``.

    The key is the variable's name in lower case with dashes
    (``CELERY_RESULT_BACKEND`` -> ``celery-result-backend``).
    """
    defaults = Settings()
    found = dict(always)
    for name in sorted(SENSITIVE):
        variable = ENVIRONMENT_NAMES[name]
        if variable not in found and getattr(settings, name) != getattr(defaults, name):
            found[variable] = variable.lower().replace("_", "-")
    return found


def _scale_pairs(pairs: tuple[tuple[str, float], ...]) -> list[str]:
    keys = {field: key for key, field in SCALE_KEYS.items()}
    return [
        f"{keys[field]}={int(number) if float(number).is_integer() else number}" for field, number in pairs
    ]
