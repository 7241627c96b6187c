"""A plain progress bar on stderr: where a long run is, and how long it has taken."""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Characters in the bar.
WIDTH = 30


class Progress:
    """Counts finished side-rounds out of ``total`` and redraws one line."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.interactive = self.stream.isatty()

    def show(self, label: str) -> None:
        """Redraw with ``label`` describing what runs now."""
        filled = int(WIDTH * self.done / self.total)
        elapsed = int(time.monotonic() - self.started)
        line = (
            f"[{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total} "
            f"{elapsed // 60}m{elapsed % 60:02d}s  {label}"
        )
        if self.interactive:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def step(self, label: str) -> None:
        """One side-round finished."""
        self.done += 1
        self.show(label)

    def note(self, text: str) -> None:
        """A line of its own (a failure, a profile being taken)."""
        self.stream.write(("\n" if self.interactive else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
