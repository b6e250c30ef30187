"""CRM field maps (`mappings/<vendor>.yaml`): an admin maps CRM columns onto canonical customer fields, no code.

File format (see mappings/dataverse.yaml for a commented example):

    id_prefix: ""                 # prepended to CRM record ids to form canonical customer ids
    owners:                       # CRM user id -> the rep, for CRMs whose webhooks name the owner by id only
      "<user id>": {email: rep@contoso.com, name: 佐藤 花子, aad_object_id: optional}
    entities:
      contact:                    # the CRM's entity/module/object name (case-insensitive)
        kind: customer            # customer | deal
        aliases: ["0-1"]          # other names the CRM uses for it (HubSpot object type ids)
        id: contactid             # column holding the record id when the payload has no separate id
        fields:
          emailaddress1: email                     # column: target (type text)
          birthdate: {to: birthday, type: date}    # column: {to, type, options, separator}

Targets of a `customer` entity: canonical fields (`email`, `owner`, `plan`, `updated_at`, ...), dotted paths
into `owner.`/`manager.`/`usage.`/`custom.`, or `contact_name.given` / `contact_name.family` (first and last name
columns joined into `contact_name`, in the entity's `name_order`: `given_first` (default) or `family_first`).
Targets of a `deal` entity: `customer` (a reference to the contact or
account, becomes `customer_id`), `customer_email`, `deal.<field>`, `purchase.<field>`, `updated_at`.

Types convert the CRM's wire values: `text`, `number`, `money` (Dataverse Money `{"Value": n}` or a number),
`date` and `datetime` (Dataverse `/Date(ms)/`, epoch milliseconds as HubSpot sends them, ISO-8601), `bool`,
`option` (a Dataverse OptionSetValue or a plain value, translated through `options`), `reference` (Dataverse
EntityReference, Zoho lookup `{id, name}`, or a bare id), `owner` (a reference resolved to a rep through
`owners`, or carrying its own email as Zoho's does), `list` (a list, or text split on `separator`, default `;`).
A value of the wrong shape raises InvalidInput naming the CRM column.

Deal stages are facts only once normalised: `stages:` maps the CRM's own stage values (case-insensitive) onto
`won` and `lost`, e.g. `stages: {won: ["Closed Won"], lost: ["Closed Lost"]}`; any other stage is an open one and
kept as the CRM names it. A deal mapping `deal.is_won` and `deal.is_closed` (Salesforce `IsWon`/`IsClosed`) gets
its stage from them when closed. Only won deals make purchases (shared/crm/merge.py).

An unknown key anywhere in the file is an error naming the file and line, never ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from shared.domain.errors import ConfigError, InvalidInput, Location
from shared.domain.model import CUSTOMER_FIELDS, Purchase
from shared.domain.numbers import parse_number
from shared.domain.vocabulary import RecordKind

KINDS = ("customer", "deal")
WON, LOST = "won", "lost"
CLOSED_STAGES = (WON, LOST)
FILE_KEYS = ("id_prefix", "owners", "entities", "stages")
ENTITY_KEYS = ("kind", "aliases", "id", "fields", "name_order")
NAME_PARTS = ("contact_name.given", "contact_name.family")  # first / last name columns, joined into contact_name
NAME_ORDERS = ("given_first", "family_first")
FIELD_KEYS = ("to", "type", "options", "separator")
TYPES = ("text", "number", "money", "date", "datetime", "bool", "option", "reference", "owner", "list")
_NESTED_PREFIXES = ("owner.", "manager.", "usage.", "custom.")
_PERSON_KEYS = ("name", "email", "aad_object_id")
_PURCHASE_KEYS = frozenset(Purchase.__dataclass_fields__) - {"deal_id"}
_MS_DATE = re.compile(r"^/Date\((-?\d{1,15})(?:[+-]\d{4})?\)/$")


@dataclass(frozen=True)
class FieldRule:
    column: str
    target: str
    type: str = "text"
    options: Mapping[str, str] = field(default_factory=dict)
    separator: str = ";"


@dataclass(frozen=True)
class MappedRecord:
    """A CRM record translated to canonical names.

    `record` is nested canonical data (a partial customer, or {customer_id, deal, purchase} for a deal);
    `changed` lists the canonical targets that were present; `updated_at` is the CRM's modification time when
    mapped; `unresolved_owner` is an owner id the map could not turn into a rep (re-query the CRM).
    """

    record: dict[str, Any]
    changed: tuple[str, ...]
    updated_at: datetime | None = None
    unresolved_owner: str | None = None


@dataclass(frozen=True)
class StageTable:
    """CRM stage values (normalised: trimmed, case-folded) → `won` | `lost`; others are open and kept as sent."""

    closed: Mapping[str, str]

    def normalise(self, raw: Any) -> Any:
        if not isinstance(raw, str):
            return raw
        return self.closed.get(raw.strip().casefold(), raw)


def parse_stage_table(data: Any, fail: Callable[[str, str], Exception]) -> StageTable:
    """`{won: [values], lost: [values]}` → StageTable; anything else raises through `fail(message, where)`."""
    if data is None:
        return StageTable({})
    if not isinstance(data, Mapping) or set(data) - set(CLOSED_STAGES):
        raise fail("stages must be {won: [CRM values], lost: [CRM values]}", "stages")
    closed: dict[str, str] = {}
    for stage in CLOSED_STAGES:
        values = data.get(stage) or []
        if not isinstance(values, list) or not all(isinstance(v, str | int) and not isinstance(v, bool)
                                                   for v in values):
            raise fail(f"stages.{stage} must be a list of the CRM's stage values", f"stages.{stage}")
        for value in values:
            key = str(value).strip().casefold()
            if closed.get(key, stage) != stage:
                raise fail(f"stage value {value!r} is both won and lost", f"stages.{stage}")
            closed[key] = stage
    return StageTable(closed)


def yaml_key_lines(text: str) -> dict[str, int]:
    """Dotted key path → 1-based line of every mapping key in a YAML document (for errors naming the line)."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = f"{path}.{key.value}" if path else str(key.value)
                lines.setdefault(name, key.start_mark.line + 1)
                walk(value, name)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{path}[{index}]")

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, "")
    return lines


