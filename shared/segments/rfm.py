"""RFM segments from purchase history, usable in rules as `rfm.r`, `rfm.f`, `rfm.m`, `rfm.score`, `rfm.label`.

Scores are 1..5 on fixed thresholds (yen amounts, the last 365 days), so a customer's segment does not depend on
who else is in the file and can be computed per customer in a sweep shard. Computed only for rules that read `rfm`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, timedelta

from shared.domain.model import Customer

RECENCY_DAYS = (30, 90, 180, 365)  # at most this many days since the last purchase → 5, 4, 3, 2 (else 1)
FREQUENCY = (1, 2, 4, 7)  # at least this many purchases in 365 days → 2, 3, 4, 5 (none → 1)
MONETARY = (100_000, 300_000, 1_000_000, 5_000_000)  # at least this much spent in 365 days → 2, 3, 4, 5


@dataclass(frozen=True)
class Rfm:
    r: int
    f: int
    m: int
    recency_days: int | None
    frequency: int
    monetary: float

    @property
    def score(self) -> str:
        return f"{self.r}{self.f}{self.m}"

    @property
    def label(self) -> str:
        """champions, loyal, new, at_risk, hibernating or potential."""
        if self.r >= 4 and self.f >= 4:
            return "champions"
        if self.f >= 4:
            return "loyal" if self.r >= 3 else "at_risk"
        if self.r >= 4:
            return "new" if self.f <= 2 else "potential"
        if self.r <= 2:
            return "at_risk" if self.f >= 3 or self.m >= 4 else "hibernating"
        return "potential"


def rfm(customer: Customer, today: date) -> Rfm:
    since = today - timedelta(days=365)
    dates = [p.date for p in customer.purchases if p.date and p.date <= today]
    last = max(dates, default=None) or customer.last_purchase_date
    recent = [p for p in customer.purchases if p.date and since <= p.date <= today]
    monetary = sum(p.amount or 0 for p in recent) if recent else float(customer.annual_spend or 0)
    recency = (today - last).days if last else None
    r = 1 if recency is None else 5 - bisect_left(RECENCY_DAYS, recency)
    f = 1 + bisect_right(FREQUENCY, len(recent))
    m = 1 + bisect_right(MONETARY, monetary)
    return Rfm(r=r, f=f, m=m, recency_days=recency, frequency=len(recent), monetary=monetary)
