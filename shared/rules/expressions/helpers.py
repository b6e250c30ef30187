"""The runtime helpers: the only functions compiled rule code can call (`RUNTIME` is its whole namespace).

All are null-safe: a null argument gives null/false. Date helpers take `today`, the customer's local date.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

MAX_ROUND_DIGITS = 15  # round(x, n): Python computes 10**|n| for integers, so a huge n never returns


def as_date(value: Any) -> date | None:
    """A date from a date, a datetime or ISO text (custom fields come from CSV); anything else is null."""
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _days_until(value: Any, today: date) -> int | None:
    d = as_date(value)
    return None if d is None else (d - today).days


def _days_since(value: Any, today: date) -> int | None:
    d = as_date(value)
    return None if d is None else (today - d).days


def months_between(start: date, end: date) -> int:
    """Whole calendar months from start to end (negative when end is earlier)."""
    months = (end.year - start.year) * 12 + end.month - start.month
    if months > 0 and end.day < start.day:
        months -= 1
    elif months < 0 and end.day > start.day:
        months += 1
    return months


def _months_until(value: Any, today: date) -> int | None:
    d = as_date(value)
    return None if d is None else months_between(today, d)


def _years_since(value: Any, today: date) -> int | None:
    d = as_date(value)
    if d is None:
        return None
    return today.year - d.year - ((today.month, today.day) < (d.month, d.day))


def anniversary_in(year: int, original: date) -> date:
    """The anniversary of `original` in `year`: 29 Feb falls on 28 Feb in common years."""
    try:
        return original.replace(year=year)
    except ValueError:  # 29 February in a common year
        return date(year, 2, 28)


def _is_anniversary(value: Any, today: date, years: Any = None) -> bool:
    d = as_date(value)
    if d is None or today.year <= d.year or anniversary_in(today.year, d) != today:
        return False
    return years is None or today.year - d.year == years


def _len(value: Any) -> int | None:
    return len(value) if isinstance(value, list | tuple | str | Mapping) else None


def _lower(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) else None


def _upper(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) else None


def _min(*values: Any) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _max(*values: Any) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _abs(value: Any) -> Any:
    return abs(value) if _is_number(value) else None


def _round(value: Any, digits: Any = 0) -> Any:
    if not (_is_number(value) and _is_number(digits)) or abs(digits) > MAX_ROUND_DIGITS:
        return None  # a field holding an absurd digit count is null, like any other unusable value
    return round(value, int(digits))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _matching_purchases(purchases, today: date, product: Any, within_days: Any, min_amount: Any = None):
    since = today - timedelta(days=within_days) if within_days is not None else None
    for p in purchases:
        if product is not None and p.product != product:
            continue
        if since is not None and (p.date is None or not since <= p.date <= today):
            continue
        if min_amount is not None and (p.amount is None or p.amount < min_amount):
            continue
        yield p


def _any_purchase(purchases, today, product=None, within_days=None, min_amount=None) -> bool:
    if not purchases:
        return False
    return next(_matching_purchases(purchases, today, product, within_days, min_amount), None) is not None


def _count_purchases(purchases, today, product=None, within_days=None) -> int:
    return sum(1 for _ in _matching_purchases(purchases or (), today, product, within_days))


def _spend(purchases, today, product=None, within_days=None) -> float:
    return sum(p.amount or 0 for p in _matching_purchases(purchases or (), today, product, within_days))


def _last_purchase(purchases, today, product=None) -> date | None:
    # A plain loop rather than _matching_purchases (no date window here): these run for every customer.
    last = None
    for p in purchases or ():
        if (product is None or p.product == product) and p.date and (last is None or p.date > last):
            last = p.date
    return last


def _first_purchase(purchases, today, product=None) -> date | None:
    first = None
    for p in purchases or ():
        if (product is None or p.product == product) and p.date and (first is None or p.date < first):
            first = p.date
    return first


def _get(obj: Any, key: Any) -> Any:
    """Null-safe attribute/key/index access for values whose type is only known at run time."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    if isinstance(obj, list | tuple | str):
        return obj[key] if isinstance(key, int) and -len(obj) <= key < len(obj) else None
    if isinstance(key, str) and not key.startswith("_"):
        fields = getattr(type(obj), "__dataclass_fields__", None)
        if fields is not None and key in fields:
            return getattr(obj, key)
        extra = getattr(obj, "extra", None)
        return extra.get(key) if isinstance(extra, Mapping) else None
    return None


def _contains(container: Any, item: Any, negate: bool = False) -> bool:
    """`in` / `not in` for run-time-typed containers: null or a non-container on either side is false both ways."""
    if item is None or container is None:
        return False
    if isinstance(container, str):
        return isinstance(item, str) and (item in container) != negate
    if isinstance(container, list | tuple | set | frozenset | Mapping):
        try:
            return (item in container) != negate
        except TypeError:  # unhashable item against a mapping
            return False
    return False


def _arith(op: str, a: Any, b: Any) -> Any:
    """Arithmetic for run-time-typed operands: numbers only (no `'x' * 10**9`), null or /0 gives null."""
    if not (_is_number(a) and _is_number(b)):
        return a + b if op == "+" and isinstance(a, str) and isinstance(b, str) else None
    if op in ("/", "//", "%") and b == 0:
        return None
    return _OPS[op](a, b)


_OPS: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
    "//": lambda a, b: a // b, "%": lambda a, b: a % b,
}


def _add_days(d: date | None, days: Any) -> date | None:
    return d + timedelta(days=days) if d is not None and _is_number(days) else None




RUNTIME: Mapping[str, Any] = {
    "__builtins__": {}, "len": len, "_days_until": _days_until, "_days_since": _days_since,
    "_months_until": _months_until, "_years_since": _years_since, "_is_anniversary": _is_anniversary,
    "_len": _len, "_lower": _lower, "_upper": _upper, "_min": _min, "_max": _max, "_abs": _abs, "_round": _round,
    "_any_purchase": _any_purchase, "_count_purchases": _count_purchases, "_spend": _spend,
    "_last_purchase": _last_purchase, "_first_purchase": _first_purchase, "_get": _get, "_contains": _contains,
    "_arith": _arith, "_add_days": _add_days, "_any": any, "_all": all, "_sum": sum,
}
