"""The static schema of what rule expressions read: the canonical customer and the values reachable from it.

Field types are derived from the model's dataclasses (`shared.domain.model`, `shared.segments.rfm.Rfm`), so a new
customer field is usable in rules as soon as it exists. The compiler uses the schema to reject typos and mismatches
at load time and to emit the cheapest code (no null guard where a value can never be null).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from shared.domain.model import Customer, Deal, Person, Purchase
from shared.segments.rfm import Rfm

STR, NUM, BOOL, DATE, DATETIME, LIST, MAP, ANY, NULL = "text", "number", "boolean", "date", "datetime", "list", \
    "mapping", "any", "null"
PERSON, CUSTOMER, PURCHASE, DEAL, RFM = "person", "customer", "purchase", "deal", "rfm"


@dataclass(frozen=True)
class Field:
    type: str
    nullable: bool = True
    item: str | None = None  # element type of a list


_RECORDS: Mapping[type, str] = {Customer: CUSTOMER, Person: PERSON, Purchase: PURCHASE, Deal: DEAL, Rfm: RFM}
_SCALARS: Mapping[type, str] = {str: STR, int: NUM, float: NUM, bool: BOOL, date: DATE, datetime: DATETIME}
# Deal.extra holds the CRM's other deal columns; they are flattened into the deal (`deal.<column>`, untyped), never
# read as `deal.extra`.
_NOT_FIELDS = {Deal: {"extra"}}


def field_of(annotation: Any) -> Field:
    """The schema field of one dataclass annotation (`date | None`, `tuple[Purchase, ...]`, `Mapping[str, Any]`)."""
    nullable = False
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in args if a is not type(None)]
        nullable = len(members) < len(args)
        if len(members) != 1:
            return Field(ANY, nullable)
        annotation, args = members[0], typing.get_args(members[0])
    origin = typing.get_origin(annotation) or annotation
    if origin is tuple or origin is list:
        item = args[0] if args else Any
        return Field(LIST, nullable, _RECORDS.get(item) or _SCALARS.get(item, ANY))
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return Field(MAP, nullable)
    if annotation in _RECORDS:
        return Field(_RECORDS[annotation], nullable)
    return Field(_SCALARS.get(annotation, ANY), nullable)


def schema_of(cls: type) -> dict[str, Field]:
    """The fields of a model dataclass, and its public properties (computed values such as `rfm.score`)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: field_of(hints[f.name]) for f in dataclasses.fields(cls)
              if f.name not in _NOT_FIELDS.get(cls, ())}
    for name, member in vars(cls).items():
        if isinstance(member, property) and not name.startswith("_"):
            fields[name] = field_of(typing.get_type_hints(member.fget)["return"])
    return fields


_DATE_PARTS = {"year": Field(NUM, False), "month": Field(NUM, False), "day": Field(NUM, False)}
SCHEMAS: Mapping[str, Mapping[str, Field]] = {
    **{name: schema_of(cls) for cls, name in _RECORDS.items()},
    DATE: _DATE_PARTS,
    DATETIME: _DATE_PARTS,
}
