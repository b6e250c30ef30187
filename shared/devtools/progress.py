"""Progress of long CLI work on stderr, drawn by tqdm (one refreshed line on a terminal, a line every few seconds
when stderr is a file or pipe)."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class Progress:
    """`advance()` per item, `close()` at the end (returns the elapsed seconds)."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None,
                 interval: float = 0.2):
        stream = stream or sys.stderr
        tty = getattr(stream, "isatty", lambda: False)()
        self._bar = tqdm(total=total, desc=label, file=stream if tty else _Lines(stream),
                         mininterval=interval if tty else max(interval, 5.0), dynamic_ncols=tty, ascii=not tty)

    def advance(self, n: int = 1) -> None:
        self._bar.update(n)

    def close(self) -> float:
        """Draw the final state; returns the elapsed seconds."""
        bar = self._bar
        if bar.total and bar.n < bar.total:
            bar.total = bar.n  # the total was an estimate (e.g. physical lines of a CSV)
        elapsed = bar.format_dict["elapsed"]
        bar.close()
        return elapsed


class _Lines:
    """tqdm redraws its line with carriage returns even into a file or pipe, where a log then shows one endless
    line; this turns each redraw into a line of its own."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def count_lines(path) -> int:
    """Physical lines of a file (a cheap upper bound for a progress total; tqdm does not count for us)."""
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
