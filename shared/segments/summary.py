"""How many customers each RFM label and score gets (`crmflow segments`, the dashboard)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from shared.domain.model import Customer
from shared.segments.rfm import Segments


@dataclass
class SegmentCounts:
    customers: int = 0
    by_label: Counter = field(default_factory=Counter)
    by_score: Counter = field(default_factory=Counter)

    def to_dict(self, labels: Iterable[str]) -> dict[str, Any]:
        """Every declared label (zero included, in declared order) and the scores that occur, highest first."""
        return {"customers": self.customers, "by_label": {label: self.by_label[label] for label in labels},
                "by_score": dict(sorted(self.by_score.items(), reverse=True))}


def count_segments(customers: Iterable[Customer], segments: Segments, today: date,
                   on_customer: Callable[[], None] | None = None) -> SegmentCounts:
    """Counts per label and per score (`"545"`) of `customers` on `today`."""
    counts = SegmentCounts()
    for customer in customers:
        scores = segments.rfm(customer, today)
        counts.customers += 1
        counts.by_label[scores.label] += 1
        counts.by_score[scores.score] += 1
        if on_customer is not None:
            on_customer()
    return counts
