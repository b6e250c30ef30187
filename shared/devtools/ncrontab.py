"""A small NCRONTAB evaluator: the six-field schedules of Azure Functions timer triggers, always in UTC.

`{second} {minute} {hour} {day} {month} {day-of-week}`; each field takes `*`, numbers, names (Jan, Mon), ranges
`a-b`, steps `*/n` and `a-b/n`, and comma lists. Day-of-week is 0-6 from Sunday (7 is Sunday too). As in NCrontab,
a time matches only when day-of-month AND day-of-week both match.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.domain.errors import InvalidInput, Location

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names mapped to numbers)
_FIELDS = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    ("day-of-week", 0, 7, {name: i for i, name in enumerate(_DAYS)}),
)
_HORIZON = timedelta(days=366 * 5)  # `0 0 0 31 2 *` never fires: give up rather than loop for ever


@dataclass(frozen=True)
class Schedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        parts = expression.split()
        if len(parts) != 6:
            raise InvalidInput(f"NCRONTAB {expression!r} must have six fields (second minute hour day month "
                               "day-of-week)", Location(field="schedule"))
        values = [_parse_field(part, spec, expression) for part, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in values[5])
        return cls(expression, *values[:5], weekdays)

    def matches(self, moment: datetime) -> bool:
        moment = moment.astimezone(UTC)
        return (moment.second in self.seconds and moment.minute in self.minutes and moment.hour in self.hours
                and self._day_matches(moment))

    def _day_matches(self, moment: datetime) -> bool:
        return (moment.month in self.months and moment.day in self.days
                and moment.isoweekday() % 7 in self.weekdays)

    def next_after(self, moment: datetime) -> datetime:
        """The first matching instant strictly after `moment` (UTC, whole seconds)."""
        start = moment.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        t = start
        while t - start < _HORIZON:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
            elif t.second not in self.seconds:
                t += timedelta(seconds=1)
            else:
                return t
        raise InvalidInput(f"NCRONTAB {self.expression!r} never fires", Location(field="schedule"))


def _parse_field(text: str, spec: tuple, expression: str) -> frozenset[int]:
    name, lo, hi, names = spec
    found: set[int] = set()

    def number(token: str) -> int:
        token = token.strip().lower()
        if token in names:
            return names[token]
        if not token.isdigit() or not lo <= int(token) <= hi:
            raise InvalidInput(f"NCRONTAB {expression!r}: {name} {token!r} is not in {lo}..{hi}",
                               Location(field="schedule"))
        return int(token)

    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = number(step_text) if step_text else 1
        if step_text and step < 1:
            raise InvalidInput(f"NCRONTAB {expression!r}: step must be positive", Location(field="schedule"))
        if base == "*":
            first, last = lo, hi
        elif "-" in base:
            first_text, last_text = base.split("-", 1)
            first, last = number(first_text), number(last_text)
        else:
            first = number(base)
            last = hi if step_text else first  # `5/15` means from 5 every 15
        if first > last:
            raise InvalidInput(f"NCRONTAB {expression!r}: {name} range {base!r} is reversed",
                               Location(field="schedule"))
        found.update(range(first, last + 1, step))
    return frozenset(found)
