"""Load `segments.yaml`: RFM thresholds per dimension and the score → label mapping, checked with file:line errors.

```yaml
window_days: 365                          # frequency and monetary count purchases of the last N days
recency_days: [30, 90, 180, 365]          # at most N days since the last purchase → r = 5, 4, 3, 2 (else 1)
frequency: [1, 2, 4, 7]                   # at least N purchases in the window → f = 2, 3, 4, 5 (else 1)
monetary: [100000, 300000, 1000000, 5000000]   # at least N spent in the window → m = 2, 3, 4, 5 (else 1)
labels:                                   # first match wins; ranges are inclusive; an omitted score is 1-5
  - {label: champions, r: 4-5, f: 4-5}
  - {label: potential}                    # the last entry without ranges catches the rest
```
At most 8 distinct labels; together the entries must give every score (r, f, m in 1..5) a label. Every key is
optional: an omitted one keeps the shipped value (`shared/segments/rfm.py`).
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Any

import yaml

from shared.domain.errors import InvalidInput, Location
from shared.segments.rfm import DEFAULT, MAX_LABELS, LabelRule, Segments

KEYS = ("window_days", "recency_days", "frequency", "monetary", "labels")
LABEL_KEYS = ("label", "r", "f", "m")
_LABEL = re.compile(r"[a-z][a-z0-9_]{0,31}")
_RANGE = re.compile(r"\s*([1-5])\s*(?:-\s*([1-5])\s*)?")


class SegmentProblems(InvalidInput):
    """Every problem in a segments file, each with its file:line."""

    def __init__(self, problems: list[tuple[Location, str]]):
        self.problems = problems
        lines = [f"{where}: {message}" for where, message in problems]
        super().__init__(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in the segments file:\n  "
                         + "\n  ".join(lines))


def load_segments(path: Path | None) -> Segments:
    """The segments of `path`; None gives the shipped defaults. Raises SegmentProblems (an InvalidInput)."""
    if path is None:
        return DEFAULT
    from shared.rules.loader import _Loader, _Map  # the rules' YAML flavour: line numbers, no duplicate keys

    shown = _shown(Path(path))
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise SegmentProblems([(Location(file=shown), "segments file does not exist")]) from None
    except UnicodeDecodeError:
        raise SegmentProblems([(Location(file=shown), "not UTF-8 text")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SegmentProblems([(Location(shown, mark.line + 1 if mark else None),
                                f"not valid YAML: {getattr(exc, 'problem', None) or exc}")]) from None
    if data is None:
        return Segments(file=shown)
    checker = _Checker(shown, _Map)
    segments = checker.check(data)
    if checker.problems:
        raise SegmentProblems(checker.problems)
    return segments


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


class _Checker:
    def __init__(self, file: str, mapping_type: type):
        self.file, self.mapping_type = file, mapping_type
        self.problems: list[tuple[Location, str]] = []

    def fail(self, mapping: Any, key: str | None, message: str) -> None:
        lines = getattr(mapping, "lines", {})
        line = lines.get(key, getattr(mapping, "line", None)) if key is not None else getattr(mapping, "line", None)
        self.problems.append((Location(self.file, line, key), message))

    def check(self, data: Any) -> Segments:
        if not isinstance(data, self.mapping_type):
            self.problems.append((Location(self.file, 1), "a segments file is a mapping (window_days:, "
                                                          "recency_days:, frequency:, monetary:, labels:)"))
            return DEFAULT
        for key, line in data.duplicates:
            self.problems.append((Location(self.file, line, key), "key appears twice"))
        for key in data:
            if key not in KEYS:
                self.fail(data, key, f"unknown key {key!r} (allowed: {', '.join(KEYS)})")
        window = data.get("window_days", DEFAULT.window_days)
        if not _whole(window) or not 1 <= window <= 3650:
            self.fail(data, "window_days", "window_days must be a whole number of days 1..3650")
            window = DEFAULT.window_days
        recency = self.edges(data, "recency_days", DEFAULT.recency_days, whole=True)
        frequency = self.edges(data, "frequency", DEFAULT.frequency, whole=True)
        monetary = self.edges(data, "monetary", DEFAULT.monetary, whole=False)
        labels = self.labels(data) if "labels" in data else DEFAULT.label_rules
        segments = Segments(recency_days=recency, frequency=frequency, monetary=monetary, window_days=window,
                            label_rules=labels, file=self.file)
        if labels and not self.problems:
            missing = segments.uncovered()
            if missing:
                shown = ", ".join(f"{r}{f}{m}" for r, f, m in missing[:5]) + (" ..." if len(missing) > 5 else "")
                self.fail(data, "labels", f"{len(missing)} scores get no label (e.g. r,f,m = {shown}); "
                                          "end with an entry without ranges to catch the rest")
        return segments

    def edges(self, data: Any, key: str, default: tuple, *, whole: bool) -> tuple:
        if key not in data:
            return default
        value = data[key]
        kind = "whole numbers" if whole else "numbers"
        if not isinstance(value, list) or len(value) != 4 or not all(
                (_whole(v) if whole else _number(v)) and v >= 0 for v in value):
            self.fail(data, key, f"{key} must be a list of four {kind} ≥ 0 (the edges between scores 1..5)")
            return default
        if any(b <= a for a, b in itertools.pairwise(value)):
            self.fail(data, key, f"{key} must be strictly ascending, e.g. {list(default)}")
            return default
        return tuple(value)

    def labels(self, data: Any) -> tuple[LabelRule, ...]:
        raw = data["labels"]
        if not isinstance(raw, list) or not raw:
            self.fail(data, "labels", "labels must be a non-empty list of {label: name, r: 4-5, f: ..., m: ...}")
            return ()
        rules: list[LabelRule] = []
        for item in raw:
            if not isinstance(item, self.mapping_type):
                self.fail(data, "labels", "each label entry is a mapping such as {label: champions, r: 4-5}")
                continue
            for key in item:
                if key not in LABEL_KEYS:
                    self.fail(item, key, f"unknown key {key!r} (allowed: {', '.join(LABEL_KEYS)})")
            name = item.get("label")
            if not isinstance(name, str) or not _LABEL.fullmatch(name):
                self.fail(item, "label" if "label" in item else None,
                          "label must be a name: lower-case letters, digits and _, at most 32 characters")
                continue
            ranges = {}
            for score in ("r", "f", "m"):
                if score in item:
                    ranges[score] = self.score_range(item, score)
            if None in ranges.values():
                continue
            rules.append(LabelRule(name, **ranges, line=item.line))
        names = list(dict.fromkeys(rule.label for rule in rules))
        if len(names) > MAX_LABELS:
            self.fail(data, "labels", f"at most {MAX_LABELS} labels, not {len(names)} ({', '.join(names)})")
        return tuple(rules)

    def score_range(self, item: Any, score: str) -> tuple[int, int] | None:
        value = item[score]
        match = _RANGE.fullmatch(str(value)) if isinstance(value, int | str) and not isinstance(value, bool) \
            else None
        low, high = (int(match[1]), int(match[2] or match[1])) if match else (0, 0)
        if not match or low > high:
            self.fail(item, score, f"{score} must be a score 1..5 or a range such as 4-5, not {value!r}")
            return None
        return low, high


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value \
        and value not in (float("inf"), float("-inf"))
