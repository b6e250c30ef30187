"""The canonical customer (DESIGN.md): frozen dataclasses, parsed from canonical JSON.

Dates are `datetime.date`; a missing optional field is None, never an error; unknown top-level fields are kept in
`custom`. Bad values raise `InvalidInput` naming the field (and, through `location`, the file and line).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.domain.errors import InvalidInput, Location
from shared.domain.numbers import parse_number


@dataclass(frozen=True)
class Person:
    """An owner (sales rep) or a manager."""

    name: str | None = None
    email: str | None = None
    aad_object_id: str | None = None

    def to_dict(self) -> dict:
        data = {"name": self.name, "email": self.email}
        if self.aad_object_id:
            data["aad_object_id"] = self.aad_object_id
        return data


@dataclass(frozen=True)
class Purchase:
    product: str
    date: date | None = None
    amount: float | None = None
    deal_id: str | None = None

    def to_dict(self) -> dict:
        return {"product": self.product, "date": _iso(self.date), "amount": self.amount, "deal_id": self.deal_id}


@dataclass(frozen=True)
class Deal:
    id: str
    stage: str | None = None
    type: str | None = None
    amount: float | None = None
    onboarding_due: date | None = None
    renewal_notice_date: date | None = None
    campaign_id: str | None = None
    closed_on: date | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = {
            "id": self.id, "stage": self.stage, "type": self.type, "amount": self.amount,
            "onboarding_due": _iso(self.onboarding_due), "renewal_notice_date": _iso(self.renewal_notice_date),
            "campaign_id": self.campaign_id,
        }
        if self.closed_on:
            data["closed_on"] = _iso(self.closed_on)
        data.update(self.extra)
        return data


@dataclass(frozen=True)
class Customer:
    """One customer as every rule, template and store sees it."""

    id: str
    name: str | None = None
    contact_name: str | None = None
    email: str | None = None
    owner: Person | None = None
    manager: Person | None = None
    locale: str | None = None
    timezone: str | None = None
    products: tuple[str, ...] = ()
    purchases: tuple[Purchase, ...] = ()
    plan: str | None = None
    contract_start: date | None = None
    contract_end: date | None = None
    contract_status: str | None = None
    birthday: date | None = None
    last_purchase_date: date | None = None
    annual_spend: float | None = None
    usage: Mapping[str, Any] = field(default_factory=dict)
    stage: str | None = None
    deals: tuple[Deal, ...] = ()
    email_opt_out: bool = False
    requires_approval: bool = False
    crm_url: str | None = None
    custom: Mapping[str, Any] = field(default_factory=dict)
    # When the CRM last changed the record (ISO instant); lets the event consumer keep the newer version.
    updated_at: datetime | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], location: Location | None = None) -> Customer:
        """Parse canonical JSON (already decoded). Raises InvalidInput naming the bad field."""
        return _CustomerParser(location or Location()).parse(data)

    @classmethod
    def from_json(cls, text: str | bytes, location: Location | None = None) -> Customer:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"not valid JSON: {exc.msg} at line {exc.lineno}", location) from None
        if not isinstance(data, dict):
            raise InvalidInput("a customer must be a JSON object", location)
        return cls.from_dict(data, location)

    def to_dict(self) -> dict:
        """Canonical JSON-ready dict (dates as ISO strings)."""
        return {
            "id": self.id, "name": self.name, "contact_name": self.contact_name, "email": self.email,
            "owner": self.owner.to_dict() if self.owner else None,
            "manager": self.manager.to_dict() if self.manager else None,
            "locale": self.locale, "timezone": self.timezone, "products": list(self.products),
            "purchases": [p.to_dict() for p in self.purchases], "plan": self.plan,
            "contract_start": _iso(self.contract_start), "contract_end": _iso(self.contract_end),
            "contract_status": self.contract_status, "birthday": _iso(self.birthday),
            "last_purchase_date": _iso(self.last_purchase_date), "annual_spend": self.annual_spend,
            "usage": dict(self.usage), "stage": self.stage, "deals": [d.to_dict() for d in self.deals],
            "email_opt_out": self.email_opt_out, "requires_approval": self.requires_approval,
            "crm_url": self.crm_url, "custom": dict(self.custom),
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


CUSTOMER_FIELDS = frozenset(Customer.__dataclass_fields__)
_DEAL_FIELDS = frozenset(Deal.__dataclass_fields__) - {"extra"}
_ID_FORBIDDEN = frozenset("/\\#?")
# Longest text a customer field may hold. Names, addresses and codes are far shorter; a longer value is refused
# with the field named (import row, webhook), so no single record can outgrow a ledger row or a queue message and
# stop the shard it lives in.
MAX_TEXT_CHARS = 4000
_KNOWN_ZONES: set[str] = set()  # time zone names already checked (ZoneInfo caches them too, but costs a call)


class _CustomerParser:
    """Checks and coerces one record. Canonical JSON nearly always holds values of the right type already, so each
    coercion first tests for the exact expected type (one comparison, no other work) and only other values take the
    general path with its conversions and errors. Field paths for messages are built only when something fails."""

    def __init__(self, location: Location):
        self.location = location

    def fail(self, field_name: str, reason: str) -> InvalidInput:
        loc = Location(self.location.file, self.location.line, field_name, self.location.rule)
        return InvalidInput(reason, loc)

    # --- scalar coercions (None and "" mean missing); `where` prefixes the field path of nested values ---------
    def text(self, data: Mapping, key: str, where: str | None = None) -> str | None:
        value = data.get(key)
        if value.__class__ is str and len(value) <= MAX_TEXT_CHARS:  # fast path
            return value or None
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(_path(where, key), f"must be text, got {type(value).__name__}")
        text = str(value)
        if len(text) > MAX_TEXT_CHARS:
            raise self.fail(_path(where, key), f"is {len(text):,} characters long; at most {MAX_TEXT_CHARS:,} "
                                               "are accepted")
        return text

    def day(self, data: Mapping, key: str, where: str | None = None) -> date | None:
        value = data.get(key)
        if value.__class__ is str and len(value) == 10:  # fast path: YYYY-MM-DD
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass  # the general path below reports it
        if value is None or value == "":
            return None
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value[:10])
            except ValueError:
                pass
        raise self.fail(_path(where, key), f"must be a date YYYY-MM-DD, got {value!r}")

    def number(self, data: Mapping, key: str, where: str | None = None) -> float | None:
        try:
            return parse_number(data.get(key))
        except ValueError as exc:
            raise self.fail(_path(where, key), str(exc)) from None

    def flag(self, data: Mapping, key: str) -> bool:
        value = data.get(key)
        if value is None or value == "":
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
            return value.strip().lower() == "true"
        raise self.fail(key, f"must be true or false, got {value!r}")

    def mapping(self, data: Mapping, key: str) -> dict:
        value = data.get(key)
        if value is None:
            return {}
        if value.__class__ is not dict and not isinstance(value, Mapping):  # (an ABC check costs more)
            raise self.fail(key, "must be an object")
        return dict(value)

    def items(self, data: Mapping, key: str) -> list | tuple:
        """The list to iterate (not copied: callers only read it)."""
        value = data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise self.fail(key, "must be a list")
        return value

    def person(self, data: Mapping, key: str) -> Person | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, str):  # a bare name or email is common in exports
            value = self.text(data, key) or ""
            return Person(email=value) if "@" in value else Person(name=value)
        if value.__class__ is not dict and not isinstance(value, Mapping):
            raise self.fail(key, "must be an object with name and email")
        name, email = self.text(value, "name", key), self.text(value, "email", key)
        aad_object_id = self.text(value, "aad_object_id", key)
        return Person(name, email, aad_object_id) if (name or email or aad_object_id) else None

    def deals(self, items: list | tuple) -> tuple[Deal, ...]:
        deals = []
        for index, raw in enumerate(items):
            deal = _plain_deal(raw) if raw.__class__ is dict else None
            deals.append(deal if deal is not None else self.deal(raw, f"deals[{index}]"))
        return tuple(deals)

    def deal(self, raw: Any, where: str) -> Deal:
        text, day = self.text, self.day
        if not isinstance(raw, Mapping):
            raise self.fail(where, "must be an object")
        deal_id = text(raw, "id", where)
        if not deal_id:
            raise self.fail(f"{where}.id", "is required")
        return Deal(
            id=deal_id, stage=text(raw, "stage", where), type=text(raw, "type", where),
            amount=self.number(raw, "amount", where), onboarding_due=day(raw, "onboarding_due", where),
            renewal_notice_date=day(raw, "renewal_notice_date", where),
            campaign_id=text(raw, "campaign_id", where), closed_on=day(raw, "closed_on", where),
            extra={k: v for k, v in raw.items() if k not in _DEAL_FIELDS})

    def instant(self, value: Any) -> datetime:
        """`updated_at`: a datetime, or ISO-8601 text (a trailing Z is UTC)."""
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise self.fail("updated_at", f"must be an ISO-8601 instant, got {value!r}") from None

    # --- the whole record ----------------------------------------------------------------------------------
    def parse(self, data: Mapping[str, Any]) -> Customer:
        text, day = self.text, self.day
        customer_id = text(data, "id")
        if not customer_id:
            raise self.fail("id", "is required")
        if len(customer_id) > 200 or not _ID_FORBIDDEN.isdisjoint(customer_id) or not customer_id.isprintable():
            raise self.fail("id", "must be at most 200 printable characters without / \\ # ?")

        timezone = text(data, "timezone")
        if timezone and timezone not in _KNOWN_ZONES:
            try:
                ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise self.fail("timezone", f"unknown time zone {timezone!r}") from None
            _KNOWN_ZONES.add(timezone)

        purchases = []
        for index, raw in enumerate(self.items(data, "purchases")):
            where = f"purchases[{index}]"
            if raw.__class__ is not dict and not isinstance(raw, Mapping):
                raise self.fail(where, "must be an object")
            product = text(raw, "product", where)
            if not product:
                raise self.fail(f"{where}.product", "is required")
            purchases.append(Purchase(product, day(raw, "date", where), self.number(raw, "amount", where),
                                      text(raw, "deal_id", where)))

        deals = self.deals(self.items(data, "deals"))

        products = self.items(data, "products")
        for index, raw in enumerate(products):
            if not isinstance(raw, str) or not raw or len(raw) > MAX_TEXT_CHARS:
                raise self.fail(f"products[{index}]", "must be a product code")

        updated_at = data.get("updated_at")
        if updated_at is not None:
            updated_at = self.instant(updated_at)

        custom = self.mapping(data, "custom")
        if not CUSTOMER_FIELDS.issuperset(data):  # unknown top-level fields (checked in C; rare)
            custom.update({k: v for k, v in data.items() if k not in CUSTOMER_FIELDS})

        return _checked_instance(Customer, {
            "id": customer_id, "name": text(data, "name"), "contact_name": text(data, "contact_name"),
            "email": text(data, "email"), "owner": self.person(data, "owner"),
            "manager": self.person(data, "manager"), "locale": text(data, "locale"), "timezone": timezone,
            "products": tuple(dict.fromkeys(products)), "purchases": tuple(purchases), "plan": text(data, "plan"),
            "contract_start": day(data, "contract_start"), "contract_end": day(data, "contract_end"),
            "contract_status": text(data, "contract_status"), "birthday": day(data, "birthday"),
            "last_purchase_date": day(data, "last_purchase_date"), "annual_spend": self.number(data, "annual_spend"),
            "usage": self.mapping(data, "usage"), "stage": text(data, "stage"), "deals": deals,
            "email_opt_out": self.flag(data, "email_opt_out"),
            "requires_approval": self.flag(data, "requires_approval"), "crm_url": text(data, "crm_url"),
            "custom": custom, "updated_at": updated_at,
        })


def _checked_instance(cls: type, fields: dict[str, Any]) -> Any:
    """An instance of a frozen dataclass from ALL its fields, already checked by the parser.

    The generated __init__ of a frozen dataclass sets each field through object.__setattr__ (25 calls for a
    customer, a fifth of parsing one); filling __dict__ at once gives the same object. Only for classes without
    __post_init__ and for complete field sets (the customer parser's test compares with the constructor).
    """
    instance = object.__new__(cls)
    instance.__dict__.update(fields)
    return instance


_DEAL_TEXTS = ("stage", "type", "campaign_id")
_DEAL_DATES = ("onboarding_due", "renewal_notice_date", "closed_on")


def _plain_deal(raw: dict) -> Deal | None:
    """The deal `_CustomerParser.deal` would make, when every value already has its exact type (text within the
    limit, a whole-date string, a finite number or None: what this app writes and nearly every CRM sends); None
    otherwise, and the general path decides, with its coercions and errors. Saves a call per field and the
    frozen dataclass's per-field __setattr__ (deals are most of reading a stored customer)."""
    deal_id = raw.get("id")
    if deal_id.__class__ is not str or not deal_id or len(deal_id) > MAX_TEXT_CHARS:
        return None
    amount = raw.get("amount")
    if not (amount is None or amount.__class__ is int or (amount.__class__ is float and math.isfinite(amount))):
        return None
    fields: dict[str, Any] = {"id": deal_id, "amount": amount}
    for name in _DEAL_TEXTS:
        value = raw.get(name)
        if value is not None:
            if value.__class__ is not str or len(value) > MAX_TEXT_CHARS:
                return None
            value = value or None
        fields[name] = value
    for name in _DEAL_DATES:
        value = raw.get(name)
        if value is not None:
            if value.__class__ is not str or len(value) != 10:
                return None
            try:
                value = date.fromisoformat(value)
            except ValueError:
                return None
        fields[name] = value
    fields["extra"] = {k: v for k, v in raw.items() if k not in _DEAL_FIELDS}
    return _checked_instance(Deal, fields)


def _path(where: str | None, key: str) -> str:
    return f"{where}.{key}" if where else key