@dataclass(frozen=True)
class EntityMapping:
    name: str
    kind: str
    fields: Mapping[str, FieldRule]
    id_column: str | None = None
    aliases: tuple[str, ...] = ()
    name_order: str = "given_first"


@dataclass(frozen=True)
class VendorMapping:
    vendor: str
    entities: Mapping[str, EntityMapping]
    id_prefix: str = ""
    owners: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    stages: StageTable = field(default_factory=lambda: StageTable({}))

    def entity(self, name: Any, where: str = "entity") -> EntityMapping:
        """The mapping of a CRM entity; InvalidInput for an entity nobody mapped."""
        if not isinstance(name, str | int) or isinstance(name, bool):
            raise InvalidInput("must name an entity", Location(field=where))
        found = self.entities.get(str(name).lower())
        if found is None:
            raise InvalidInput(f"unknown entity {str(name)[:60]!r}: mappings/{self.vendor}.yaml does not map it",
                               Location(field=where))
        return found

    def find(self, name: str) -> EntityMapping | None:
        """The mapping of a CRM entity, or None when nobody mapped it."""
        return self.entities.get(name.lower())

    def canonical_record(self, entity: EntityMapping, record_id: str, mapped: dict) -> dict:
        """Mapped fields plus the ids: the canonical customer id, or the deal id inside `deal`."""
        record = dict(mapped)
        if entity.kind == "customer":
            record["id"] = self.customer_id(record_id)
        else:
            record["deal"] = {**record.get("deal", {}), "id": record_id}
        return record

    def customer_id(self, record_id: str) -> str:
        return f"{self.id_prefix}{record_id}"

    def map(self, entity: EntityMapping, values: Mapping[str, Any]) -> MappedRecord:
        """Translate the mapped columns present in `values`; unmapped columns are ignored."""
        record: dict[str, Any] = {}
        changed: list[str] = []
        updated_at = None
        unresolved = None
        name_parts: dict[str, str | None] = {}
        for column, raw in values.items():
            rule = entity.fields.get(column)
            if rule is None:
                continue
            try:
                value = _CONVERTERS[rule.type](raw, rule, self)
            except (ValueError, TypeError, OverflowError) as exc:
                raise InvalidInput(f"{rule.type} value expected: {exc}", Location(field=column)) from None
            if rule.type == "owner":
                value, owner_id, resolved = value
                if owner_id is not None:
                    record.setdefault("custom", {})["crm_owner_id"] = owner_id
                    if not resolved:
                        unresolved = owner_id
                        changed.append(rule.target)
                        continue  # keep the stored rep until the CRM is re-queried
            if rule.target == "updated_at" and value is not None:
                updated_at = datetime.fromisoformat(value) if isinstance(value, str) else value
                value = updated_at.isoformat()
            if rule.target == "deal.stage":
                value = self.stages.normalise(value)
            if rule.target in NAME_PARTS:
                name_parts[rule.target] = value
                continue
            _put(record, entity.kind, rule.target, value, self)
            changed.append(rule.target)
        if name_parts and "contact_name" not in record:
            given, family = name_parts.get("contact_name.given"), name_parts.get("contact_name.family")
            ordered = (family, given) if entity.name_order == "family_first" else (given, family)
            record["contact_name"] = " ".join(part.strip() for part in ordered if part and part.strip()) or None
            changed.append("contact_name")
        if entity.kind == "deal":
            _stage_from_flags(record, changed)
        return MappedRecord(record, tuple(changed), updated_at, unresolved)


