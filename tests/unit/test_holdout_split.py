"""The holdout split: exact enough to trust over 100,000 customers, stable, and independent across rules."""

from __future__ import annotations

import pytest

from shared.segments.holdout import CONTROL, TREATMENT, arm_of, holdout_position

CUSTOMERS = [f"C-{n:06d}" for n in range(100_000)]


@pytest.mark.parametrize("share", [0.01, 0.10, 0.25, 0.50])
def test_the_held_out_fraction_is_within_half_a_point_of_the_declared_share(share):
    held = sum(arm_of("renewal-reminder", c, share) == CONTROL for c in CUSTOMERS)
    assert abs(held / len(CUSTOMERS) - share) <= 0.005


def test_the_split_is_stable_and_no_holdout_means_no_arm():
    assert [arm_of("r", c, 0.1) for c in CUSTOMERS[:1000]] == [arm_of("r", c, 0.1) for c in CUSTOMERS[:1000]]
    assert arm_of("r", "C-1", 0) is None
    assert {arm_of("r", c, 0.5) for c in CUSTOMERS[:100]} == {CONTROL, TREATMENT}


def test_a_larger_share_only_adds_customers_to_the_control_group():
    small = {c for c in CUSTOMERS if arm_of("r", c, 0.10) == CONTROL}
    large = {c for c in CUSTOMERS if arm_of("r", c, 0.20) == CONTROL}
    assert small < large


def test_the_splits_of_two_rules_are_independent():
    """Held out of rule A says nothing about rule B: P(B | A) and P(B | not A) both match B's share, and the
    2×2 table passes a chi-square test of independence (1 degree of freedom, 3.84 = the 5% critical value)."""
    share = 0.10
    a = [arm_of("cross-sell-a-to-b", c, share) == CONTROL for c in CUSTOMERS]
    b = [arm_of("cross-sell-a-to-c", c, share) == CONTROL for c in CUSTOMERS]
    table = [[0, 0], [0, 0]]
    for in_a, in_b in zip(a, b, strict=True):
        table[in_a][in_b] += 1
    held_a = table[1][0] + table[1][1]
    assert abs(table[1][1] / held_a - share) <= 0.02  # P(B | A), ~10,000 customers
    assert abs(table[0][1] / (len(CUSTOMERS) - held_a) - share) <= 0.005  # P(B | not A)
    total = len(CUSTOMERS)
    rows, cols = [sum(r) for r in table], [table[0][j] + table[1][j] for j in range(2)]
    chi2 = sum((table[i][j] - rows[i] * cols[j] / total) ** 2 / (rows[i] * cols[j] / total)
               for i in range(2) for j in range(2))
    assert chi2 < 3.84


def test_positions_are_uniform_across_deciles():
    counts = [0] * 10
    for c in CUSTOMERS:
        counts[int(holdout_position("r", c) * 10)] += 1
    assert all(abs(n - 10_000) < 400 for n in counts)  # ±4 standard deviations of a binomial(100000, 0.1)
