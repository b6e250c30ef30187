"""The opportunity ledger (`Opportunities` table): one row per firing, claimed once.

It replaces the "通知済" (notified) flags of the SharePoint-list flows. A firing is *claimed* with an atomic
insert (batched per partition; a conflicting batch falls back to single inserts), so a re-run, a second instance
or a redelivered shard never plans it twice. The claim stores the rendered broker messages with `published=False`;
once the broker accepted them the row is rewritten slim with `published=True` and status `queued`. A crash in
between leaves `published=False`, and the next evaluation of that shard re-publishes the stored messages (broker
duplicate detection absorbs a double publish) — whether or not the rule still fires that day.

Held messages (actions waiting for a human approval) count as "to publish" too: the planner hands them to the
approval store (`shared/approvals/flow.py`) before marking the claim, so a crash in between is recovered the same way;
marking then blanks them here (the `Approvals` row is their only copy). An approval's decision moves the opportunity
out of `needs_approval`: approved → `queued`, rejected → `rejected` (a person said no: kept apart from rule-based
`suppressed`), expired unanswered → `suppressed`.

PartitionKey = the customer's shard (as in `Customers`), RowKey = the firing's dedupe key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TransactionOperation, UpdateMode

from shared.broker import OutgoingMessage
from shared.customers.store import BATCH_LIMIT, MAX_STRING_CHARS, entity_size, partition_key, shard_of
from shared.domain.errors import InvalidInput, Location, NotFound, PayloadTooLarge
from shared.domain.names import OPPORTUNITIES
from shared.storage.tables import TableAccess

DETECTED, QUEUED, NOTIFIED, IN_PROGRESS, WON, LOST = "detected", "queued", "notified", "in_progress", "won", "lost"
SUPPRESSED, NEEDS_APPROVAL, REJECTED = "suppressed", "needs_approval", "rejected"
STATUSES = (DETECTED, QUEUED, NOTIFIED, IN_PROGRESS, WON, LOST, SUPPRESSED, NEEDS_APPROVAL, REJECTED)
# Status changes people make through the API (PATCH /api/opportunities/{id}).
MANUAL_TRANSITIONS = {
    QUEUED: {IN_PROGRESS, WON, LOST}, NOTIFIED: {IN_PROGRESS, WON, LOST}, IN_PROGRESS: {WON, LOST, NOTIFIED},
    DETECTED: {IN_PROGRESS, WON, LOST}, NEEDS_APPROVAL: {LOST}, WON: {IN_PROGRESS}, LOST: {IN_PROGRESS},
    REJECTED: {IN_PROGRESS, LOST},
}
_FORBIDDEN_KEY_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f]")


def row_key(dedupe_key: str) -> str:
    """Table RowKeys may not contain / \\ # ? or control characters."""
    return _FORBIDDEN_KEY_CHARS.sub("_", dedupe_key)


@dataclass(frozen=True)
class QueuedMessage:
    """A broker message waiting to be published, with the queue it goes to."""

    queue: str
    message: OutgoingMessage

    def to_dict(self) -> dict:
        m = self.message
        return {"queue": self.queue, "body": m.body, "message_id": m.message_id, "subject": m.subject,
                "scheduled_at": m.scheduled_at.isoformat() if m.scheduled_at else None,
                "properties": dict(m.properties)}

    @classmethod
    def from_dict(cls, data: dict) -> QueuedMessage:
        scheduled = datetime.fromisoformat(data["scheduled_at"]) if data.get("scheduled_at") else None
        return cls(data["queue"], OutgoingMessage(body=data["body"], message_id=data["message_id"],
                                                  scheduled_at=scheduled, subject=data.get("subject"),
                                                  properties=data.get("properties") or {}))