def _stage_from_flags(record: dict, changed: list[str]) -> None:
    """Salesforce names the outcome in IsWon/IsClosed (StageName is the org's own picklist)."""
    deal = record.get("deal")
    if not deal or ("is_won" not in deal and "is_closed" not in deal):
        return
    won, closed = deal.pop("is_won", None), deal.pop("is_closed", None)
    if won is True:
        deal["stage"] = WON
    elif closed is True:
        deal["stage"] = LOST
    else:
        return
    if "deal.stage" not in changed:
        changed.append("deal.stage")


def _put(record: dict, kind: str, target: str, value: Any, vendor: VendorMapping) -> None:
    if kind == "deal":
        if target == "customer":
            record["customer_id"] = vendor.customer_id(value) if value is not None else None
        elif target in ("customer_email", "updated_at"):
            record[target] = value
        else:
            head, key = target.split(".", 1)
            record.setdefault(head, {})[key] = value
        return
    if "." in target:
        head, key = target.split(".", 1)
        record.setdefault(head, {})[key] = value
    else:
        record[target] = value


# --- converters: (raw, rule, vendor) -> canonical value; None and "" mean "cleared" -----------------------------
def _blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and raw.strip() == "")


def _unwrap(raw: Any) -> Any:
    """Dataverse wraps Money and OptionSetValue as {"__type": ..., "Value": x}."""
    if isinstance(raw, Mapping):
        for key in ("Value", "value"):
            if key in raw:
                return raw[key]
        raise ValueError("an object without a Value")
    return raw


def _text(raw: Any, rule: FieldRule, vendor: VendorMapping) -> str | None:
    if _blank(raw):
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError(f"got {type(raw).__name__}")
    return str(raw)


def _number(raw: Any, rule: FieldRule, vendor: VendorMapping) -> float | int | None:
    raw = _unwrap(raw)
    if _blank(raw):
        return None
    number = parse_number(raw)  # ValueError says what was wrong
    return int(number) if isinstance(number, float) and number.is_integer() and abs(number) < 2**53 else number


def _instant(raw: Any) -> datetime:
    if isinstance(raw, bool):
        raise ValueError("got a boolean")
    if isinstance(raw, int | float) or (isinstance(raw, str) and raw.strip().lstrip("-").isdigit()):
        return datetime.fromtimestamp(int(raw) / 1000, UTC)  # epoch milliseconds (HubSpot)
    if not isinstance(raw, str):
        raise ValueError(f"got {type(raw).__name__}")
    match = _MS_DATE.match(raw.strip())
    if match:  # Dataverse /Date(ms)/ is UTC whatever offset is appended
        return datetime.fromtimestamp(int(match[1]) / 1000, UTC)
    parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _date(raw: Any, rule: FieldRule, vendor: VendorMapping) -> str | None:
    if _blank(raw):
        return None
    if isinstance(raw, str) and re.match(r"\d{4}-\d{2}-\d{2}(T|$)", raw.strip()):
        # A date, or an ISO instant whose date part is the date the CRM meant (Salesforce, Zoho).
        return date.fromisoformat(raw.strip()[:10]).isoformat()
    return _instant(raw).date().isoformat()  # /Date(ms)/ (Dataverse) or epoch ms (HubSpot): UTC midnight


def _datetime(raw: Any, rule: FieldRule, vendor: VendorMapping) -> str | None:
    if _blank(raw):
        return None
    return _instant(raw).isoformat()


def _bool(raw: Any, rule: FieldRule, vendor: VendorMapping) -> bool | None:
    raw = _unwrap(raw)
    if _blank(raw):
        return None
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in {"true", "false", "1", "0", "yes", "no"}:
        return raw.strip().lower() in {"true", "1", "yes"}
    raise ValueError(f"got {raw!r}"[:80])


