"""When a customer mail may go out: inside business hours on a business day, in the customer's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


def next_business_slot(now: datetime, timezone: str, hours: tuple[time, time],
                       days: frozenset[int]) -> datetime | None:
    """None when `now` is already inside business hours (send now); else the next opening instant, in UTC.

    `days` are ISO weekdays (1 = Monday). Wall-clock times are resolved in the customer's zone, so a DST change
    moves the UTC instant, not the local opening hour.
    """
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    start, end = hours
    if local.isoweekday() in days and start <= local.time() < end:
        return None
    day = local.date() if local.time() < start else local.date() + timedelta(days=1)
    for _ in range(8):
        if day.isoweekday() in days:
            return datetime.combine(day, start, tzinfo=zone).astimezone(UTC)
        day += timedelta(days=1)
    raise ValueError("business days must name at least one weekday")
