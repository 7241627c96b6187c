"""Where one queue's workers run: the :class:`Pool` interface the engine resizes, and the pools by name.

The engine (:mod:`workers.scaling.engine`) knows only this interface; a pool
says how many workers it runs for a queue and makes that number another one.
How is its own business: local processes (:mod:`workers.scaling.local`), a
Docker Compose service, a Kubernetes deployment. ``resize`` may take effect
over the next passes (a retiring worker finishes its work first); ``workers``
counts what the pool runs for the queue and is not retiring.

A pool may also have ``close()`` (stop what it started); the command that
built it calls that when the engine stops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from config.settings import Settings


class Pool(Protocol):
    """Where one queue's workers run (local processes, a Compose service, ...)."""

    def workers(self, queue: str) -> int: ...  # workers this pool runs for queue now

    def resize(self, queue: str, desired: int, reason: str) -> None: ...


class UnknownPool(ValueError):
    """No pool is registered under that name."""


class PoolUnavailable(RuntimeError):
    """A pool could not count or resize its workers this time (the engine holds the queue for the pass)."""


def _local(settings: Settings) -> Pool:
    from workers.scaling.local import LocalPool

    return LocalPool(settings)


def _compose(settings: Settings) -> Pool:
    from workers.scaling.compose import compose_pool

    return compose_pool(settings.compose_file, settings.compose_project)


#: Pool factories by the name ``scale run --pool`` takes.
POOLS: dict[str, Callable[[Settings], Pool]] = {
    "local": _local,
    "compose": _compose,
}


def make_pool(name: str, settings: Settings) -> Pool:
    """The pool registered as ``name``, built for ``settings``.

    Raises:
        UnknownPool: no pool has that name (the message lists the names there are).
    """
    try:
        factory = POOLS[name]
    except KeyError:
        raise UnknownPool(f"no pool named {name!r}; pools: {', '.join(sorted(POOLS))}") from None
    return factory(settings)
