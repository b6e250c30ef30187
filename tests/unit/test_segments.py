"""RFM from segments.yaml: thresholds per dimension, the score → label mapping, file:line errors, and rules that
compare rfm.label with a label the file does not give."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from pathlib import Path

import pytest

from shared.domain.model import Customer
from shared.rules import RuleProblems, load_ruleset
from shared.segments.config import SegmentProblems, load_segments
from shared.segments.rfm import DEFAULT
from shared.settings import APP_ROOT

TODAY = date(2026, 11, 24)
TEMPLATES = APP_ROOT / "templates"


def customer(*purchases: tuple[int, float]) -> Customer:
    """A customer with purchases (days before TODAY, amount)."""
    return Customer.from_dict({"id": "C-1", "purchases": [
        {"product": "A", "date": (TODAY - timedelta(days=days)).isoformat(), "amount": amount}
        for days, amount in purchases]})


@pytest.mark.parametrize(("days", "r"), [(0, 5), (30, 5), (31, 4), (90, 4), (91, 3), (180, 3), (181, 2),
                                         (365, 2), (366, 1)])
def test_recency_edges_are_at_most_n_days(days, r):
    assert DEFAULT.rfm(customer((days, 1)), TODAY).r == r


def test_no_purchase_at_all_scores_one_everywhere():
    scores = DEFAULT.rfm(customer(), TODAY)
    assert (scores.r, scores.f, scores.m, scores.recency_days, scores.label) == (1, 1, 1, None, "hibernating")


@pytest.mark.parametrize(("count", "f"), [(1, 2), (2, 3), (3, 3), (4, 4), (6, 4), (7, 5), (12, 5)])
def test_frequency_counts_purchases_in_the_window(count, f):
    assert DEFAULT.rfm(customer(*[(10 + i, 1) for i in range(count)]), TODAY).f == f


def test_purchases_outside_the_window_or_in_the_future_do_not_count():
    scores = DEFAULT.rfm(customer((400, 9_000_000), (-3, 9_000_000), (10, 99_999)), TODAY)
    assert (scores.frequency, scores.monetary, scores.m) == (1, 99_999, 1)


@pytest.mark.parametrize(("spent", "m"), [(99_999, 1), (100_000, 2), (299_999, 2), (300_000, 3),
                                          (1_000_000, 4), (5_000_000, 5)])
def test_monetary_edges_are_at_least_n(spent, m):
    assert DEFAULT.rfm(customer((5, spent)), TODAY).m == m


def _first_labels(r: int, f: int, m: int) -> str:
    """The six labels as crmflow computed them before they became configurable (rules/README.md's table)."""
    if r >= 4 and f >= 4:
        return "champions"
    if f >= 4:
        return "loyal" if r >= 3 else "at_risk"
    if r >= 4:
        return "new" if f <= 2 else "potential"
    if r <= 2:
        return "at_risk" if f >= 3 or m >= 4 else "hibernating"
    return "potential"


def test_the_default_mapping_gives_every_score_the_label_it_always_had():
    for r, f, m in itertools.product(range(1, 6), repeat=3):
        assert DEFAULT.label_of(r, f, m) == _first_labels(r, f, m), (r, f, m)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "segments.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_sets_thresholds_window_and_labels(tmp_path):
    segments = load_segments(write(tmp_path, """\
window_days: 90
recency_days: [7, 14, 30, 60]
frequency: [1, 3, 5, 10]
monetary: [10, 20, 30, 40]
labels:
  - {label: best, r: 5, f: 4-5, m: 5}
  - {label: lapsed, r: 1-2}
  - {label: rest}
"""))
    assert segments.labels == ("best", "lapsed", "rest")
    best = segments.rfm(customer(*[(1 + i, 10) for i in range(10)]), TODAY)
    assert (best.r, best.f, best.m, best.label) == (5, 5, 5, "best")
    outside = segments.rfm(customer((100, 1_000)), TODAY)  # older than the 90-day window: counts as no spend
    assert (outside.r, outside.f, outside.label) == (1, 1, "lapsed")
    assert segments.rfm(customer((20, 15)), TODAY).label == "rest"


def test_problems_name_file_line_and_key(tmp_path):
    path = write(tmp_path, """\
recency_days: [90, 30, 180, 365]
frequency: [1, 2]
colour: blue
labels:
  - {label: a, r: 6}
  - {label: B}
  - {label: c, x: 1}
""")
    with pytest.raises(SegmentProblems) as caught:
        load_segments(path)
    text = caught.value.message
    assert f"{path.name}:1, field 'recency_days': recency_days must be strictly ascending" in text
    assert f"{path.name}:2, field 'frequency': frequency must be a list of four whole numbers" in text
    assert f"{path.name}:3, field 'colour': unknown key 'colour'" in text
    assert f"{path.name}:5, field 'r': r must be a score 1..5 or a range such as 4-5, not 6" in text
    assert f"{path.name}:6, field 'label': label must be a name" in text
    assert f"{path.name}:7, field 'x': unknown key 'x'" in text


def test_labels_must_cover_every_score_and_be_at_most_eight(tmp_path):
    with pytest.raises(SegmentProblems, match=r":1, field 'labels': 124 scores get no label \(e.g. r,f,m = 111,"):
        load_segments(write(tmp_path, "labels:\n  - {label: top, r: 5, f: 5, m: 5}\n"))
    nine = "labels:\n" + "".join(f"  - {{label: l{i}, r: {1 + i % 5}}}\n" for i in range(9)) + "  - {label: l0}\n"
    with pytest.raises(SegmentProblems, match="at most 8 labels, not 9"):
        load_segments(write(tmp_path, nine))


def test_a_missing_or_invalid_file_is_a_clear_error(tmp_path):
    with pytest.raises(SegmentProblems, match="segments file does not exist"):
        load_segments(tmp_path / "nope.yaml")
    with pytest.raises(SegmentProblems, match=r"segments.yaml:3: not valid YAML"):
        load_segments(write(tmp_path, "labels:\n  - {label: [\n"))


RULE = """\
- id: win-back
  kind: alert
  on: [sweep]
  when: "{when}"
  once: ever
  actions:
    - crm_task: {{subject: "call back"}}
"""


def rules_dir(tmp_path: Path, when: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(RULE.format(when=when), encoding="utf-8")
    return folder


@pytest.mark.parametrize("when", ["rfm.label == 'at_rsk'", "'at_rsk' == rfm.label", "rfm.label != 'vip'",
                                  "rfm.label in ['new', 'at_rsk']", "plan == 'Basic' and rfm.label == 'at_rsk'"])
def test_validate_refuses_a_label_segments_does_not_give(tmp_path, when):
    with pytest.raises(RuleProblems) as caught:
        load_ruleset(rules_dir(tmp_path, when), TEMPLATES)
    assert "r.yaml:4, rule 'win-back', field 'when': unknown RFM label" in caught.value.message
    assert "known: champions, loyal, at_risk, new, potential, hibernating" in caught.value.message


def test_the_hint_names_the_closest_label(tmp_path):
    with pytest.raises(RuleProblems, match="unknown RFM label 'at_rsk' \\(did you mean 'at_risk'\\?"):
        load_ruleset(rules_dir(tmp_path, "rfm.label == 'at_rsk'"), TEMPLATES)


def test_rules_use_the_labels_and_thresholds_of_their_segments_file(tmp_path):
    segments = write(tmp_path, "recency_days: [1, 2, 3, 4]\nlabels:\n  - {label: fresh, r: 5}\n  - {label: stale}\n")
    ruleset = load_ruleset(rules_dir(tmp_path, "rfm.label == 'stale'"), TEMPLATES, segments=segments)
    when = ruleset.rules[0].when.fn
    assert when(customer((3, 1)), TODAY, None) is True  # 3 days: r = 3 with these edges (5 with the shipped ones)
    assert when(customer((1, 1)), TODAY, None) is False
    with pytest.raises(RuleProblems, match="unknown RFM label 'at_risk'"):
        load_ruleset(rules_dir(tmp_path, "rfm.label == 'at_risk'"), TEMPLATES, segments=segments)


def test_a_broken_segments_file_fails_the_rules_with_its_location(tmp_path):
    segments = write(tmp_path, "window_days: 0\n")
    with pytest.raises(RuleProblems, match=r"segments.yaml:1, field 'window_days': window_days must be"):
        load_ruleset(rules_dir(tmp_path, "true"), TEMPLATES, segments=segments)
