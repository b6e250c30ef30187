"""One number parser for every way numbers come in: CSV cells, CRM fields, canonical customer JSON."""

from __future__ import annotations

import math
import unicodedata
from typing import Any

_CURRENCY = str.maketrans("", "", ",¥￥円")
_EXACT_INT = 2**53  # above this a float's integer value is not exact: keep it a float


def parse_number(raw: Any) -> int | float | None:
    """`raw` as a number: None for blank; an int or float stays what it is; text becomes an int when whole.

    Text may carry thousands separators, yen signs (¥ ￥ 円) and full-width digits (Excel's Japanese exports).
    NaN and Infinity are rejected (as text or as floats: JSON and CSV both let them through, and they poison every
    sum and comparison downstream), as are booleans and anything else; the ValueError says what was wrong.
    """
    if raw.__class__ is int:
        return raw
    if raw.__class__ is float:
        if not math.isfinite(raw):
            raise ValueError(f"not a finite number: {raw!r}")
        return raw
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise ValueError("must be a number, got a boolean")
    if isinstance(raw, int | float):  # subclasses (numpy-like, IntEnum)
        return parse_number(int(raw) if isinstance(raw, int) else float(raw))
    if not isinstance(raw, str):
        raise ValueError(f"must be a number, got {type(raw).__name__}")
    text = unicodedata.normalize("NFKC", raw).translate(_CURRENCY).strip()
    if not text:
        return None
    if text.lstrip("+-").isdigit():
        return int(text)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {raw!r}")
    return int(value) if value.is_integer() and abs(value) < _EXACT_INT else value