@dataclass(frozen=True)
class Claim:
    """A firing to record: what the ledger row says, and the messages to publish for it.

    `status` is what the opportunity becomes once its messages are on the broker (queued, suppressed,
    needs_approval); until then the row says `detected`.
    """

    key: str
    rule: str
    kind: str
    customer_id: str
    owner_name: str | None
    owner_email: str | None
    status: str
    recommendation: str | None
    local_date: str
    actions: tuple[dict, ...]  # [{"key", "channel", "status", "reason"}] — no addresses or bodies
    messages: tuple[QueuedMessage, ...] = ()
    held: tuple[QueuedMessage, ...] = ()  # waiting for approval


@dataclass(frozen=True)
class Opportunity:
    id: str
    key: str
    rule: str
    kind: str
    customer_id: str
    owner_name: str | None
    owner_email: str | None
    status: str
    recommendation: str | None
    month: str
    detected_at: datetime
    updated_at: datetime
    queued_at: datetime | None = None
    notified_at: datetime | None = None
    amount: float | None = None
    published: bool = True
    actions: tuple[dict, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "published"}
        for name in ("detected_at", "updated_at", "queued_at", "notified_at"):
            data[name] = data[name].isoformat() if data[name] else None
        data["actions"] = list(self.actions)
        return data


@dataclass
class ClaimResult:
    """Claims that must be published now: newly inserted ones and ones a crash left unpublished."""

    to_publish: list[Claim] = field(default_factory=list)
    already_planned: int = 0


