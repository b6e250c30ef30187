"""Daily digests for reps: one Adaptive Card per rep per working day, at the start of the rep's day in the rep's
time zone, instead of one card per opportunity.

A rep in `digest` mode (contact policy `reps:`, default the TEAMS_DELIVERY_MODE setting) gets each new opportunity
card as an *item* of the digest of their next working day: a row per (rep, day) in the `Digests` table, changed by
ETag compare-and-swap, items keyed by the card's dedupe key (planning the same firing again adds nothing). Planning
also publishes one "digest due" message to the `teams` queue per (rep, day), scheduled for the start of the rep's
working day, with the digest's key as message id and dedupe key: the broker drops the repeats, and the sender's
idempotency record makes a redelivered digest a duplicate. When it is due the row is *closed* (items arriving later
go to the next working day) and the card is built from it — the one message rendered at send time, because its
content is only known then. `importance: high` cards go at once when the policy says `high_importance: instant`,
but like everything to a rep in digest mode, never outside the rep's working hours. Reps in `instant` mode get every
card as it comes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.broker import OutgoingMessage
from shared.contact.policy import INSTANT, ContactPolicy, RepPreferences
from shared.domain.errors import TransientError
from shared.domain.messages import ActionMessage
from shared.domain.model import Customer
from shared.domain.names import DIGESTS
from shared.domain.schedule import next_business_slot
from shared.settings import Settings
from shared.storage.backend import Entity, Storage
from shared.storage.keys import email_digest

DIGEST_KIND = "digest"
MAX_STORED_ITEMS = 200  # more than a card shows; beyond this only the count grows ("and N more")
PARTITION = "digests"


def digest_key(rep_email: str, day: date) -> str:
    """The digest's dedupe key and message id (the rep as a digest: no address in keys)."""
    return f"digest:{email_digest(rep_email)[:24]}:{day.isoformat()}"


def working_day_start(day: date, prefs: RepPreferences) -> datetime:
    return datetime.combine(day, prefs.working_hours[0], tzinfo=ZoneInfo(prefs.timezone)).astimezone(UTC)


class RepRouter:
    """Decides how a card to a rep travels: at once, or (digest mode) into the day's digest, `importance: high`
    at once inside the rep's working hours."""

    def __init__(self, settings: Settings, policy: ContactPolicy, book: DigestBook,
                 priority_of: Callable[[str], int] = lambda rule_id: 0):
        self.settings = settings
        self.policy = policy
        self.book = book
        self.priority_of = priority_of

    def preferences(self, rep_email: str | None) -> RepPreferences:
        return self.policy.reps.for_owner(rep_email, self.settings.teams_delivery_mode,
                                          self.settings.default_timezone)

    def route(self, customer: Customer | None, message: ActionMessage, queued_message: OutgoingMessage,
              now: datetime, recommendation: str | None = None) -> OutgoingMessage:
        """The message to publish for a Teams card to a rep: the card itself (not before the rep's working hours),
        or the due-message of the digest the card joined. Cards released by a sent mail (`after: email`) come here
        at send time, without the customer record."""
        if message.channel != "teams" or "@" not in message.to:
            return queued_message
        prefs = self.preferences(message.to)
        if prefs.mode == INSTANT:  # every card as it comes, as before digests existed
            return queued_message
        if message.importance == "high" and self.policy.reps.high_importance == INSTANT:
            slot = next_business_slot(max(now, message.not_before or now), prefs.timezone, prefs.working_hours,
                                      prefs.working_days)
            return replace(queued_message, scheduled_at=slot) if slot else queued_message
        item = {"rule": message.rule, "customer_id": message.customer_id,
                "customer": (customer.name if customer else None) or message.customer_id,
                "recommendation": recommendation or message.content.get("summary") or "",
                "priority": self.priority_of(message.rule),
                "amount": (customer.annual_spend if customer else None) or 0,
                "url": (customer.crm_url if customer else None) or ""}
        day, due = self.book.add(message.to, prefs, message.dedupe_key, item, now)
        key = digest_key(message.to, day)
        due_message = ActionMessage(
            dedupe_key=key, channel="teams", rule=DIGEST_KIND, kind=DIGEST_KIND, customer_id="-", to=message.to,
            subject=None, content={}, planned_at=now, not_before=due,
            properties={"digest_day": day.isoformat()})
        return OutgoingMessage(body=due_message.to_json(), message_id=key, scheduled_at=due if due > now else None,
                               subject="teams", properties={"kind": DIGEST_KIND})


