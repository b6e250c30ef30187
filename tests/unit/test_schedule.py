from datetime import UTC, datetime, time

import pytest

from shared.domain.schedule import next_business_slot

HOURS = (time(9), time(18))
WEEKDAYS = frozenset({1, 2, 3, 4, 5})


@pytest.mark.parametrize(("now", "zone", "expected"), [
    # 09:00 Tuesday in Tokyo: open, send now.
    (datetime(2026, 11, 24, 0, 0, tzinfo=UTC), "Asia/Tokyo", None),
    # 08:59 Tuesday in Tokyo: wait one minute.
    (datetime(2026, 11, 23, 23, 59, tzinfo=UTC), "Asia/Tokyo", datetime(2026, 11, 24, 0, 0, tzinfo=UTC)),
    # 18:00 Friday in Tokyo: Monday 09:00.
    (datetime(2026, 11, 27, 9, 0, tzinfo=UTC), "Asia/Tokyo", datetime(2026, 11, 30, 0, 0, tzinfo=UTC)),
    # The same instant is 19:00 Monday in New York: Tuesday 09:00 EST = 14:00 UTC.
    (datetime(2026, 11, 24, 0, 0, tzinfo=UTC), "America/New_York", datetime(2026, 11, 24, 14, 0, tzinfo=UTC)),
    # Saturday noon in London: Monday 09:00 GMT.
    (datetime(2026, 10, 31, 12, 0, tzinfo=UTC), "Europe/London", datetime(2026, 11, 2, 9, 0, tzinfo=UTC)),
    # Friday 20:00 BST in London; summer time ends on 25 Oct, so Monday 09:00 is GMT = 09:00 UTC.
    (datetime(2026, 10, 23, 19, 0, tzinfo=UTC), "Europe/London", datetime(2026, 10, 26, 9, 0, tzinfo=UTC)),
])
def test_next_business_slot(now, zone, expected):
    assert next_business_slot(now, zone, HOURS, WEEKDAYS) == expected


def test_no_business_day_is_an_error():
    with pytest.raises(ValueError):
        next_business_slot(datetime(2026, 11, 24, tzinfo=UTC), "Asia/Tokyo", HOURS, frozenset())
