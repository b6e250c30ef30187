"""Scanning log output for personal data: the one matcher the demo's and the chaos run's log scans share."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def find_leaks(lines: Iterable[str], forbidden: Iterable[str]) -> list[str]:
    """The lines that contain any forbidden string (an address, a name, a mail body line), ignoring case.

    Case is ignored because loggers and libraries change it (an address upper-cased in a header dump is still the
    address)."""
    needles = [needle.lower() for needle in forbidden if needle]
    return [line for line in lines if any(needle in line.lower() for needle in needles)]


def read_log_lines(paths: Iterable[Path]) -> list[str]:
    """Every line of the given log files (bytes that are not UTF-8 kept as replacement characters)."""
    return [line for path in paths for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
