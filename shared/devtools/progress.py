"""A small progress bar for long CLI work (stderr; one line refreshed on a terminal, periodic lines otherwise)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None,
                 interval: float = 0.2):
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.interval = interval if self.tty else max(interval, 5.0)
        self.count = 0
        self.started = self.last = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._draw(now)

    def _draw(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.count / elapsed
        if self.total:
            done = min(self.count / self.total, 1.0)
            bar = "#" * int(done * 30)
            eta = (self.total - self.count) / rate if rate and not final else 0
            text = (f"{self.label} [{bar:<30}] {self.count:,}/{self.total:,} {done:4.0%} "
                    f"{rate:,.0f}/s" + (f" eta {eta:,.0f}s" if eta else ""))
        else:
            text = f"{self.label} {self.count:,} {rate:,.0f}/s"
        if self.tty:
            self.stream.write("\r" + text.ljust(90) + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> float:
        """Draw the final state; returns the elapsed seconds."""
        now = time.monotonic()
        if self.total and self.count < self.total:
            self.total = self.count  # the total was an estimate (e.g. physical lines of a CSV)
        self._draw(now, final=True)
        return now - self.started


def count_lines(path) -> int:
    """Physical lines of a file (a cheap upper bound for a progress total)."""
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
