"""Merging a CRM event into the canonical customer, safely when events arrive late, twice or out of order.

`apply_event(current, event, refetched=None)` is pure: the `crm-events` consumer calls it inside its ETag
read-merge-write loop (`customer_id_of(event, refetched)` says which customer to read first).

Ordering: every field written from an event remembers the event's time in `custom["crm_versions"]`
(`{"email": iso, "usage.reports": iso, "deals[D-1].stage": iso, "*": iso}`); a field is only overwritten by an
event at least as new. Per-field versions matter because CRMs such as HubSpot send one event per property: an
older change to another field must still apply. Fields never written by an event fall back to `"*"` (the last
full-record write) and then to the customer's `updated_at`. An event without a time applies unconditionally.

Deals: a customer event's `deals` merge into the stored ones by deal id (per field, newer wins; deals it does not
list stay). A deal event updates `deals`; a deal whose stage is `won` and whose product is known becomes (or updates)
the purchase with the same `deal_id`, which also adds the product to `products` and recomputes
`last_purchase_date` and `annual_spend` (sum of purchases in the 365 days up to the event). A deal that leaves
`won`, or is deleted, takes its purchase away (products stay: they may have come from the CRM itself).
A deal for a customer not stored yet creates a bare customer (id + deal), filled in when the contact arrives.
Delete of a customer → None.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.domain.errors import InvalidInput, Location
from shared.domain.events import CrmEvent
from shared.domain.model import Customer

VERSIONS_KEY = "crm_versions"
WON = "won"
_PARTIAL_OBJECTS = ("usage", "custom", "owner", "manager")


def customer_id_of(event: CrmEvent, refetched: Mapping[str, Any] | None = None) -> str | None:
    """The canonical id of the customer an event changes (None: a deal whose customer the CRM did not name)."""
    record = refetched if refetched is not None else (event.record or {})
    if event.entity == "deal":
        value = record.get("customer_id") or (event.record or {}).get("customer_id")
    else:
        value = record.get("id") or (event.record or {}).get("id")
    return str(value) if value else None


def apply_event(current: Customer | None, event: CrmEvent, refetched: dict | None = None) -> Customer | None:
    """The customer after `event` (None when deleted). Never lets an older event overwrite newer data."""
    when = _aware(event.occurred_at or event.received_at)
    record = dict(refetched if refetched is not None else (event.record or {}))
    if event.entity == "deal":
        return _apply_deal(current, event, record, when)
    if event.operation == "delete":
        if current is not None and when is not None and current.updated_at is not None \
                and _aware(current.updated_at) > when:
            return current  # re-created/updated after this delete was issued
        return None
    customer_id = customer_id_of(event, refetched)
    if not customer_id:
        raise InvalidInput("customer event without an id", Location(field="record.id"))
    full = refetched is not None or event.operation == "create"
    base = current.to_dict() if current is not None else {"id": customer_id}
    versions = _versions(current)
    fallback = current.updated_at if current is not None else None
    for key, value in record.items():
        if key in ("id", "updated_at"):
            continue
        if key == "deals" and isinstance(value, list):
            base[key] = _merge_deals(base.get(key) or [], value, versions, when, fallback)
        elif key in _PARTIAL_OBJECTS and isinstance(value, Mapping):
            merged = dict(base.get(key) or {})
            for sub, sub_value in value.items():
                path = f"{key}.{sub}"
                if _newer(versions, path, when, fallback):
                    merged[sub] = sub_value
                    _stamp(versions, path, when)
            base[key] = merged
        elif _newer(versions, key, when, fallback):
            base[key] = value
            _stamp(versions, key, when)
    if full:
        _stamp(versions, "*", when)
    return _build(base, versions, current, when, record.get("updated_at"))


def _apply_deal(current: Customer | None, event: CrmEvent, record: dict, when: datetime | None) -> Customer:
    customer_id = record.get("customer_id") or (current.id if current else None)
    if not customer_id:
        raise InvalidInput("the deal names no customer (map a contact/account reference to `customer`)",
                           Location(field="record.customer_id"))
    deal_patch = dict(record.get("deal") or {})
    deal_id = str(deal_patch.get("id") or event.record_id)
    base = current.to_dict() if current is not None else {"id": customer_id}
    versions = _versions(current)
    fallback = current.updated_at if current is not None else None
    deals = [dict(d) for d in base.get("deals") or []]
    purchases = [dict(p) for p in base.get("purchases") or []]
    existing = next((d for d in deals if d.get("id") == deal_id), None)
    purchases_before = list(purchases)

    if event.operation == "delete":
        if _newer(versions, f"deals[{deal_id}]", when, fallback):
            deals = [d for d in deals if d.get("id") != deal_id]
            purchases = [p for p in purchases if p.get("deal_id") != deal_id]
            _stamp(versions, f"deals[{deal_id}]", when)
    else:
        deal = existing if existing is not None else {"id": deal_id}
        if existing is None:
            deals.append(deal)
        sent_product = (record.get("purchase") or {}).get("product")
        if sent_product and "product" not in deal_patch:
            deal_patch["product"] = sent_product  # kept on the deal: a later close (Dataverse Win) names none
        _patch_deal(deal, deal_patch, versions, when, fallback)
        purchases = _purchases_after(purchases, deal, dict(record.get("purchase") or {}), when)

    base["deals"] = deals
    if purchases != purchases_before:
        base["purchases"] = purchases
        products = list(base.get("products") or [])
        for purchase in purchases:
            if purchase["product"] not in products:
                products.append(purchase["product"])
        base["products"] = products
        dates = [p["date"] for p in purchases if p.get("date")]
        if dates:
            base["last_purchase_date"] = max(dates)
        base["annual_spend"] = _annual_spend(purchases, when)
    if record.get("customer_email") and not base.get("email"):
        base["email"] = record["customer_email"]
    return _build(base, versions, current, when, record.get("updated_at"))


def _merge_deals(current: list, incoming: list, versions: dict[str, str], when: datetime | None,
                 fallback: datetime | None) -> list[dict]:
    """The customer's deals with the event's deals merged in by id, field by field (newer wins).

    A customer event lists the deals it knows about, not necessarily all of them: deals it leaves out stay.
    """
    deals = [dict(d) for d in current]
    by_id = {str(d.get("id")): d for d in deals}
    for raw in incoming:
        if not isinstance(raw, Mapping) or not raw.get("id"):
            continue
        deal_id = str(raw["id"])
        deal = by_id.get(deal_id)
        if deal is None:
            deal = by_id[deal_id] = {"id": deal_id}
            deals.append(deal)
        _patch_deal(deal, raw, versions, when, fallback)
    return deals


def _patch_deal(deal: dict, patch: Mapping[str, Any], versions: dict[str, str], when: datetime | None,
                fallback: datetime | None) -> None:
    """Apply a deal's fields, each only if this event is at least as new as the one that wrote it last."""
    for key, value in patch.items():
        path = f"deals[{deal['id']}].{key}"
        if key != "id" and _newer(versions, path, when, fallback):
            deal[key] = value
            _stamp(versions, path, when)


