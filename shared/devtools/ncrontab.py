"""NCRONTAB schedules of Azure Functions timer triggers for the local host, evaluated by croniter, always in UTC.

`{second} {minute} {hour} {day} {month} {day-of-week}`: croniter reads the seconds field first with
`second_at_beginning=True`, and `day_or=False` gives NCrontab's rule that a time matches only when day-of-month AND
day-of-week both match (classic cron ORs them). Names (Jan, Mon), ranges, steps, lists and 7 = Sunday are
croniter's own. Checked here, where croniter is more lenient than the Functions host: exactly six fields (croniter
also takes five-field cron) and no reversed ranges (croniter wraps `5-1` around).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import CroniterBadDateError, CroniterError, croniter

from shared.domain.errors import InvalidInput, Location

_RANGE = re.compile(r"(\d+)-(\d+)")
_HORIZON_YEARS = 5  # `0 0 0 31 2 *` never fires: give up rather than search for ever


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, Location(field="schedule"))


@dataclass(frozen=True)
class Schedule:
    expression: str

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        parts = expression.split()
        if len(parts) != 6:
            raise _invalid(f"NCRONTAB {expression!r} must have six fields (second minute hour day month "
                           "day-of-week)")
        for part in parts:
            for first, last in _RANGE.findall(part):
                if int(first) > int(last):
                    raise _invalid(f"NCRONTAB {expression!r}: range {first}-{last} is reversed")
        if not croniter.is_valid(expression, second_at_beginning=True):
            raise _invalid(f"NCRONTAB {expression!r} is not a valid schedule (a value out of range, an unknown "
                           "name or a zero step)")
        return cls(expression)

    def matches(self, moment: datetime) -> bool:
        return croniter.match(self.expression, moment.astimezone(UTC).replace(microsecond=0), day_or=False,
                              second_at_beginning=True)

    def next_after(self, moment: datetime) -> datetime:
        """The first matching instant strictly after `moment` (UTC, whole seconds)."""
        try:
            found = croniter(self.expression, moment.astimezone(UTC), day_or=False, second_at_beginning=True,
                             max_years_between_matches=_HORIZON_YEARS).get_next(datetime)
        except CroniterBadDateError:
            raise _invalid(f"NCRONTAB {self.expression!r} never fires") from None
        except CroniterError as exc:
            raise _invalid(f"NCRONTAB {self.expression!r}: {exc}") from None
        return found.astimezone(UTC)
