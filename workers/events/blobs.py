"""The claim-check blob store: where an oversized event's data waits for its consumers.

A publisher with claim-check on puts a body over the size limit here and
sends a small reference instead (the ``claimcheck`` extension attribute plus a
JSON body naming the blob, its size and SHA-256). Consumers load it
transparently (:func:`load_claimed`).

Lifetime: a blob lives at least as long as any message that points to it.
Nothing deletes a blob on consumption (other subscribers, retries, dead
letters, DLQ replays and backfills from the event log still point to it);
:func:`collect_garbage` deletes only blobs older than a given age that no
message in the given queues references, and an operator runs it with the
event log's retention as that age.

The store is a :class:`BlobStore` protocol; :class:`DirectoryBlobStore` (a
local or shared directory) is the one implementation here. An object store
(S3, GCS) fits the same four methods.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

#: What a blob key may look like (event ids are UUIDs; keep keys path-safe).
KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class BlobError(RuntimeError):
    """A blob could not be stored or loaded."""


class BlobStore(Protocol):
    """Where claim-checked payloads live."""

    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key``; return the reference messages carry."""
        ...

    def get(self, reference: str) -> bytes:
        """The data of ``reference``. Raises :class:`BlobError` if it is gone."""
        ...

    def delete(self, reference: str) -> None: ...

    def references(self) -> Iterator[tuple[str, float]]:
        """Every stored reference with its creation time (epoch seconds)."""
        ...


class DirectoryBlobStore:
    """Blobs as files in one directory (written atomically: temp file, then rename)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, reference: str) -> Path:
        if not KEY.match(reference):
            raise BlobError(f"not a blob reference: {reference!r}")
        return self.root / reference

    def put(self, key: str, data: bytes) -> str:
        reference = f"{key}.blob"
        path = self._path(reference)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return reference

    def get(self, reference: str) -> bytes:
        try:
            return self._path(reference).read_bytes()
        except FileNotFoundError:
            raise BlobError(f"claim-check blob {reference!r} is not in {self.root}") from None

    def delete(self, reference: str) -> None:
        self._path(reference).unlink(missing_ok=True)

    def references(self) -> Iterator[tuple[str, float]]:
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            if path.is_file() and not path.name.startswith("."):
                yield path.name, path.stat().st_mtime


def open_blob_store(directory: str) -> BlobStore:
    """The configured blob store (a directory; an object store would be chosen here by URL)."""
    return DirectoryBlobStore(directory)


def claim_check_body(reference: str, data: bytes) -> bytes:
    """The small body sent instead of ``data``: where it is, its size and digest."""
    return json.dumps(
        {"claimcheck": reference, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        separators=(",", ":"),
    ).encode()


def load_claimed(store: BlobStore, reference: str, body: Any) -> bytes:
    """The data a claim-check message points to, checked against its digest.

    Raises:
        BlobError: the blob is gone or does not match the digest in ``body``.
    """
    data = store.get(reference)
    expected = body.get("sha256") if isinstance(body, dict) else None
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise BlobError(f"claim-check blob {reference!r} does not match its SHA-256")
    return data


def collect_garbage(store: BlobStore, older_than: float, referenced: Iterable[str]) -> list[str]:
    """Delete blobs older than ``older_than`` seconds that no live message references.

    Returns:
        The deleted references.
    """
    keep = set(referenced)
    cutoff = time.time() - older_than
    deleted = []
    for reference, created in list(store.references()):
        if created < cutoff and reference not in keep:
            store.delete(reference)
            deleted.append(reference)
    return deleted
