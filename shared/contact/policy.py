"""The contact policy (`contact_policy.yaml`): how often a customer may be contacted, and how reps get Teams cards.

```yaml
caps:                                   # per channel and category, over rolling windows of the customer's days
  - {channel: email, category: promotional, limit: 2, days: 7}
  - {channel: email, category: promotional, limit: 4, days: 30}
when_capped: defer                      # defer (to the first day with room) | drop
defer_within_days: 30                   # no room within this many days: dropped
reps:
  mode: digest                          # instant | digest (default: the TEAMS_DELIVERY_MODE setting)
  high_importance: instant              # importance: high cards skip the digest (instant | digest)
  timezone: Asia/Tokyo                  # default: DEFAULT_TIMEZONE
  working_hours: "09:00-18:00"
  working_days: mon-fri
  digest_size: 10                       # opportunities listed per card; the rest are "and N more"
  owners:                               # per-rep overrides, by the owner's email
    rep@contoso.com: {mode: instant, timezone: America/New_York}
```
Transactional contacts are never capped. Every problem is reported at once, each naming file:line and key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from shared.domain.errors import InvalidInput, Location
from shared.domain.vocabulary import Channel, ContactCategory
from shared.rules.loader import read_yaml

POLICY_KEYS = ("caps", "when_capped", "defer_within_days", "reps")
CAP_KEYS = ("channel", "category", "limit", "days")
REP_KEYS = ("mode", "high_importance", "timezone", "working_hours", "working_days", "digest_size", "owners")
OWNER_KEYS = ("mode", "timezone", "working_hours", "working_days")
DEFER, DROP = "defer", "drop"
INSTANT, DIGEST = "instant", "digest"
TEAMS_MODES = (INSTANT, DIGEST)
MAX_WINDOW_DAYS = 366


@dataclass(frozen=True)
class Cap:
    """At most `limit` contacts on `channel` of `category` in any `days` consecutive days of the customer."""

    channel: str
    category: str
    limit: int
    days: int

    @property
    def name(self) -> str:
        """How a capped action names the cap that held it back."""
        return f"{self.category} {self.channel} ≤ {self.limit} per {self.days} days"


@dataclass(frozen=True)
class RepPreferences:
    """How one rep gets Teams cards: at once, or one digest at the start of each working day."""

    mode: str
    timezone: str
    working_hours: tuple[time, time]
    working_days: frozenset[int]


@dataclass(frozen=True)
class RepPolicy:
    mode: str | None = None  # None: the TEAMS_DELIVERY_MODE setting
    high_importance: str = INSTANT
    timezone: str | None = None  # None: DEFAULT_TIMEZONE
    working_hours: tuple[time, time] = (time(9), time(18))
    working_days: frozenset[int] = frozenset(range(1, 6))
    digest_size: int = 10
    owners: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # lower-cased email → overrides

    def for_owner(self, email: str | None, default_mode: str, default_timezone: str) -> RepPreferences:
        override = self.owners.get((email or "").strip().lower(), {})
        return RepPreferences(mode=override.get("mode", self.mode or default_mode),
                              timezone=override.get("timezone", self.timezone or default_timezone),
                              working_hours=override.get("working_hours", self.working_hours),
                              working_days=override.get("working_days", self.working_days))


@dataclass(frozen=True)
class ContactPolicy:
    caps: tuple[Cap, ...] = ()
    when_capped: str = DEFER
    defer_within_days: int = 30
    reps: RepPolicy = field(default_factory=RepPolicy)
    file: str | None = None

    def caps_for(self, channel: str, category: str) -> tuple[Cap, ...]:
        if category == ContactCategory.TRANSACTIONAL:
            return ()
        return tuple(cap for cap in self.caps if cap.channel == channel and cap.category == category)

    @property
    def longest_window(self) -> int:
        return max((cap.days for cap in self.caps), default=0)


class PolicyProblems(InvalidInput):
    """Problems in the contact policy file, each with its location."""

    def __init__(self, problems: list[tuple[Location, str]]):
        self.problems = problems
        lines = [f"{where}: {message}" for where, message in problems]
        super().__init__(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in the contact policy:\n  "
                         + "\n  ".join(lines))


def load_contact_policy(path: Path) -> ContactPolicy:
    """The policy in `path`, checked; no file means no caps and the default rep settings."""
    path = Path(path)
    shown = _shown(path)
    if not path.is_file():
        return ContactPolicy()
    problems: list[tuple[Location, str]] = []

    def fail(mapping: Any, key: str | None, message: str) -> None:
        lines = getattr(mapping, "lines", {})
        line = lines.get(key, getattr(mapping, "line", None)) if key is not None else getattr(mapping, "line", None)
        problems.append((Location(file=shown, line=line, field=key), message))

    try:
        data = read_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PolicyProblems([(Location(file=shown, line=mark.line + 1 if mark else None),
                               f"not valid YAML: {getattr(exc, 'problem', None) or exc}")]) from None
    except UnicodeDecodeError:
        raise PolicyProblems([(Location(file=shown), "not UTF-8 text")]) from None
    if data is None:
        return ContactPolicy(file=shown)
    if not isinstance(data, Mapping):
        raise PolicyProblems([(Location(file=shown, line=1), "the contact policy is a mapping (caps:, reps:, ...)")])
    _check_keys(data, POLICY_KEYS, fail)

    caps: list[Cap] = []
    raw_caps = data.get("caps", [])
    if not isinstance(raw_caps, list):
        fail(data, "caps", "caps must be a list of {channel, category, limit, days}")
        raw_caps = []
    for index, item in enumerate(raw_caps):
        if not isinstance(item, Mapping):
            fail(data, "caps", f"caps[{index}] must be a mapping {{channel, category, limit, days}}")
            continue
        _check_keys(item, CAP_KEYS, fail)
        channel, category = item.get("channel"), item.get("category")
        limit, days = item.get("limit"), item.get("days")
        ok = True
        if channel not in tuple(Channel):
            fail(item, "channel", f"channel must be one of {', '.join(Channel)}")
            ok = False
        if category not in tuple(ContactCategory):
            fail(item, "category", f"category must be one of {', '.join(ContactCategory)}")
            ok = False
        elif category == ContactCategory.TRANSACTIONAL:
            fail(item, "category", "transactional contacts are never capped")
            ok = False
        if not _whole(limit, 1, 1000):
            fail(item, "limit", "limit must be a whole number 1..1000")
            ok = False
        if not _whole(days, 1, MAX_WINDOW_DAYS):
            fail(item, "days", f"days must be a whole number 1..{MAX_WINDOW_DAYS}")
            ok = False
        if ok:
            caps.append(Cap(channel, category, limit, days))

    when_capped = data.get("when_capped", DEFER)
    if when_capped not in (DEFER, DROP):
        fail(data, "when_capped", "when_capped must be defer or drop")
    defer_within = data.get("defer_within_days", 30)
    if not _whole(defer_within, 1, MAX_WINDOW_DAYS):
        fail(data, "defer_within_days", f"defer_within_days must be a whole number 1..{MAX_WINDOW_DAYS}")
    reps = _rep_policy(data.get("reps"), data, fail)
    if problems:
        raise PolicyProblems(problems)
    return ContactPolicy(tuple(caps), when_capped, defer_within, reps, shown)


def _rep_policy(raw: Any, parent: Any, fail) -> RepPolicy:
    if raw is None:
        return RepPolicy()
    if not isinstance(raw, Mapping):
        fail(parent, "reps", "reps must be a mapping (mode, timezone, working_hours, owners, ...)")
        return RepPolicy()
    _check_keys(raw, REP_KEYS, fail)
    common = _preferences(raw, fail)
    high = raw.get("high_importance", INSTANT)
    if high not in TEAMS_MODES:
        fail(raw, "high_importance", "high_importance must be instant or digest")
    size = raw.get("digest_size", 10)
    if not _whole(size, 1, 50):
        fail(raw, "digest_size", "digest_size must be a whole number 1..50")
    owners: dict[str, Mapping[str, Any]] = {}
    raw_owners = raw.get("owners", {})
    if not isinstance(raw_owners, Mapping):
        fail(raw, "owners", "owners must map a rep's email to {mode, timezone, working_hours, working_days}")
        raw_owners = {}
    for email, override in raw_owners.items():
        if not isinstance(email, str) or "@" not in email:
            fail(raw_owners, email if isinstance(email, str) else None, "owners are keyed by the rep's email")
            continue
        if not isinstance(override, Mapping):
            fail(raw_owners, email, "each owner maps to {mode, timezone, working_hours, working_days}")
            continue
        _check_keys(override, OWNER_KEYS, fail)
        owners[email.strip().lower()] = MappingProxyType(_preferences(override, fail))
    defaults = RepPolicy()
    return RepPolicy(mode=common.get("mode"), high_importance=high if high in TEAMS_MODES else INSTANT,
                     timezone=common.get("timezone"),
                     working_hours=common.get("working_hours", defaults.working_hours),
                     working_days=common.get("working_days", defaults.working_days),
                     digest_size=size if _whole(size, 1, 50) else 10, owners=MappingProxyType(owners))


def _preferences(raw: Mapping, fail) -> dict[str, Any]:
    """mode / timezone / working_hours / working_days of a mapping, parsed (the ones present)."""
    from shared.settings import parse_hours, parse_timezone, parse_weekdays

    parsed: dict[str, Any] = {}
    if "mode" in raw:
        if raw["mode"] in TEAMS_MODES:
            parsed["mode"] = raw["mode"]
        else:
            fail(raw, "mode", "mode must be instant or digest")
    for key, parse in (("timezone", parse_timezone), ("working_hours", parse_hours),
                       ("working_days", parse_weekdays)):
        if key in raw:
            try:
                parsed[key] = parse(str(raw[key]))
            except ValueError as exc:
                fail(raw, key, f"{key} {exc}")
    return parsed


def _check_keys(mapping: Any, allowed: tuple[str, ...], fail) -> None:
    for key, _line in getattr(mapping, "duplicates", ()):
        fail(mapping, key, "key appears twice")
    for key in mapping:
        if key not in allowed:
            fail(mapping, key, f"unknown key {key!r} (allowed: {', '.join(allowed)})")


def _whole(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
