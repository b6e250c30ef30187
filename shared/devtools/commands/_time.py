"""--today / --now options shared by sweep and dry-run."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime


def add_time_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--today", type=_day, metavar="YYYY-MM-DD",
                       help="every customer's local date is this day")
    group.add_argument("--now", type=_instant, metavar="ISO-8601",
                       help="an instant; each customer's local date is it in the customer's own time zone")


def resolve_time(args: argparse.Namespace) -> tuple[datetime, date | None]:
    """(now, today override) from the options; default: the current instant, no override."""
    if args.now:
        return args.now, None
    if args.today:
        return datetime.now(UTC), args.today
    return datetime.now(UTC), None


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 instant: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the instant a UTC offset, e.g. {text}Z or {text}+09:00")
    return value