def _purchases_after(purchases: list[dict], deal: dict, patch: dict, when: datetime | None) -> list[dict]:
    deal_id = deal["id"]
    previous = next((p for p in purchases if p.get("deal_id") == deal_id), None)
    others = [p for p in purchases if p.get("deal_id") != deal_id]
    if deal.get("stage") != WON:
        return others
    product = patch.get("product") or deal.get("product") or (previous or {}).get("product")
    if not product:
        return purchases  # won, but no product mapped: nothing a product rule could use
    amount = patch.get("amount")
    if amount is None:
        amount = (previous or {}).get("amount") if previous else deal.get("amount")
    day = patch.get("date") or deal.get("closed_on") or (previous or {}).get("date") or \
        (when.date().isoformat() if when else None)
    return [*others, {"product": product, "date": day, "amount": amount, "deal_id": deal_id}]


def _annual_spend(purchases: list[dict], when: datetime | None) -> float | int:
    today = when.date() if when else datetime.now(UTC).date()
    start = today - timedelta(days=365)
    total: float | int = 0
    for purchase in purchases:
        day = purchase.get("date")
        amount = purchase.get("amount")
        if day and isinstance(amount, int | float) and start < date.fromisoformat(str(day)[:10]) <= today:
            total += amount
    return total


# --- versions ------------------------------------------------------------------------------------------------
def _versions(current: Customer | None) -> dict[str, str]:
    stored = (current.custom.get(VERSIONS_KEY) if current is not None else None) or {}
    return dict(stored) if isinstance(stored, Mapping) else {}


def _newer(versions: Mapping[str, str], path: str, when: datetime | None, fallback: datetime | None) -> bool:
    if when is None:
        return True
    previous = versions.get(path) or _parent_version(versions, path) or versions.get("*")
    # `updated_at` only guards customers no event has written yet (imports): once versions exist, a field
    # without one was never written by a newer event.
    stamp = _parse(previous) if previous else (None if versions else _aware(fallback))
    return stamp is None or when >= stamp


def _parent_version(versions: Mapping[str, str], path: str) -> str | None:
    # A deal deleted or written as a whole at time T guards its fields too.
    if path.startswith("deals[") and "]." in path:
        return versions.get(path.split("].", 1)[0] + "]")
    return None


def _stamp(versions: dict[str, str], path: str, when: datetime | None) -> None:
    if when is not None:
        versions[path] = when.isoformat()


def _parse(text: str) -> datetime | None:
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        return None


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _build(base: dict, versions: dict[str, str], current: Customer | None, when: datetime | None,
           crm_updated_at: Any) -> Customer:
    custom = dict(base.get("custom") or {})
    if versions:
        custom[VERSIONS_KEY] = versions
    base["custom"] = custom
    stamps = [moment for moment in (_aware(current.updated_at) if current else None, when,
                                     _parse(crm_updated_at) if isinstance(crm_updated_at, str) else None) if moment]
    base["updated_at"] = max(stamps).isoformat() if stamps else None
    return Customer.from_dict(base, Location(file="crm-event"))
