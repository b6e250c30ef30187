"""Deterministic dedupe keys: rule id + customer id + period, so a re-run, a second instance or a redelivered shard
computes the same key and the ledger/broker absorb the repeat.

Keys are `<rule>:<customer>:<period>` (firing) and `<firing>.a<index>` (action). They avoid / \\ # ? (Table Storage
keys forbid them; customer ids cannot contain them either) and stay within Service Bus' 128-character MessageId:
a long firing key keeps its head and replaces its tail by a hash.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from typing import Any

MAX_FIRING_KEY = 120
MAX_ACTION_KEY = 128
ONCE_PERIODS = ("ever", "year", "month", "week", "day")
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_-]{1,40}")


def period_of(once: str, local_date: date) -> str:
    """The customer-local calendar period a `once:` rule may fire in."""
    if once == "ever":
        return "ever"
    if once == "year":
        return f"{local_date.year}"
    if once == "month":
        return f"{local_date.year}-{local_date.month:02d}"
    if once == "week":
        year, week, _ = local_date.isocalendar()
        return f"{year}-W{week:02d}"
    if once == "day":
        return local_date.isoformat()
    raise ValueError(f"unknown period {once!r}")


def per_period(value: Any) -> str | None:
    """The period of `once: {per: expr}`: the value itself when short and plain, else its hash; null → no firing."""
    if value is None or value == "":
        return None
    text = value.isoformat() if isinstance(value, date) else str(value)
    if _SAFE_VALUE.fullmatch(text):
        return f"per-{text}"
    return "per-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def active_window(days_left: int | None, days_before: tuple[int, ...]) -> int | None:
    """The window the customer is in: the smallest `days_before` ≥ days_left (ascending tuple), or None.

    Windows are [90, 30, 7]: 85 days left is the 90 window (catches up a missed day 90), 25 days is the 30 window,
    0 days (the day itself) is the 7 window; past the date (negative) or before the first window nothing fires.
    """
    if days_left is None or days_left < 0:
        return None
    for window in days_before:
        if days_left <= window:
            return window
    return None


def window_period(window: int, anchor: date) -> str:
    """Anchored on the date, so a renewed contract (new end date) starts its windows afresh."""
    return f"w{window}-{anchor.isoformat()}"


def firing_key(rule_id: str, customer_id: str, period: str) -> str:
    key = f"{rule_id}:{customer_id}:{period}"
    if len(key) <= MAX_FIRING_KEY:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
    return f"{key[:MAX_FIRING_KEY - len(digest) - 1]}~{digest}"


def action_key(firing: str, index: int) -> str:
    key = f"{firing}.a{index}"
    if len(key) > MAX_ACTION_KEY:  # only with more than a million actions in one rule
        raise ValueError("action index too large")
    return key
