"""RFM segments from purchase history, usable in rules as `rfm.r`, `rfm.f`, `rfm.m`, `rfm.score`, `rfm.label`.

Scores are 1..5 on fixed thresholds (amounts in the customers' currency, over a window of days), so a customer's
segment does not depend on who else is in the file and can be computed per customer in a sweep shard. The
thresholds and the score → label mapping come from `segments.yaml` (`shared/segments/config.py`); `DEFAULT` holds
the values crmflow ships with. Computed only for rules that read `rfm`.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import date, timedelta

from shared.domain.model import Customer

RECENCY_DAYS = (30, 90, 180, 365)  # at most this many days since the last purchase → 5, 4, 3, 2 (else 1)
FREQUENCY = (1, 2, 4, 7)  # at least this many purchases in the window → 2, 3, 4, 5 (none → 1)
MONETARY = (100_000, 300_000, 1_000_000, 5_000_000)  # at least this much spent in the window → 2, 3, 4, 5
WINDOW_DAYS = 365
MAX_LABELS = 8
SCORES = range(1, 6)


@dataclass(frozen=True)
class LabelRule:
    """`label` for every score whose r, f and m lie in the given inclusive ranges (an omitted range is 1..5)."""

    label: str
    r: tuple[int, int] = (1, 5)
    f: tuple[int, int] = (1, 5)
    m: tuple[int, int] = (1, 5)
    line: int | None = None

    def matches(self, r: int, f: int, m: int) -> bool:
        return self.r[0] <= r <= self.r[1] and self.f[0] <= f <= self.f[1] and self.m[0] <= m <= self.m[1]


# Today's six labels as first-match ranges (the table in rules/README.md says the same in words).
DEFAULT_LABELS = (
    LabelRule("champions", r=(4, 5), f=(4, 5)),
    LabelRule("loyal", r=(3, 3), f=(4, 5)),
    LabelRule("at_risk", r=(1, 2), f=(3, 5)),
    LabelRule("at_risk", r=(1, 2), m=(4, 5)),
    LabelRule("new", r=(4, 5), f=(1, 2)),
    LabelRule("potential", r=(4, 5)),
    LabelRule("hibernating", r=(1, 2)),
    LabelRule("potential"),
)


@dataclass(frozen=True)
class Segments:
    """RFM thresholds (each ascending, four values: the edges between scores 1..5) and the labels.

    `label_rules` are tried in order, the first match wins; together they must cover every score.
    """

    recency_days: tuple[int, ...] = RECENCY_DAYS  # at most N days since the last purchase → 5, 4, 3, 2
    frequency: tuple[int, ...] = FREQUENCY  # at least N purchases in the window → 2, 3, 4, 5
    monetary: tuple[float, ...] = MONETARY  # at least N spent in the window → 2, 3, 4, 5
    window_days: int = WINDOW_DAYS
    label_rules: tuple[LabelRule, ...] = DEFAULT_LABELS
    file: str | None = None
    _table: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for r, f, m in itertools.product(SCORES, repeat=3):
            found = next((rule.label for rule in self.label_rules if rule.matches(r, f, m)), None)
            if found is not None:
                self._table[(r, f, m)] = found

    @property
    def labels(self) -> tuple[str, ...]:
        """The distinct label names, in the order they are declared."""
        return tuple(dict.fromkeys(rule.label for rule in self.label_rules))

    def uncovered(self) -> list[tuple[int, int, int]]:
        """Scores no label rule matches (a valid configuration has none)."""
        return [s for s in itertools.product(SCORES, repeat=3) if s not in self._table]

    def label_of(self, r: int, f: int, m: int) -> str:
        return self._table[(r, f, m)]

    def rfm(self, customer: Customer, today: date) -> Rfm:
        """The customer's scores on `today` (purchases after today are ignored)."""
        since = today - timedelta(days=self.window_days)
        dates = [p.date for p in customer.purchases if p.date and p.date <= today]
        last = max(dates, default=None) or customer.last_purchase_date
        recent = [p for p in customer.purchases if p.date and since <= p.date <= today]
        monetary = sum(p.amount or 0 for p in recent) if recent else float(customer.annual_spend or 0)
        recency = (today - last).days if last else None
        r = 1 if recency is None else 5 - bisect_left(self.recency_days, recency)
        f = 1 + bisect_right(self.frequency, len(recent))
        m = 1 + bisect_right(self.monetary, monetary)
        return Rfm(r=r, f=f, m=m, recency_days=recency, frequency=len(recent), monetary=monetary,
                   label=self.label_of(r, f, m))


DEFAULT = Segments()


@dataclass(frozen=True)
class Rfm:
    r: int
    f: int
    m: int
    recency_days: int | None
    frequency: int
    monetary: float
    label: str

    @property
    def score(self) -> str:
        return f"{self.r}{self.f}{self.m}"


def rfm(customer: Customer, today: date, segments: Segments = DEFAULT) -> Rfm:
    """The customer's RFM on `today` under `segments` (default: the shipped thresholds and labels)."""
    return segments.rfm(customer, today)
