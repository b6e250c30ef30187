"""Fast decoding of canonical customers: JSON (or already decoded dicts) straight into typed structs, in C.

msgspec decodes and checks types, required fields, text lengths and ISO dates while it reads the JSON, so the
Python work per customer is only what msgspec cannot express (id characters, known time zones, deduplicated
products) and building the frozen `Customer`. Everything the strict structs refuse (a wrong type, an empty
string, a date with a time, a number as text, an unknown top-level field, a NaN) goes through
`Customer.from_dict`, the general parser: it stays the one definition of what is accepted, how values are
coerced and what an error says (file, record index, field). The fast path only ever accepts records the general
parser would turn into an equal `Customer` (tests compare both on valid and on bad records).

    decode_customer_array(data, location)   a JSON array file → (number, Customer | InvalidInput) per item
    decode_customer(data, location)          one JSON object (a JSON Lines line, a message) → Customer
    customer_from_mapping(data, location)    a decoded dict (e.g. a Table Storage entity's fields) → Customer
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Annotated, Any

import msgspec

from shared.domain.errors import InvalidInput, Location
from shared.domain.model import (
    _ID_FORBIDDEN,
    _KNOWN_ZONES,
    MAX_TEXT_CHARS,
    Customer,
    Person,
    Purchase,
    _checked_instance,
    _CustomerParser,
)

# Non-empty text within the length every customer field is held to: "" means missing to the general parser (None),
# so an empty string is left to it rather than decoded here.
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_CHARS)]
_Number = int | float


class _Person(msgspec.Struct, gc=False, frozen=True):
    # Unknown keys are ignored, as the general parser reads only these three. Frozen: hashable, so the struct
    # itself keys the cache of people.
    name: _Text | None = None
    email: _Text | None = None
    aad_object_id: _Text | None = None


class _Purchase(msgspec.Struct, gc=False):
    product: _Text
    date: date | None = None
    amount: _Number | None = None
    deal_id: _Text | None = None


class _Customer(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The canonical customer as it nearly always arrives. Unknown top-level fields are refused: the general
    parser keeps them in `custom`."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    name: _Text | None = None
    contact_name: _Text | None = None
    email: _Text | None = None
    owner: _Person | None = None
    manager: _Person | None = None
    locale: _Text | None = None
    timezone: _Text | None = None
    products: list[_Text] | None = None
    purchases: list[_Purchase] | None = None
    plan: _Text | None = None
    contract_start: date | None = None
    contract_end: date | None = None
    contract_status: _Text | None = None
    birthday: date | None = None
    last_purchase_date: date | None = None
    annual_spend: _Number | None = None
    usage: dict[str, Any] | None = None
    stage: _Text | None = None
    deals: list[Any] | None = None  # checked by the general parser's deal code (unknown keys become `extra`)
    email_opt_out: bool | None = None
    requires_approval: bool | None = None
    crm_url: _Text | None = None
    custom: dict[str, Any] | None = None
    updated_at: Any = None  # an ISO instant (text) or a datetime; parsed as the general parser does


_ONE = msgspec.json.Decoder(_Customer)
_RAW_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])


class _NotCanonical(Exception):
    """A record the strict path does not take; the general parser decides about it."""


def decode_customer_array(data: bytes, location: Location) -> Iterator[tuple[int, Customer | InvalidInput]]:
    """Every item of a JSON array of canonical customers as (1-based number, Customer or the InvalidInput that
    rejects it). Raises InvalidInput (with the line) when the text is not JSON at all."""
    # The array is split into its items' raw JSON first (checked as JSON, nothing built), and each item is decoded
    # into its struct only when its turn comes: the same work as decoding the whole array into structs, but one
    # struct alive at a time instead of all of them (a quarter of the memory, and faster for the page faults and
    # cache misses saved).
    collecting = gc.isenabled()
    gc.disable()
    try:
        raws = _RAW_ARRAY.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raws = None  # not an array, or not JSON msgspec reads (NaN, a stray comma ...): the standard decoder says
    finally:
        if collecting:
            gc.enable()
    if raws is None:
        yield from _general_array(data, location)
        return
    for number, raw in enumerate(raws, start=1):
        raws[number - 1] = None  # each item is needed once: free it as the customers go
        try:
            item: Customer | InvalidInput = _to_customer(_ONE.decode(raw), location)
        except (msgspec.ValidationError, _NotCanonical):  # not in the strict shape: the general parser decides
            item = _general_item(raw, location)
        except InvalidInput as exc:  # from the general parser's deal or instant checks
            item = exc
        yield number, item


def decode_customer(data: bytes | str, location: Location | None = None) -> Customer:
    """One canonical customer from JSON text. Raises InvalidInput naming the bad field, as `Customer.from_json`."""
    location = location or Location()
    try:
        return _to_customer(_ONE.decode(data), location)
    except (msgspec.ValidationError, msgspec.DecodeError, _NotCanonical):
        return Customer.from_json(data, location)


def customer_from_mapping(data: Mapping[str, Any], location: Location | None = None) -> Customer:
    """One canonical customer from a decoded mapping (dates may be ISO text or dates). Raises InvalidInput naming
    the bad field, as `Customer.from_dict`."""
    location = location or Location()
    try:
        return _to_customer(msgspec.convert(data, _Customer), location)
    except (msgspec.ValidationError, _NotCanonical, TypeError):
        return Customer.from_dict(data, location)


# --- internals ---------------------------------------------------------------------------------------------------
def _general_array(data: bytes, location: Location) -> Iterator[tuple[int, Customer | InvalidInput]]:
    try:
        items = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc.msg}", Location(file=location.file, line=exc.lineno)) from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"not UTF-8: {exc.reason}", Location(file=location.file)) from None
    if not isinstance(items, list):
        raise InvalidInput("expected a JSON array of customers", Location(file=location.file))
    for number, item in enumerate(items, start=1):
        yield number, _general_decoded(item, location)


def _general_item(raw: bytes | msgspec.Raw, location: Location) -> Customer | InvalidInput:
    return _general_decoded(json.loads(bytes(raw)), location)


def _general_decoded(item: Any, location: Location) -> Customer | InvalidInput:
    try:
        if not isinstance(item, dict):
            raise InvalidInput("a customer must be a JSON object", location)
        return Customer.from_dict(item, location)
    except InvalidInput as exc:
        return exc


_PEOPLE: dict[_Person, Person] = {}  # owners and managers repeat: shared, frozen
_MAX_PEOPLE = 10_000


def _person(struct: _Person | None) -> Person | None:
    if struct is None:
        return None
    person = _PEOPLE.get(struct)
    if person is None:
        if struct.name is None and struct.email is None and struct.aad_object_id is None:
            return None
        person = Person(struct.name, struct.email, struct.aad_object_id)
        if len(_PEOPLE) < _MAX_PEOPLE:
            _PEOPLE[struct] = person
    return person


def _purchases(structs: list[_Purchase]) -> tuple[Purchase, ...]:
    # Filled like `_checked_instance` does, inline: two to three purchases per customer, a call each adds up.
    new = object.__new__
    purchases = []
    for struct in structs:
        amount = struct.amount
        if amount.__class__ is float and not math.isfinite(amount):
            raise _NotCanonical
        purchase = new(Purchase)
        purchase.__dict__.update(product=struct.product, date=struct.date, amount=amount, deal_id=struct.deal_id)
        purchases.append(purchase)
    return tuple(purchases)


def _to_customer(s: _Customer, location: Location) -> Customer:
    customer_id = s.id
    if not _ID_FORBIDDEN.isdisjoint(customer_id) or not customer_id.isprintable():
        raise _NotCanonical
    timezone = s.timezone
    if timezone is not None and timezone not in _KNOWN_ZONES:
        raise _NotCanonical  # the general parser checks a zone once, then it is known
    updated_at = s.updated_at
    if updated_at is not None or s.deals:
        parser = _CustomerParser(location)  # rare on files; its errors name the field like any other
        deals = parser.deals(s.deals) if s.deals else ()
        updated_at = parser.instant(updated_at) if updated_at is not None else None
    else:
        deals = ()
    purchases = s.purchases
    annual_spend = s.annual_spend
    if annual_spend.__class__ is float and not math.isfinite(annual_spend):
        raise _NotCanonical  # JSON has no NaN, but a decoded mapping may hold one: the general parser refuses it
    return _checked_instance(Customer, {
        "id": customer_id, "name": s.name, "contact_name": s.contact_name, "email": s.email,
        "owner": _person(s.owner), "manager": _person(s.manager), "locale": s.locale, "timezone": timezone,
        "products": tuple(dict.fromkeys(s.products)) if s.products else (),
        "purchases": _purchases(purchases) if purchases else (), "plan": s.plan,
        "contract_start": s.contract_start, "contract_end": s.contract_end, "contract_status": s.contract_status,
        "birthday": s.birthday, "last_purchase_date": s.last_purchase_date, "annual_spend": annual_spend,
        "usage": s.usage if s.usage is not None else {}, "stage": s.stage, "deals": deals,
        "email_opt_out": bool(s.email_opt_out), "requires_approval": bool(s.requires_approval),
        "crm_url": s.crm_url, "custom": s.custom if s.custom is not None else {}, "updated_at": updated_at,
    })
