"""The machine's Redis as a Celery result backend, for tests.

A test that needs it skips locally when Redis does not answer and fails under
``CI=true`` (like the broker tests).
"""

from __future__ import annotations

import os

import pytest

from tests.support.broker import in_ci

#: The machine's Redis; a database of its own so the tests' keys stay apart.
REDIS_URL = os.environ.get("PLATFORM_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")


def redis_problem() -> str | None:
    """Why Redis at :data:`REDIS_URL` can't be used, or None."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
        return f"Redis at {REDIS_URL} is not usable: {exc!r}"
    return None


def require_redis() -> str:
    """:data:`REDIS_URL`, once it answers; skip locally, fail under CI=true, when it does not."""
    problem = redis_problem()
    if problem:
        if in_ci():
            pytest.fail(f"CI=true and Redis is required: {problem}")
        pytest.skip(problem)
    return REDIS_URL