def _option(raw: Any, rule: FieldRule, vendor: VendorMapping) -> str | None:
    raw = _unwrap(raw)
    if _blank(raw):
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError(f"got {type(raw).__name__}")
    key = str(int(raw)) if isinstance(raw, float) and raw.is_integer() else str(raw)
    return rule.options.get(key, key)  # an unmapped option keeps its raw value rather than failing the event


def _reference_id(raw: Any) -> str | None:
    if _blank(raw):
        return None
    if isinstance(raw, Mapping):
        raw = raw.get("Id", raw.get("id"))
        if _blank(raw):
            return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise ValueError("a reference needs an id")
    text = str(raw).strip()
    if len(text) > 200 or any(ch in text for ch in "/\\#?") or not text.isprintable():
        raise ValueError("not a record id")
    return text.lower() if _looks_like_guid(text) else text


def _looks_like_guid(text: str) -> bool:
    return len(text) == 36 and text.count("-") == 4


def _reference(raw: Any, rule: FieldRule, vendor: VendorMapping) -> str | None:
    return _reference_id(raw)


def _owner(raw: Any, rule: FieldRule, vendor: VendorMapping) -> tuple[dict | None, str | None, bool]:
    """-> (person dict, owner id, resolved). Resolved means the rep's email is known."""
    owner_id = _reference_id(raw)
    if owner_id is None:
        return None, None, True
    # Every key is present (None when unknown) so a new owner replaces all of the previous owner's details.
    person: dict[str, str | None] = {}
    known = vendor.owners.get(owner_id) or {}
    for key in _PERSON_KEYS:
        value = known.get(key)
        if value is None and isinstance(raw, Mapping):
            value = raw.get(key, raw.get(key.capitalize() if key != "aad_object_id" else key))
        person[key] = value if isinstance(value, str) and value else None
    return person, owner_id, bool(person["email"])


def _list(raw: Any, rule: FieldRule, vendor: VendorMapping) -> list[str]:
    if _blank(raw):
        return []
    if isinstance(raw, str):
        return [part.strip() for part in raw.split(rule.separator) if part.strip()]
    if isinstance(raw, list) and all(isinstance(item, str | int) and not isinstance(item, bool) for item in raw):
        return [str(item) for item in raw if str(item)]
    raise ValueError(f"got {type(raw).__name__}")


_CONVERTERS: dict[str, Callable[[Any, FieldRule, VendorMapping], Any]] = {
    "text": _text, "number": _number, "money": _number, "date": _date, "datetime": _datetime, "bool": _bool,
    "option": _option, "reference": _reference, "owner": _owner, "list": _list,
}


# --- loading -------------------------------------------------------------------------------------------------
def load_mapping(directory: Path, vendor: str) -> VendorMapping:
    """Parse and validate mappings/<vendor>.yaml (cached per file modification time)."""
    path = Path(directory) / f"{vendor}.yaml"
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise ConfigError(f"CRM field map {path} is missing (MAPPINGS_DIR)") from None
    return _load(str(path), vendor, stamp)


@lru_cache(maxsize=32)
def _load(path: str, vendor: str, stamp: int) -> VendorMapping:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InvalidInput(f"not valid YAML: {exc}", Location(file=path)) from None
    return parse_mapping(data, vendor, path, yaml_key_lines(text))