class OpportunityLedger:
    def __init__(self, tables: TableAccess, shards: int):
        self.tables = tables
        self.shards = shards

    @property
    def client(self) -> TableClient:
        return self.tables.table(OPPORTUNITIES)

    def partition_of(self, customer_id: str) -> str:
        return partition_key(shard_of(customer_id, self.shards))

    # --- claims --------------------------------------------------------------------------------------------
    def known_keys(self, partition: str) -> dict[str, bool]:
        """RowKey → published, for every firing of one partition (one paged read, two columns)."""
        rows = self.client.query_entities("PartitionKey eq @pk", parameters={"pk": partition},
                                          select=["RowKey", "published"], results_per_page=1000)
        return {row["RowKey"]: bool(row.get("published", True)) for row in rows}

    def claim(self, claims: Sequence[Claim], now: datetime) -> ClaimResult:
        """Insert claims atomically; those that exist already are counted, not returned.

        Returns the claims whose messages must now be published.
        """
        result = ClaimResult()
        by_partition: dict[str, list[tuple[Claim, dict]]] = {}
        for claim in claims:
            partition = self.partition_of(claim.customer_id)
            by_partition.setdefault(partition, []).append((claim, self._claim_entity(partition, claim, now)))
        for items in by_partition.values():
            for start in range(0, len(items), BATCH_LIMIT):
                chunk = items[start:start + BATCH_LIMIT]
                try:
                    self.client.submit_transaction(
                        [(TransactionOperation.CREATE, entity) for _, entity in chunk])
                    result.to_publish += [claim for claim, _ in chunk]
                except HttpResponseError:
                    # Some already exist (another instance, a redelivery): claim one by one.
                    for claim, entity in chunk:
                        try:
                            self.client.create_entity(entity)
                            result.to_publish.append(claim)
                        except ResourceExistsError:
                            result.already_planned += 1
        return result

    def mark_published(self, claims: Iterable[Claim], now: datetime) -> None:
        """Record that the broker accepted the claims' messages (batched, one partition per transaction)."""
        by_partition: dict[str, list[dict]] = {}
        for claim in claims:
            partition = self.partition_of(claim.customer_id)
            entity = {"PartitionKey": partition, "RowKey": row_key(claim.key), "published": True,
                      "status": claim.status, "updated_at": now}
            if claim.status == QUEUED:
                entity["queued_at"] = now
            # The stored messages are no longer needed: blank them (a merge cannot remove columns). Held ones
            # now live in the approval store (the planner passes `held=()` when it has none, keeping them here).
            entity.update(dict.fromkeys(_chunks("messages_json", [m.to_dict() for m in claim.messages]), ""))
            entity.update(dict.fromkeys(_chunks("held_json", [m.to_dict() for m in claim.held]), ""))
            by_partition.setdefault(partition, []).append(entity)
        for entities in by_partition.values():
            for start in range(0, len(entities), BATCH_LIMIT):
                chunk = entities[start:start + BATCH_LIMIT]
                ops = [(TransactionOperation.UPDATE, e, {"mode": UpdateMode.MERGE}) for e in chunk]
                self.client.submit_transaction(ops)

    def unpublished(self, partition: str) -> list[Claim]:
        """Claims of a partition whose messages may not have reached the broker (a crash between the steps)."""
        rows = self.client.query_entities("PartitionKey eq @pk and published eq false",
                                          parameters={"pk": partition})
        return [self._claim_from_entity(row) for row in rows]

    # --- reads and manual updates --------------------------------------------------------------------------
    def get(self, opportunity_id: str) -> Opportunity:
        partition, _, key = opportunity_id.partition("~")
        try:
            return self._opportunity(self.client.get_entity(partition, key))
        except (ResourceNotFoundError, ValueError):
            raise NotFound(f"no opportunity {opportunity_id!r}") from None

    def iter_all(self) -> Iterator[Opportunity]:
        for row in self.client.list_entities(results_per_page=1000):
            yield self._opportunity(row)

    def query(self, *, status: str | None = None, owner_email: str | None = None, rule: str | None = None,
              kind: str | None = None, month: str | None = None, customer_id: str | None = None,
              limit: int = 100) -> list[Opportunity]:
        """Opportunities matching every given filter (evaluated by the Table service), at most `limit`."""
        given = {"status": status, "owner_email": owner_email, "rule": rule, "kind": kind, "month": month,
                 "customer_id": customer_id}
        filters = {name: value for name, value in given.items() if value is not None}
        if status is not None and status not in STATUSES:
            raise InvalidInput(f"unknown status {status!r}; one of {', '.join(STATUSES)}", Location(field="status"))
        if month is not None and not re.fullmatch(r"\d{4}-\d{2}", month):
            raise InvalidInput("month must look like 2026-11", Location(field="month"))
        expression = " and ".join(f"{name} eq @{name}" for name in filters) or None
        rows = (self.client.query_entities(expression, parameters=filters, results_per_page=min(limit, 1000))
                if expression else self.client.list_entities(results_per_page=min(limit, 1000)))
        found = []
        for row in rows:
            found.append(self._opportunity(row))
            if len(found) >= limit:
                break
        return found

    def set_status(self, opportunity_id: str, status: str, now: datetime | None = None,
                   amount: float | None = None, *, manual: bool = True) -> Opportunity:
        """Change the status (manual changes follow MANUAL_TRANSITIONS); `amount` records what a won deal earned."""
        if status not in STATUSES:
            raise InvalidInput(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        current = self.get(opportunity_id)
        if manual and status != current.status and status not in MANUAL_TRANSITIONS.get(current.status, ()):
            raise InvalidInput(f"cannot change an opportunity from {current.status} to {status}")
        now = now or datetime.now(UTC)
        entity = {"PartitionKey": current.id.split("~")[0], "RowKey": row_key(current.key), "status": status,
                  "updated_at": now}
        if amount is not None:
            entity["amount"] = float(amount)
        if status == NOTIFIED:
            entity["notified_at"] = now
        self.client.update_entity(entity, mode=UpdateMode.MERGE)
        return self.get(opportunity_id)

    def mark_notified(self, customer_id: str, firing_key: str, now: datetime) -> None:
        """Called after a delivery to the rep succeeded; never moves an opportunity backwards."""
        opportunity_id = f"{self.partition_of(customer_id)}~{row_key(firing_key)}"
        try:
            current = self.get(opportunity_id)
        except NotFound:
            return
        if current.status in (DETECTED, QUEUED, NEEDS_APPROVAL):
            self.set_status(opportunity_id, NOTIFIED, now, manual=False)

    def mark_decided(self, customer_id: str, firing_key: str, status: str, now: datetime) -> None:
        """An approval was decided (queued, rejected or suppressed): moves only an opportunity still waiting for it,
        so a firing whose other actions already went out (queued, notified) keeps its status."""
        opportunity_id = f"{self.partition_of(customer_id)}~{row_key(firing_key)}"
        try:
            current = self.get(opportunity_id)
        except NotFound:
            return
        if current.status == NEEDS_APPROVAL:
            entity = {"PartitionKey": opportunity_id.split("~")[0], "RowKey": row_key(current.key),
                      "status": status, "updated_at": now}
            if status == QUEUED:
                entity["queued_at"] = now
            self.client.update_entity(entity, mode=UpdateMode.MERGE)

    # --- encoding ------------------------------------------------------------------------------------------
    def _claim_entity(self, partition: str, claim: Claim, now: datetime) -> dict:
        entity = {
            "PartitionKey": partition, "RowKey": row_key(claim.key), "key": claim.key, "rule": claim.rule,
            "kind": claim.kind, "customer_id": claim.customer_id,
            "status": DETECTED if claim.messages or claim.held else claim.status, "target_status": claim.status,
            "month": claim.local_date[:7], "local_date": claim.local_date, "detected_at": now, "updated_at": now,
            "published": not (claim.messages or claim.held),
            "actions_json": json.dumps(list(claim.actions), ensure_ascii=False),
        }
        for name in ("owner_name", "owner_email", "recommendation"):
            if getattr(claim, name):
                entity[name] = getattr(claim, name)
        entity.update(_chunks("messages_json", [m.to_dict() for m in claim.messages]))
        entity.update(_chunks("held_json", [m.to_dict() for m in claim.held]))
        if entity_size(entity) > 1024 * 1024:
            raise PayloadTooLarge(f"firing {claim.key} has more than 1 MiB of rendered messages")
        return entity

    def _claim_from_entity(self, row: dict) -> Claim:
        return Claim(
            key=row["key"], rule=row["rule"], kind=row["kind"], customer_id=row["customer_id"],
            owner_name=row.get("owner_name"), owner_email=row.get("owner_email"),
            status=row.get("target_status", row["status"]), recommendation=row.get("recommendation"),
            local_date=row.get("local_date", ""),
            actions=tuple(json.loads(row.get("actions_json") or "[]")),
            messages=tuple(QueuedMessage.from_dict(m) for m in _unchunk(row, "messages_json")),
            held=tuple(QueuedMessage.from_dict(m) for m in _unchunk(row, "held_json")))

    @staticmethod
    def _opportunity(row: dict) -> Opportunity:
        return Opportunity(
            id=f"{row['PartitionKey']}~{row['RowKey']}", key=row["key"], rule=row["rule"], kind=row["kind"],
            customer_id=row["customer_id"], owner_name=row.get("owner_name"), owner_email=row.get("owner_email"),
            status=row["status"], recommendation=row.get("recommendation"), month=row.get("month", ""),
            detected_at=row["detected_at"], updated_at=row["updated_at"], queued_at=row.get("queued_at"),
            notified_at=row.get("notified_at"), amount=row.get("amount"), published=bool(row.get("published")),
            actions=tuple(json.loads(row.get("actions_json") or "[]")))


def _chunks(name: str, value: list) -> dict:
    if not value:
        return {}
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return {(name if i == 0 else f"{name}_{i}"): text[start:start + MAX_STRING_CHARS]
            for i, start in enumerate(range(0, len(text), MAX_STRING_CHARS))}


def _unchunk(row: dict, name: str) -> list:
    parts, index = [], 0
    while (part := row.get(name if index == 0 else f"{name}_{index}")):
        parts.append(part)
        index += 1
    return json.loads("".join(parts)) if parts else []
