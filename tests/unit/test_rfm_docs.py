"""rules/README.md documents the RFM labels and thresholds rules can use: exactly the ones segments.yaml gives, and
segments.yaml ships the code's defaults."""

from __future__ import annotations

import re

from shared.segments.config import load_segments
from shared.segments.rfm import DEFAULT
from shared.settings import APP_ROOT

SHIPPED = load_segments(APP_ROOT / "segments.yaml")


def _section() -> str:
    text = (APP_ROOT / "rules" / "README.md").read_text(encoding="utf-8")
    return text[text.index("## RFM segments"):text.index("## Holdout groups")]


def test_the_shipped_segments_file_is_the_codes_default():
    assert (SHIPPED.recency_days, SHIPPED.frequency, SHIPPED.monetary, SHIPPED.window_days) == \
        (DEFAULT.recency_days, DEFAULT.frequency, DEFAULT.monetary, DEFAULT.window_days)
    assert [(r.label, r.r, r.f, r.m) for r in SHIPPED.label_rules] == \
        [(r.label, r.r, r.f, r.m) for r in DEFAULT.label_rules]


def test_every_label_the_file_gives_is_documented_and_no_other():
    documented = set(re.findall(r"^\| `(\w+)` \|", _section(), flags=re.MULTILINE))
    assert documented == set(SHIPPED.labels)


def test_the_documented_thresholds_are_the_files():
    section = _section()
    rows = {name: line for line in section.splitlines() for name in ("rfm.r", "rfm.f", "rfm.m")
            if line.startswith(f"| `{name}`")}
    assert [int(n) for n in re.findall(r"≤ ([\d,]+)", rows["rfm.r"])] == list(SHIPPED.recency_days)
    assert [int(n) for n in re.findall(r"≥ (\d+)", rows["rfm.f"])] == list(reversed(SHIPPED.frequency))[:3]
    assert [int(n.replace(",", "")) for n in re.findall(r"≥ ([\d,]+)", rows["rfm.m"])] == \
        list(reversed(SHIPPED.monetary))
