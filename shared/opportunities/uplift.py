"""Uplift of a rule with a holdout: did its notices earn the conversions, or would those customers have bought anyway?

Each customer a holdout rule fired for is in one arm (`shared/segments/holdout.py`): treatment (the notices went
out) or control (recorded `held_out`, nothing sent). Outcomes are attributed to both alike, so per rule:

- conversion rate per arm = customers with a won opportunity / customers in the arm, and the absolute uplift
  (treatment − control) with a 95% interval by Newcombe's hybrid score method (method 10 of Newcombe 1998, Stat
  Med 17:873–890), built from the Wilson score intervals of each rate: good coverage even for small counts and
  rates near 0 or 1, where the textbook Wald interval fails;
- revenue per customer per arm = the won amounts / customers in the arm, and the difference with a 95% Welch
  interval (unequal variances, Welch–Satterthwaite degrees of freedom, Student's t quantile).

Intention to treat: the arms are compared as assigned. Firings that could not have been sent in either arm
(suppressed: opted out, no address) are left out of both; a treated firing an approver rejected stays in treatment.
A customer counts once per rule, however often the rule fired for them. Below `MIN_CUSTOMERS_PER_ARM` customers in
either arm the result says "not enough data yet" instead of a number that would mostly be noise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from shared.opportunities.ledger import stored_amount
from shared.segments.holdout import CONTROL, TREATMENT

MIN_CUSTOMERS_PER_ARM = 30
CONFIDENCE = 0.95
NOT_ENOUGH_DATA = "not enough data yet"
_EXCLUDED = ("suppressed",)  # could not have been sent in either arm


# ---------------------------------------------------------------------------------------------------------------
# Interval maths
# ---------------------------------------------------------------------------------------------------------------
def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval for a proportion (Wilson 1927; method 3 of Newcombe 1998, Stat Med 17:857)."""
    if n <= 0:
        raise ValueError("n must be positive")
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    z = _z(confidence)
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denominator = 1 + z * z / n
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


def newcombe_interval(x1: int, n1: int, x2: int, n2: int,
                      confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(difference, lower, upper) for p1 − p2 by Newcombe's hybrid score method (method 10, Stat Med 17:873)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, confidence)
    l2, u2 = wilson_interval(x2, n2, confidence)
    difference = p1 - p2
    lower = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return difference, lower, upper


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes §6.4)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function."""
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def t_quantile(probability: float, df: float) -> float:
    """The inverse of `t_cdf` (bisection: 1e-12 is plenty for an interval printed to a few digits)."""
    if not 0 < probability < 1:
        raise ValueError("probability must be in (0, 1)")
    low, high = -1e6, 1e6
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf(middle, df) < probability:
            low = middle
        else:
            high = middle
        if high - low < 1e-12:
            break
    return (low + high) / 2


def welch_interval(a: Iterable[float], b: Iterable[float],
                   confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(difference, lower, upper) for mean(a) − mean(b), Welch's unequal-variance t interval."""
    a, b = list(a), list(b)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each sample needs at least two values")
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    var_a = sum((v - mean_a) ** 2 for v in a) / (len(a) - 1)
    var_b = sum((v - mean_b) ** 2 for v in b) / (len(b) - 1)
    sa, sb = var_a / len(a), var_b / len(b)
    difference = mean_a - mean_b
    if sa + sb == 0:
        return difference, difference, difference
    df = (sa + sb) ** 2 / (sa * sa / (len(a) - 1) + sb * sb / (len(b) - 1))
    half = t_quantile(0.5 + confidence / 2, df) * math.sqrt(sa + sb)
    return difference, difference - half, difference + half


# ---------------------------------------------------------------------------------------------------------------
# Per rule
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class _Arm:
    customers: dict[str, float]  # customer id → revenue won from this rule's opportunities
    converted: set[str]

    def to_dict(self) -> dict[str, Any]:
        n = len(self.customers)
        revenue = sum(self.customers.values())
        return {"customers": n, "converted": len(self.converted),
                "conversion_rate": round(len(self.converted) / n, 6) if n else None,
                "revenue": revenue, "revenue_per_customer": round(revenue / n, 2) if n else None}


def uplift_by_rule(rows: Iterable[Mapping[str, Any]], holdouts: Mapping[str, float] | None = None,
                   min_per_arm: int = MIN_CUSTOMERS_PER_ARM) -> dict[str, dict[str, Any]]:
    """Uplift per rule from ledger rows (`rule`, `customer_id`, `arm`, `status`, `amount`; rows without an arm
    are not part of any holdout). `holdouts` (rule id → share) adds the declared share of each rule."""
    arms: dict[str, dict[str, _Arm]] = defaultdict(lambda: {TREATMENT: _Arm({}, set()), CONTROL: _Arm({}, set())})
    for row in rows:
        arm, status = row.get("arm"), row.get("status")
        if arm not in (TREATMENT, CONTROL) or status in _EXCLUDED:
            continue
        group = arms[row.get("rule") or "(none)"][arm]
        customer = row.get("customer_id") or ""
        group.customers.setdefault(customer, 0.0)
        if status == "won":
            group.converted.add(customer)
            group.customers[customer] += stored_amount(row.get("amount"))
    return {rule: _rule_uplift(groups, (holdouts or {}).get(rule), min_per_arm)
            for rule, groups in sorted(arms.items())}


def _rule_uplift(groups: dict[str, _Arm], share: float | None, min_per_arm: int) -> dict[str, Any]:
    treated, control = groups[TREATMENT], groups[CONTROL]
    result: dict[str, Any] = {"holdout": share, "treatment": treated.to_dict(), "control": control.to_dict(),
                              "min_customers_per_arm": min_per_arm}
    if len(treated.customers) < min_per_arm or len(control.customers) < min_per_arm:
        result["status"] = NOT_ENOUGH_DATA
        return result
    difference, lower, upper = newcombe_interval(len(treated.converted), len(treated.customers),
                                                 len(control.converted), len(control.customers))
    result["status"] = "ok"
    result["conversion_uplift"] = {"difference": round(difference, 6), "ci95": [round(lower, 6), round(upper, 6)],
                                   "method": "Newcombe hybrid score (Wilson) interval, Newcombe 1998"}
    revenue, low, high = welch_interval(treated.customers.values(), control.customers.values())
    result["revenue_uplift_per_customer"] = {"difference": round(revenue, 2), "ci95": [round(low, 2), round(high, 2)],
                                             "method": "Welch t interval (unequal variances)"}
    return result
