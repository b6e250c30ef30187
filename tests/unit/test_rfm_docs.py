"""rules/README.md documents the RFM labels and thresholds rules can use: exactly the ones the code computes."""

from __future__ import annotations

import itertools
import re

from shared.segments.rfm import FREQUENCY, MONETARY, RECENCY_DAYS, Rfm
from shared.settings import APP_ROOT


def _section() -> str:
    text = (APP_ROOT / "rules" / "README.md").read_text(encoding="utf-8")
    return text[text.index("## RFM segments"):]


def test_every_label_the_code_can_give_is_documented_and_no_other():
    labels = {Rfm(r, f, m, None, 0, 0).label for r, f, m in itertools.product(range(1, 6), repeat=3)}
    documented = set(re.findall(r"^\| `(\w+)` \|", _section(), flags=re.MULTILINE))
    assert documented == labels


def test_the_documented_thresholds_are_the_codes():
    section = _section()
    rows = {name: line for line in section.splitlines() for name in ("rfm.r", "rfm.f", "rfm.m")
            if line.startswith(f"| `{name}`")}
    assert [int(n) for n in re.findall(r"≤ ([\d,]+)", rows["rfm.r"])] == list(RECENCY_DAYS)
    assert [int(n) for n in re.findall(r"≥ (\d+)", rows["rfm.f"])] == list(reversed(FREQUENCY))[:3]
    assert [int(n.replace(",", "")) for n in re.findall(r"≥ ([\d,]+)", rows["rfm.m"])] == list(reversed(MONETARY))
