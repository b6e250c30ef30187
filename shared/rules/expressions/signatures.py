"""Helper signatures: what each helper a rule may call takes and returns (the compiler checks calls against them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.rules.expressions.schema import ANY, BOOL, DATE, NUM, STR


@dataclass(frozen=True)
class Helper:
    runtime: str
    positional: tuple[str, ...]  # types; the last may be optional when `optional` says so
    optional: int = 0  # how many trailing positional parameters may be omitted
    keywords: tuple[str, ...] = ()
    result: str = ANY
    nullable: bool = True
    needs_today: bool = False
    purchases: bool = False  # first runtime argument is the customer's purchases
    variadic: bool = False


HELPERS: Mapping[str, Helper] = {
    "days_until": Helper("_days_until", (DATE,), result=NUM, needs_today=True),
    "days_since": Helper("_days_since", (DATE,), result=NUM, needs_today=True),
    "months_until": Helper("_months_until", (DATE,), result=NUM, needs_today=True),
    "years_since": Helper("_years_since", (DATE,), result=NUM, needs_today=True),
    "age": Helper("_years_since", (DATE,), result=NUM, needs_today=True),
    "is_anniversary": Helper("_is_anniversary", (DATE, NUM), optional=1, keywords=("years",), result=BOOL,
                             nullable=False, needs_today=True),
    "len": Helper("_len", (ANY,), result=NUM),
    "lower": Helper("_lower", (STR,), result=STR),
    "upper": Helper("_upper", (STR,), result=STR),
    "min": Helper("_min", (ANY,), variadic=True),
    "max": Helper("_max", (ANY,), variadic=True),
    "abs": Helper("_abs", (NUM,), result=NUM),
    "round": Helper("_round", (NUM, NUM), optional=1, result=NUM),
    "any_purchase": Helper("_any_purchase", (), keywords=("product", "within_days", "min_amount"), result=BOOL,
                           nullable=False, needs_today=True, purchases=True),
    "count_purchases": Helper("_count_purchases", (), keywords=("product", "within_days"), result=NUM,
                              nullable=False, needs_today=True, purchases=True),
    "spend": Helper("_spend", (), keywords=("product", "within_days"), result=NUM, nullable=False,
                    needs_today=True, purchases=True),
    "last_purchase": Helper("_last_purchase", (STR,), optional=1, keywords=("product",), result=DATE,
                            needs_today=True, purchases=True),
    "first_purchase": Helper("_first_purchase", (STR,), optional=1, keywords=("product",), result=DATE,
                             needs_today=True, purchases=True),
}
KEYWORD_TYPES = {"product": STR, "within_days": NUM, "min_amount": NUM, "years": NUM}
AGGREGATES = {"any": ("_any", BOOL), "all": ("_all", BOOL), "count": ("_sum", NUM)}
SPECIAL_CALLS = ("today", "date", *AGGREGATES)
ALL_HELPERS = tuple(sorted(set(HELPERS) | set(SPECIAL_CALLS)))
