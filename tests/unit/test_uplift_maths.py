"""Interval maths of the uplift report, against published worked examples."""

from __future__ import annotations

import pytest

from shared.opportunities.uplift import (
    NOT_ENOUGH_DATA,
    newcombe_interval,
    t_quantile,
    uplift_by_rule,
    welch_interval,
    wilson_interval,
)


def test_wilson_interval_matches_newcombe_1998_single_proportion_example():
    """Newcombe RG. Two-sided confidence intervals for the single proportion: comparison of seven methods.
    Stat Med 1998;17:857-872, Table I: 81/263 → Wilson score interval 0.2553 to 0.3662."""
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


@pytest.mark.parametrize(("counts", "expected"), [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
])
def test_newcombe_hybrid_score_matches_the_papers_worked_examples(counts, expected):
    """Newcombe RG. Interval estimation for the difference between independent proportions: comparison of eleven
    methods. Stat Med 1998;17:873-890, Table II, method 10 (score interval from Wilson intervals, no continuity
    correction). The first two are also the reference values of the R package propint's tests."""
    difference, low, high = newcombe_interval(*counts)
    x1, n1, x2, n2 = counts
    assert difference == pytest.approx(x1 / n1 - x2 / n2)
    assert (round(low, 4), round(high, 4)) == expected


@pytest.mark.parametrize(("df", "quantile"), [(1, 12.7062), (2, 4.3027), (5, 2.5706), (10, 2.2281), (30, 2.0423),
                                              (120, 1.9799)])
def test_t_quantiles_match_the_printed_table(df, quantile):
    """Two-sided 95% critical values of Student's t (any statistics table, e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2)."""
    assert round(t_quantile(0.975, df), 4) == quantile


def test_welch_interval_computed_by_hand():
    """a = 1..5: mean 3, variance 2.5; b = 2, 4, 6, 8, 10, 12: mean 7, variance 14.
    se² = 2.5/5 + 14/6 = 2.8333; df = 2.8333² / (0.5²/4 + 2.3333²/5) = 8.0278 / 1.1514 = 6.972;
    t(0.975, 6.972) = 2.3660; half width = 2.3660 × 1.6833 = 3.9826: −4 ± 3.98."""
    difference, low, high = welch_interval([1, 2, 3, 4, 5], [2, 4, 6, 8, 10, 12])
    assert difference == -4
    assert (round(low, 2), round(high, 2)) == (-7.98, -0.02)


def rows(rule, arm, customers, won=0, amount=0.0, start=0):
    return [{"rule": rule, "arm": arm, "customer_id": f"{arm}-{start + i}",
             "status": "won" if i < won else "queued" if arm == "treatment" else "held_out",
             "amount": amount if i < won else None} for i in range(customers)]


def test_below_the_minimum_sample_the_rule_has_not_enough_data():
    report = uplift_by_rule(rows("r", "treatment", 40, won=5) + rows("r", "control", 29, won=1), {"r": 0.4})
    assert report["r"]["status"] == NOT_ENOUGH_DATA and "conversion_uplift" not in report["r"]
    assert report["r"]["treatment"]["customers"] == 40 and report["r"]["control"]["conversion_rate"] == \
        round(1 / 29, 6)


def test_customers_count_once_suppressed_firings_are_left_out_and_rows_without_an_arm_ignored():
    data = rows("r", "treatment", 30, won=3, amount=100.0) + rows("r", "control", 30)
    data += [{"rule": "r", "arm": "treatment", "customer_id": "treatment-0", "status": "won", "amount": 50.0},
             {"rule": "r", "arm": "control", "customer_id": "x", "status": "suppressed", "amount": None},
             {"rule": "other", "arm": None, "customer_id": "y", "status": "won", "amount": 1.0}]
    report = uplift_by_rule(data)
    assert list(report) == ["r"]
    treated = report["r"]["treatment"]
    assert (treated["customers"], treated["converted"], treated["revenue"]) == (30, 3, 350.0)
    assert report["r"]["control"]["customers"] == 30
    assert report["r"]["status"] == "ok"
    assert report["r"]["conversion_uplift"]["difference"] == 0.1
