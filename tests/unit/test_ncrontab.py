"""The NCRONTAB evaluator the local host fires timers with (six fields, UTC, day AND weekday)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.devtools.ncrontab import Schedule
from shared.domain.errors import InvalidInput


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("0 0 0 * * *", at(2026, 3, 1, 12, 0, 0), at(2026, 3, 2, 0, 0, 0)),   # the default sweep: 09:00 Tokyo
    ("0 0 0 * * *", at(2026, 3, 2, 0, 0, 0), at(2026, 3, 3, 0, 0, 0)),    # strictly after
    ("*/15 * * * * *", at(2026, 1, 1, 0, 0, 14), at(2026, 1, 1, 0, 0, 15)),
    ("0 */5 * * * *", at(2026, 1, 1, 0, 7, 30), at(2026, 1, 1, 0, 10, 0)),
    ("0 30 9 * * Mon-Fri", at(2026, 1, 2, 10, 0, 0), at(2026, 1, 5, 9, 30, 0)),  # Fri after 09:30 → Mon
    ("0 0 0 1 Jan,Jul *", at(2026, 2, 1, 0, 0, 0), at(2026, 7, 1, 0, 0, 0)),
    ("0 0 12 29 2 *", at(2026, 3, 1, 0, 0, 0), at(2028, 2, 29, 12, 0, 0)),     # leap day
    ("0 0 0 13 * 5", at(2026, 1, 1, 0, 0, 0), at(2026, 2, 13, 0, 0, 0)),       # Friday the 13th: day AND weekday
    ("0 0 0 * * 7", at(2026, 1, 1, 0, 0, 0), at(2026, 1, 4, 0, 0, 0)),         # 7 is Sunday
    ("5/20 0 0 * * *", at(2026, 1, 1, 0, 0, 6), at(2026, 1, 1, 0, 0, 25)),
    ("0 0 23 31 12 *", at(2026, 12, 31, 23, 0, 0), at(2027, 12, 31, 23, 0, 0)),
])
def test_next_occurrence(expression, after, expected):
    assert Schedule.parse(expression).next_after(after) == expected


def test_aware_inputs_in_other_zones_are_converted_to_utc():
    tokyo = timezone(timedelta(hours=9))
    assert Schedule.parse("0 0 0 * * *").next_after(datetime(2026, 3, 2, 8, 0, tzinfo=tokyo)) == at(2026, 3, 2)


def test_matches():
    schedule = Schedule.parse("0 30 9 * * 1-5")
    assert schedule.matches(at(2026, 1, 5, 9, 30, 0))
    assert not schedule.matches(at(2026, 1, 4, 9, 30, 0))  # Sunday


@pytest.mark.parametrize("bad", ["0 0 * * *", "60 * * * * *", "0 0 25 * * *", "0 0 0 * Foo *", "0 0 0 5-1 * *",
                                 "*/0 * * * * *"])
def test_bad_expressions_are_rejected(bad):
    with pytest.raises(InvalidInput):
        Schedule.parse(bad)


def test_an_impossible_schedule_is_an_error_not_a_hang():
    with pytest.raises(InvalidInput, match="never fires"):
        Schedule.parse("0 0 0 31 2 *").next_after(at(2026, 1, 1))