def parse_mapping(data: Any, vendor: str, source: str = "<mapping>",
                  lines: Mapping[str, int] | None = None) -> VendorMapping:
    """Validate a parsed mapping file; `lines` (from `yaml_key_lines`) lets errors name the line."""
    lines = lines or {}

    def fail(message: str, where: str) -> InvalidInput:
        line = lines.get(where)
        while line is None and "." in where:  # the nearest enclosing key that has a line
            where_up = where.rsplit(".", 1)[0]
            line = lines.get(where_up)
            where = where_up if line is None else where
        return InvalidInput(message, Location(file=source, line=line, field=where))

    def unknown(given: Mapping, allowed: tuple[str, ...], where: str) -> None:
        for key in given:
            if str(key) not in allowed:
                path = f"{where}.{key}" if where else str(key)
                raise InvalidInput(f"unknown key {str(key)[:60]!r} (allowed: {', '.join(allowed)})",
                                   Location(file=source, line=lines.get(path), field=path))

    if not isinstance(data, Mapping):
        raise fail("a mapping file must be an object", "(top)")
    unknown(data, FILE_KEYS, "")
    prefix = data.get("id_prefix") or ""
    if not isinstance(prefix, str) or any(ch in prefix for ch in "/\\#?"):
        raise fail("must be text without / \\ # ?", "id_prefix")
    owners_raw = data.get("owners") or {}
    if not isinstance(owners_raw, Mapping):
        raise fail("must map CRM user ids to {email, name}", "owners")
    owners: dict[str, dict[str, str]] = {}
    for user_id, person in owners_raw.items():
        if not isinstance(person, Mapping) or not all(k in _PERSON_KEYS for k in person):
            raise fail("must be {email, name, aad_object_id}", f"owners.{user_id}")
        key = str(user_id).strip()
        owners[key.lower() if _looks_like_guid(key) else key] = {k: str(v) for k, v in person.items() if v}

    entities_raw = data.get("entities")
    if not isinstance(entities_raw, Mapping) or not entities_raw:
        raise fail("must map at least one CRM entity", "entities")
    entities: dict[str, EntityMapping] = {}
    for name, spec in entities_raw.items():
        where = f"entities.{name}"
        if not isinstance(spec, Mapping):
            raise fail("must be an object with kind and fields", where)
        unknown(spec, ENTITY_KEYS, where)
        kind = spec.get("kind", "customer")
        if kind not in tuple(RecordKind):
            raise fail(f"kind must be one of {', '.join(RecordKind)}", f"{where}.kind")
        fields_raw = spec.get("fields")
        if not isinstance(fields_raw, Mapping) or not fields_raw:
            raise fail("must map at least one column", f"{where}.fields")
        rules: dict[str, FieldRule] = {}
        for column, target_spec in fields_raw.items():
            if isinstance(target_spec, Mapping):
                unknown(target_spec, FIELD_KEYS, f"{where}.fields.{column}")
            rules[str(column)] = _rule(str(column), target_spec, kind, f"{where}.fields.{column}", fail)
        aliases = tuple(str(alias) for alias in (spec.get("aliases") or ()))
        name_order = spec.get("name_order", "given_first")
        if name_order not in NAME_ORDERS:
            raise fail(f"name_order must be one of {', '.join(NAME_ORDERS)}", f"{where}.name_order")
        entity = EntityMapping(str(name), kind, rules, spec.get("id"), aliases, name_order)
        for key in (str(name), *aliases):
            if key.lower() in entities:
                raise fail(f"entity name {key!r} is mapped twice", where)
            entities[key.lower()] = entity
    return VendorMapping(vendor, entities, prefix, owners, parse_stage_table(data.get("stages"), fail))


def _rule(column: str, spec: Any, kind: str, where: str, fail: Callable[[str, str], InvalidInput]) -> FieldRule:
    if isinstance(spec, str):
        spec = {"to": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("to"), str):
        raise fail("must be a target field name or {to: field, type: ...}", where)
    target = spec["to"].strip()
    kind_of = spec.get("type", "owner" if target == "owner" else "text")
    if kind_of not in TYPES:
        raise fail(f"type must be one of {', '.join(TYPES)}", where)
    if not _valid_target(target, kind):
        allowed = ("customer, customer_email, updated_at, deal.<field>, purchase.<field>" if kind == "deal"
                   else "a canonical customer field or owner./manager./usage./custom.<key>")
        raise fail(f"unknown target {target!r}; use {allowed}", where)
    options = spec.get("options") or {}
    if not isinstance(options, Mapping):
        raise fail("options must map CRM values to labels", where)
    separator = spec.get("separator", ";")
    if not isinstance(separator, str) or not separator:
        raise fail("separator must be text", where)
    return FieldRule(column, target, kind_of, {str(k): str(v) for k, v in options.items()}, separator)


def _valid_target(target: str, kind: str) -> bool:
    if kind == "deal":
        if target in ("customer", "customer_email", "updated_at"):
            return True
        head, _, key = target.partition(".")
        # Deal keeps unknown keys in `extra`, so any deal.<key> is allowed.
        return (head == "deal" and bool(key) and key != "id") or (head == "purchase" and key in _PURCHASE_KEYS)
    if target in NAME_PARTS:
        return True
    if target.startswith(_NESTED_PREFIXES):
        head, key = target.split(".", 1)
        return bool(key) and (head not in ("owner", "manager") or key in _PERSON_KEYS)
    return target in CUSTOMER_FIELDS and target != "id"