class DigestBook:
    """The `Digests` table: one row per rep and working day, items added and the row closed by compare-and-swap."""

    def __init__(self, storage: Storage, max_cas_attempts: int = 30):
        self.table = storage.table(DIGESTS)
        self.max_cas_attempts = max_cas_attempts

    def add(self, rep_email: str, prefs: RepPreferences, item_key: str, item: Mapping[str, Any],
            now: datetime) -> tuple[date, datetime]:
        """Put an item into the rep's first open digest from now on; returns its day and when it is due."""
        local = now.astimezone(ZoneInfo(prefs.timezone))
        day = local.date()
        if local.time() >= prefs.working_hours[1]:
            day += timedelta(days=1)
        for _ in range(60):
            while day.isoweekday() not in prefs.working_days:
                day += timedelta(days=1)
            if self._add_to(rep_email, day, item_key, item):
                return day, max(working_day_start(day, prefs), now)
            day += timedelta(days=1)  # that day's digest went out already
        raise TransientError("no open digest found within 60 days")

    def _add_to(self, rep_email: str, day: date, item_key: str, item: Mapping[str, Any]) -> bool:
        result: list[bool] = []

        def put(entity: Entity | None) -> dict[str, Any] | None:
            items = json.loads(entity.get("items", "{}")) if entity else {}
            if item_key in items:  # added before (a replay): wherever it is, it is counted once
                result[:] = [True]
                return None
            if entity and entity.get("closed"):
                result[:] = [False]
                return None
            result[:] = [True]
            more = int(entity.get("more", 0)) if entity else 0
            if len(items) >= MAX_STORED_ITEMS:
                return {**_properties(entity), "more": more + 1}
            items[item_key] = dict(item)
            return {**_properties(entity), "items": json.dumps(items, ensure_ascii=False, separators=(",", ":")),
                    "more": more, "closed": False, "day": day.isoformat()}

        self.table.compare_and_swap(PARTITION, digest_key(rep_email, day).replace(":", "-"), put,
                                    attempts=self.max_cas_attempts)
        return result[0]

    def close(self, rep_email: str, day: date) -> tuple[list[Mapping[str, Any]], int]:
        """Close the day's digest (later items go to the next one); its items and how many were not stored.
        Closing again returns the same: a redelivered digest renders the same card."""
        box: list[Entity | None] = [None]

        def shut(entity: Entity | None) -> dict[str, Any] | None:
            box[0] = entity
            if entity is None:
                return {"items": "{}", "more": 0, "closed": True, "day": day.isoformat()}
            return None if entity.get("closed") else {**_properties(entity), "closed": True}

        self.table.compare_and_swap(PARTITION, digest_key(rep_email, day).replace(":", "-"), shut,
                                    attempts=self.max_cas_attempts)
        entity = box[0]
        items = list(json.loads(entity.get("items", "{}")).values()) if entity else []
        return items, int(entity.get("more", 0)) if entity else 0


    def purge_before(self, day: date) -> int:
        """Delete the digests of days before `day` (they were sent or never will be)."""
        rows = self.table.query("PartitionKey eq @pk and day lt @day", {"pk": PARTITION, "day": day.isoformat()},
                                select=["PartitionKey", "RowKey"])
        return self.table.delete_many((row["PartitionKey"], row["RowKey"]) for row in rows)


def _properties(entity: Entity | None) -> dict[str, Any]:
    return {k: v for k, v in (entity or {}).items() if k not in ("PartitionKey", "RowKey")}


def render_digest(message: ActionMessage, book: DigestBook, settings: Settings, size: int) -> ActionMessage:
    """The due-message of a digest with its card: items by priority, then amount; the rest as "and N more"."""
    day = date.fromisoformat(message.properties["digest_day"])
    items, unstored = book.close(message.to, day)
    return replace(message, subject=f"Opportunities {day.isoformat()}",
                   content=digest_content(items, unstored, day, settings.public_base_url, size))


def digest_content(items: Sequence[Mapping[str, Any]], unstored: int, day: date, base_url: str,
                   size: int) -> dict[str, Any]:
    ranked = sorted(items, key=lambda i: (-int(i.get("priority", 0)), -float(i.get("amount") or 0),
                                          str(i.get("customer")), str(i.get("rule"))))
    shown, more = ranked[:size], len(ranked) - size + unstored if len(ranked) > size else unstored
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True,
         "text": f"{len(items) + unstored} new opportunities — {day.isoformat()}"}]
    for item in shown:
        amount = f" · {float(item['amount']):,.0f}" if item.get("amount") else ""
        line = f"**{item['customer']}**{amount}: {item.get('recommendation') or item['rule']}"
        if item.get("url"):
            line += f" ([CRM]({item['url']}))"
        body.append({"type": "TextBlock", "wrap": True, "spacing": "Small", "text": line})
    work_list = f"{base_url}/api/dashboard"
    if more > 0:
        body.append({"type": "TextBlock", "wrap": True, "isSubtle": True, "text": f"and {more} more"})
    card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.5", "body": body,
            "actions": [{"type": "Action.OpenUrl", "title": "Open the work list", "url": work_list}]}
    return {"card": card, "summary": f"{len(items) + unstored} new opportunities", "aad_object_id": None}

