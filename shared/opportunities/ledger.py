"""The opportunity ledger (`Opportunities` table): one row per firing, claimed once.

It replaces the "通知済" (notified) flags of the SharePoint-list flows. A firing is *claimed* with an atomic
insert, so a re-run, a second instance or a redelivered shard never plans it twice. Claims are inserted in one
transaction per ≤ 100 rows of a partition, and the same transaction inserts one *outbox* row (RowKey
`~outbox~<id>`) holding the rendered broker messages of all its claims: the claim rows themselves are slim and
final (status `queued`, `needs_approval`, ...) from the start. Once the broker accepted the messages the outbox row
is deleted — one small request per transaction instead of rewriting every claim. A crash in between leaves the
outbox row, which the next evaluation of that shard finds in the same partition read that lists the known firings
(`known_keys`), re-publishes (broker duplicate detection absorbs a double publish) and deletes — whether or not the
rule still fires that day. A claim row names its outbox (`outbox`), so a change event finds a stranded claim with
two point reads.

A transaction refused because one of its firings exists (a second instance got there first) falls back to single
inserts of the claims with their messages inline (`messages_json`, `published=False`, status `detected` until
marked): the older layout, which recovery and marking still handle.

Held messages (actions waiting for a human approval) count as "to publish" too: the planner hands them to the
approval store (`shared/approvals/flow.py`) before marking the claims, so a crash in between is recovered the same
way; deleting the outbox row then leaves the `Approvals` row their only copy. An approval's decision moves the
opportunity out of `needs_approval`: approved → `queued`, rejected → `rejected` (a person said no: kept apart from
rule-based `suppressed`), expired unanswered → `suppressed`.

A rule with a holdout records every firing's arm (`arm`: treatment | control). A control firing is claimed as
`held_out` (nothing was sent) and is still open for an outcome: a won or lost deal, or a rep's answer, is recorded on
it as on a sent one, and the arm stays, so `shared/opportunities/uplift.py` can compare the arms.

PartitionKey = the customer's shard (as in `Customers`), RowKey = the firing's dedupe key (`readable_key`: dedupe
keys are always valid keys, so the RowKey is the key itself).

Every status change after the claim (a delivery's `notified`, an approval's decision, a rep's or the CRM's
outcome) goes through `update_if`, an ETag compare-and-swap retried on a lost race, so a late delivery can never
overwrite the outcome a rep recorded meanwhile. Outcomes (`record_outcome`) keep who decided, when, and where the
outcome came from (`rep` or `crm`, with the CRM deal id and amount). The CRM is the record of truth for closed
deals: its won or lost replaces a rep's click, and a rep cannot change an outcome the CRM closed.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from shared.broker.outbound import QueuedMessage
from shared.domain.errors import Conflict, InvalidInput, Location, NotFound, PayloadTooLarge
from shared.domain.names import OPPORTUNITIES
from shared.domain.vocabulary import MANUAL_TRANSITIONS, OpportunityStatus
from shared.storage.backend import AlreadyExists, BatchFailed, Entity, Op, Operation, Storage, Table, etag_of
from shared.storage.codec import (
    BATCH_LIMIT,
    MAX_ENTITY_BYTES,
    blank_json,
    chunk_text,
    entity_size,
    get_json,
    put_json,
)
from shared.storage.keys import readable_key, shard_of, shard_partition

STATUSES = tuple(OpportunityStatus)
# Module-level names for the statuses this module tests on every row (an enum member read costs ~7× a global).
DETECTED, QUEUED, NOTIFIED, IN_PROGRESS, WON, LOST = (
    OpportunityStatus.DETECTED, OpportunityStatus.QUEUED, OpportunityStatus.NOTIFIED, OpportunityStatus.IN_PROGRESS,
    OpportunityStatus.WON, OpportunityStatus.LOST)
SUPPRESSED, NEEDS_APPROVAL, REJECTED, CAPPED, HELD_OUT = (
    OpportunityStatus.SUPPRESSED, OpportunityStatus.NEEDS_APPROVAL, OpportunityStatus.REJECTED,
    OpportunityStatus.CAPPED, OpportunityStatus.HELD_OUT)
# May still be won or lost; held-out firings too: their outcomes are what a holdout compares against.
OPEN = (DETECTED, QUEUED, NOTIFIED, IN_PROGRESS, HELD_OUT)
CLOSED = (WON, LOST)
REP, CRM = "rep", "crm"  # where an outcome came from
OUTCOME_SOURCES = (REP, CRM)
row_key = readable_key  # the RowKey of a firing's dedupe key


def opportunity_id(customer_id: str, firing_key: str, shards: int) -> str:
    """The id of the opportunity a firing records (`<partition>~<row key>`), known before it is claimed."""
    return f"{shard_partition(shard_of(customer_id, shards))}~{row_key(firing_key)}"


@dataclass(frozen=True)
class FiringClaim:
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
    campaign: str | None = None  # the campaign a campaign rule works for (revenue is attributed to it)
    manager_email: str | None = None  # may decide held messages besides the owner (kept in the outbox only)
    arm: str | None = None  # rules with a holdout: treatment | control, kept whatever the outcome
    outbox: str | None = field(default=None, compare=False)  # RowKey of the outbox row holding the messages

    def to_record(self) -> dict:
        """The claim as an outbox record (JSON-ready)."""
        return {"key": self.key, "rule": self.rule, "kind": self.kind, "customer_id": self.customer_id,
                "owner_name": self.owner_name, "owner_email": self.owner_email, "status": self.status,
                "recommendation": self.recommendation, "local_date": self.local_date, "actions": list(self.actions),
                "messages": [m.to_dict() for m in self.messages], "held": [m.to_dict() for m in self.held],
                "campaign": self.campaign, "manager_email": self.manager_email, "arm": self.arm}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], outbox: str | None = None) -> FiringClaim:
        return cls(key=record["key"], rule=record["rule"], kind=record["kind"], customer_id=record["customer_id"],
                   owner_name=record.get("owner_name"), owner_email=record.get("owner_email"),
                   status=record["status"], recommendation=record.get("recommendation"),
                   local_date=record.get("local_date", ""), actions=tuple(record.get("actions") or ()),
                   messages=tuple(QueuedMessage.from_dict(m) for m in record.get("messages") or ()),
                   held=tuple(QueuedMessage.from_dict(m) for m in record.get("held") or ()),
                   campaign=record.get("campaign"), manager_email=record.get("manager_email"),
                   arm=record.get("arm"), outbox=outbox)


OUTBOX_PREFIX = "~outbox~"  # RowKeys of outbox rows (dedupe keys start with a rule id, never with "~")
_OUTBOX_CHARS = (MAX_ENTITY_BYTES - 64 * 1024) // 2  # JSON characters one outbox row holds (stored as UTF-16)


class KnownKeys(dict):
    """RowKey → published for every firing of one partition, and the partition's outbox rows (`outboxes`: messages
    a crash may have left unpublished)."""

    def __init__(self, published: Mapping[str, bool], outboxes: Sequence[str] = ()):
        super().__init__(published)
        self.outboxes = list(outboxes)

    @property
    def unpublished(self) -> int:
        """Rows of the inline layout not marked published yet."""
        return sum(1 for published in self.values() if not published)


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
    campaign: str | None = None
    # The last outcome: where it came from (rep | crm), the CRM deal that answered it, who decided and when.
    outcome_source: str | None = None
    deal_id: str | None = None
    decision: str | None = None  # what the rep chose (in_progress | won | not_now) or the CRM deal stage
    decided_by: str | None = None
    decided_at: datetime | None = None
    etag: str | None = field(default=None, compare=False)  # for compare-and-swap (`OpportunityLedger.update_if`)
    arm: str | None = None  # treatment | control for rules with a holdout (the status moves on, the arm stays)

    @property
    def is_open(self) -> bool:
        """Still waiting for an outcome: the rep was (or is about to be) told, nobody closed it."""
        return self.status in OPEN

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k not in ("published", "etag")}
        for name in ("detected_at", "updated_at", "queued_at", "notified_at", "decided_at"):
            data[name] = data[name].isoformat() if data[name] else None
        data["actions"] = list(self.actions)
        return data


@dataclass
class ClaimResult:
    """Claims that must be published now: newly inserted ones and ones a crash left unpublished."""

    to_publish: list[FiringClaim] = field(default_factory=list)
    already_planned: int = 0
    rejected: list[tuple[FiringClaim, str]] = field(default_factory=list)  # claims that can never be stored, and why


class OpportunityLedger:
    def __init__(self, storage: Storage, shards: int):
        self.storage = storage
        self.shards = shards

    @property
    def table(self) -> Table:
        return self.storage.table(OPPORTUNITIES)

    def partition_of(self, customer_id: str) -> str:
        return shard_partition(shard_of(customer_id, self.shards))

    # --- claims --------------------------------------------------------------------------------------------
    def known_keys(self, partition: str) -> KnownKeys:
        """RowKey → published for every firing of one partition, and its outbox rows (one paged read, two
        columns)."""
        published, outboxes = {}, []
        for row in self.table.partition(partition, select=["RowKey", "published"]):
            key = row["RowKey"]
            if key.startswith(OUTBOX_PREFIX):
                outboxes.append(key)
            else:
                published[key] = row.get("published") is not False
        return KnownKeys(published, outboxes)

    def claim(self, claims: Sequence[FiringClaim], now: datetime) -> ClaimResult:
        """Insert claims atomically, with their messages in an outbox row of the same transaction; those that exist
        already are counted, not returned.

        Returns the claims whose messages must now be published.
        """
        result = ClaimResult()
        by_partition: dict[str, list[FiringClaim]] = defaultdict(list)
        for claim in claims:
            by_partition[self.partition_of(claim.customer_id)].append(claim)
        transactions = [self._transaction(partition, packed, now) for partition, group in by_partition.items()
                        for packed in _pack(group, result)]
        for members, operations in transactions:
            try:
                self.table.submit(operations)
            except BatchFailed:  # some firing exists (another instance was first), or the service refused
                self._claim_singly(members, now, result)
                continue
            result.to_publish.extend(members)
        return result

    @staticmethod
    def _transaction(partition: str, packed: Sequence[tuple[FiringClaim, str]], now: datetime,
                     ) -> tuple[list[FiringClaim], list[Operation]]:
        """The claims (as they must be published) and the operations inserting their rows and outbox row."""
        records = [record for _, record in packed if record]
        outbox = f"{OUTBOX_PREFIX}{uuid.uuid4().hex}" if records else None
        claims, operations = [], []
        for claim, record in packed:
            row = OpportunityLedger._claim_row(partition, claim, now)
            if record:
                row["outbox"] = outbox
                claim = replace(claim, outbox=outbox)
            claims.append(claim)
            operations.append(Operation(Op.INSERT, row))
        if outbox:
            operations.append(Operation(Op.INSERT, {"PartitionKey": partition, "RowKey": outbox,
                                                    **chunk_text("claims_json", f"[{','.join(records)}]")}))
        return claims, operations

    def _claim_singly(self, claims: Sequence[FiringClaim], now: datetime, result: ClaimResult) -> None:
        """One insert per claim, messages inline (the layout recovery reads from `published eq false`)."""
        for claim in claims:
            claim = replace(claim, outbox=None)
            try:
                self.table.insert(self._claim_entity(self.partition_of(claim.customer_id), claim, now))
            except AlreadyExists:
                result.already_planned += 1
                continue
            except PayloadTooLarge as exc:
                result.rejected.append((claim, exc.message))
                continue
            result.to_publish.append(claim)

    def mark_published(self, claims: Iterable[FiringClaim], now: datetime) -> None:
        """Record that the broker accepted the claims' messages: their outbox rows deleted, claims of the inline
        layout merged (batched, one partition per transaction)."""
        operations, outboxes = [], set()
        for claim in claims:
            partition = self.partition_of(claim.customer_id)
            if claim.outbox:
                outboxes.add((partition, claim.outbox))
                continue
            entity = {"PartitionKey": partition, "RowKey": row_key(claim.key),
                      "published": True, "status": claim.status, "updated_at": now}
            if claim.status == OpportunityStatus.QUEUED:
                entity["queued_at"] = now
            # The stored messages are no longer needed: blank them (a merge cannot remove columns). Held ones
            # now live in the approval store.
            entity.update(blank_json("messages_json", [m.to_dict() for m in claim.messages]))
            entity.update(blank_json("held_json", [m.to_dict() for m in claim.held]))
            operations.append(Operation(Op.MERGE, entity))
        operations += [Operation(Op.DELETE, {"PartitionKey": pk, "RowKey": rk}) for pk, rk in sorted(outboxes)]
        for batch, error in self.table.write_batches(operations).failed:
            if not isinstance(error.cause, NotFound):
                raise error.cause from error
            for operation in batch:  # another instance recovered an outbox first: what is left, one by one
                if operation.op is Op.DELETE:
                    self.table.delete(operation.entity["PartitionKey"], operation.entity["RowKey"])
                else:
                    self.table.write_batches([operation]).raise_first()

    def unpublished(self, partition: str, known: KnownKeys | None = None) -> list[FiringClaim]:
        """Claims of a partition whose messages may not have reached the broker (a crash between the steps).

        `known`: the partition's `known_keys`, when read already (then only outbox rows, and inline-layout rows
        not marked, cost a read)."""
        known = self.known_keys(partition) if known is None else known
        found: list[FiringClaim] = []
        for outbox in known.outboxes:
            found += self._outbox_claims(partition, outbox)
        if known.unpublished:
            rows = self.table.query("PartitionKey eq @pk and published eq false", {"pk": partition})
            found += [self._claim_from_entity(row) for row in rows]
        return found

    def unpublished_of(self, claims: Iterable[FiringClaim]) -> list[FiringClaim]:
        """Of these claims, the stored ones a crash left unpublished, with any others sharing their outbox row
        (point reads: for the few firings of one change event, where scanning the partition would cost far
        more)."""
        found, outboxes = [], set()
        for claim in claims:
            partition = self.partition_of(claim.customer_id)
            row = self.table.get(partition, row_key(claim.key))
            if row is None:
                continue
            if row.get("published") is False:
                found.append(self._claim_from_entity(row))
            elif row.get("outbox") and (partition, row["outbox"]) not in outboxes:
                outboxes.add((partition, row["outbox"]))
                found += self._outbox_claims(partition, row["outbox"])
        return found

    def _outbox_claims(self, partition: str, outbox: str) -> list[FiringClaim]:
        row = self.table.get(partition, outbox)
        records = get_json(row, "claims_json", []) if row is not None else []
        return [FiringClaim.from_record(record, outbox) for record in records]

    # --- reads and manual updates --------------------------------------------------------------------------
    def get(self, opportunity_id: str) -> Opportunity:
        partition, _, key = opportunity_id.partition("~")
        try:
            row = self.table.get(partition, key) if partition and key else None
        except InvalidInput:  # not a key the table can hold: no such opportunity
            row = None
        if row is None:
            raise NotFound(f"no opportunity {opportunity_id!r}")
        return self._opportunity(row)

    def iter_all(self) -> Iterator[Opportunity]:
        for row in self.table.query():
            if not row["RowKey"].startswith(OUTBOX_PREFIX):
                yield self._opportunity(row)

    def scan(self, columns: Sequence[str]) -> Iterator[Entity]:
        """Every opportunity row, only `columns` of it (and RowKey) (the dashboard's aggregation)."""
        return _opportunity_rows(self.table.query(select=list(dict.fromkeys([*columns, "RowKey"]))))

    def rows_of(self, partition: str, columns: Sequence[str]) -> Iterator[Entity]:
        """The opportunity rows of one partition, only `columns` of them (and RowKey)."""
        return _opportunity_rows(self.table.partition(partition, select=list(dict.fromkeys([*columns, "RowKey"]))))

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
        rows = _opportunity_rows(self.table.query(expression, filters, page_size=min(limit, 1000)))
        found = []
        for row in rows:
            found.append(self._opportunity(row))
            if len(found) >= limit:
                break
        return found

    def set_status(self, opportunity_id: str, status: str, now: datetime | None = None,
                   amount: float | None = None, *, manual: bool = True, by: str | None = None) -> Opportunity:
        """Change the status (manual changes follow MANUAL_TRANSITIONS and count as the rep's outcome);
        `amount` records what a won deal earned."""
        if status not in STATUSES:
            raise InvalidInput(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        check_amount(amount)
        now = now or datetime.now(UTC)

        def decide(current: Opportunity) -> dict | None:
            if manual and status != current.status and status not in MANUAL_TRANSITIONS.get(current.status, ()):
                raise InvalidInput(f"cannot change an opportunity from {current.status} to {status}")
            changes = _status_change(status, now, amount)
            if manual:
                _refuse_rep_change_of_crm_outcome(current)
                if status in (IN_PROGRESS, WON, LOST):
                    changes.update(outcome_source=REP, decision=status, decided_at=now, decided_by=by or "")
            return changes

        return self._change(opportunity_id, decide)

    def record_outcome(self, opportunity_id: str, status: str, *, source: str, now: datetime,
                       amount: float | None = None, deal_id: str | None = None, by: str | None = None,
                       decision: str | None = None) -> Opportunity:
        """Record what became of an opportunity: `in_progress`, `won` (with the amount) or `lost`.

        Idempotent: the same outcome again changes nothing. `source` is `rep` (a card action) or `crm` (a deal
        attributed to it). The CRM is the record of truth for closed deals: its outcome replaces a rep's, and a
        rep's click on an opportunity the CRM closed is a Conflict. One opportunity counts one deal: a second deal
        for it is a Conflict. Unknown → NotFound; never offered or withdrawn (suppressed, rejected, waiting for
        approval) → Conflict.
        """
        if status not in (IN_PROGRESS, WON, LOST):
            raise InvalidInput("outcome must be in_progress, won or lost", Location(field="status"))
        if source not in OUTCOME_SOURCES:
            raise InvalidInput(f"outcome source must be one of {', '.join(OUTCOME_SOURCES)}")
        check_amount(amount)
        decision = decision or status

        def decide(current: Opportunity) -> dict | None:
            if current.status in (SUPPRESSED, REJECTED, NEEDS_APPROVAL):
                raise Conflict(f"opportunity is {current.status}: it was never offered, so it has no outcome")
            if source == REP:
                _refuse_rep_change_of_crm_outcome(current)
            elif current.deal_id and deal_id and current.deal_id != deal_id:
                raise Conflict("opportunity already answered by another deal")
            same = (current.status == status and current.outcome_source == source
                    and current.decision == decision and (amount is None or current.amount == float(amount))
                    and (deal_id is None or current.deal_id == deal_id))
            if same:
                return None  # a double click, a redelivered deal event: nothing new
            changes = {**_status_change(status, now, amount), "outcome_source": source, "decision": decision,
                       "decided_at": now, "decided_by": by or ""}
            if deal_id is not None:
                changes["deal_id"] = deal_id
            return changes

        return self._change(opportunity_id, decide)

    def update_if(self, opportunity_id: str, change: Callable[[Opportunity], Mapping[str, Any] | None],
                  attempts: int = 10) -> Opportunity | None:
        """Compare-and-swap: `change(current)` returns the columns to set (e.g. `status_change(...)`) or None to
        leave the row as it is; the write happens only if the row is unchanged since it was read, else it is read
        and decided again (`change` may raise to refuse). Returns the opportunity as written (or as found when
        nothing changed); None when the opportunity does not exist."""
        partition, _, key = opportunity_id.partition("~")
        if not (partition and key):
            return None
        outcome: list[Opportunity | None] = [None]

        def mutate(row: Entity | None) -> dict | None:
            if row is None:
                outcome[0] = None
                return None
            current = self._opportunity(row)
            changes = change(current)
            outcome[0] = current
            if changes is None:
                return None
            merged = {**row, **changes}
            outcome[0] = self._opportunity(merged)
            return merged

        try:
            self.table.compare_and_swap(partition, key, mutate, attempts=attempts)
        except InvalidInput as exc:
            if exc.location.field in ("PartitionKey", "RowKey"):  # not a key the table can hold: no such row
                return None
            raise
        return outcome[0]

    def _change(self, opportunity_id: str, decide: Callable[[Opportunity], Mapping[str, Any] | None]) -> Opportunity:
        changed = self.update_if(opportunity_id, decide)
        if changed is None:
            raise NotFound(f"no opportunity {opportunity_id!r}")
        return changed

    def mark_notified(self, customer_id: str, firing_key: str, now: datetime) -> None:
        """Called after a delivery to the rep succeeded; never moves an opportunity backwards."""
        opportunity_id = f"{self.partition_of(customer_id)}~{row_key(firing_key)}"
        self.update_if(opportunity_id, lambda current: _status_change(NOTIFIED, now)
                       if current.status in (DETECTED, QUEUED, NEEDS_APPROVAL) else None)

    def mark_decided(self, customer_id: str, firing_key: str, status: str, now: datetime) -> None:
        """An approval was decided (queued, rejected or suppressed): moves only an opportunity still waiting for it,
        so a firing whose other actions already went out (queued, notified) keeps its status."""
        opportunity_id = f"{self.partition_of(customer_id)}~{row_key(firing_key)}"
        self.update_if(opportunity_id, lambda current: _status_change(status, now)
                       if current.status == NEEDS_APPROVAL else None)

    # --- encoding ------------------------------------------------------------------------------------------
    @staticmethod
    def _claim_row(partition: str, claim: FiringClaim, now: datetime) -> dict:
        """The claim's row as it stays (its messages travel in the outbox row)."""
        entity = {
            "PartitionKey": partition, "RowKey": row_key(claim.key), "key": claim.key, "rule": claim.rule,
            "kind": claim.kind, "customer_id": claim.customer_id, "status": claim.status,
            "month": claim.local_date[:7], "local_date": claim.local_date, "detected_at": now, "updated_at": now,
            "actions_json": json.dumps(list(claim.actions), ensure_ascii=False, separators=(",", ":")),
        }
        if claim.status == QUEUED:
            entity["queued_at"] = now
        for name in ("owner_name", "owner_email", "recommendation", "campaign", "arm"):
            value = getattr(claim, name)
            if value:
                entity[name] = value
        return entity

    def _claim_entity(self, partition: str, claim: FiringClaim, now: datetime) -> dict:
        """The inline layout: the claim's row carrying its own messages until marked."""
        entity = {
            "PartitionKey": partition, "RowKey": row_key(claim.key), "key": claim.key, "rule": claim.rule,
            "kind": claim.kind, "customer_id": claim.customer_id,
            "status": OpportunityStatus.DETECTED if claim.messages or claim.held else claim.status,
            "target_status": claim.status,
            "month": claim.local_date[:7], "local_date": claim.local_date, "detected_at": now, "updated_at": now,
            "published": not (claim.messages or claim.held),
            "actions_json": json.dumps(list(claim.actions), ensure_ascii=False),
        }
        for name in ("owner_name", "owner_email", "recommendation", "campaign", "arm"):
            if getattr(claim, name):
                entity[name] = getattr(claim, name)
        entity.update(put_json("messages_json", [m.to_dict() for m in claim.messages]))
        entity.update(put_json("held_json", [m.to_dict() for m in claim.held]))
        if entity_size(entity) > MAX_ENTITY_BYTES:
            raise PayloadTooLarge(f"firing {claim.key} has more than 1 MiB of rendered messages")
        return entity

    def _claim_from_entity(self, row: Entity) -> FiringClaim:
        return FiringClaim(
            key=row["key"], rule=row["rule"], kind=row["kind"], customer_id=row["customer_id"],
            owner_name=row.get("owner_name"), owner_email=row.get("owner_email"),
            status=row.get("target_status", row["status"]), recommendation=row.get("recommendation"),
            local_date=row.get("local_date", ""),
            actions=tuple(json.loads(row.get("actions_json") or "[]")),
            messages=tuple(QueuedMessage.from_dict(m) for m in get_json(row, "messages_json", [])),
            held=tuple(QueuedMessage.from_dict(m) for m in get_json(row, "held_json", [])),
            campaign=row.get("campaign"), arm=row.get("arm"))

    @staticmethod
    def _opportunity(row: Entity) -> Opportunity:
        return Opportunity(
            id=f"{row['PartitionKey']}~{row['RowKey']}", key=row["key"], rule=row["rule"], kind=row["kind"],
            customer_id=row["customer_id"], owner_name=row.get("owner_name"), owner_email=row.get("owner_email"),
            status=row["status"], recommendation=row.get("recommendation"), month=row.get("month", ""),
            detected_at=row["detected_at"], updated_at=row["updated_at"], queued_at=row.get("queued_at"),
            notified_at=row.get("notified_at"), amount=_stored_amount(row.get("amount")),
            published=row.get("published") is not False, actions=tuple(json.loads(row.get("actions_json") or "[]")),
            campaign=row.get("campaign"), outcome_source=row.get("outcome_source"), deal_id=row.get("deal_id"),
            decision=row.get("decision"), decided_by=row.get("decided_by") or None,
            decided_at=row.get("decided_at"), etag=etag_of(row), arm=row.get("arm"))


def _opportunity_rows(rows: Iterable[Entity]) -> Iterator[Entity]:
    """The rows that are opportunities (outbox rows are not)."""
    return (row for row in rows if not row["RowKey"].startswith(OUTBOX_PREFIX))


def _pack(claims: Iterable[FiringClaim], result: ClaimResult) -> Iterator[list[tuple[FiringClaim, str]]]:
    """Claims of one partition in groups that fit one transaction with their outbox row: (claim, its outbox
    record as JSON, "" when it has no messages). A claim too large for any outbox row is rejected."""
    packed: list[tuple[FiringClaim, str]] = []
    chars = 0
    for claim in claims:
        record = json.dumps(claim.to_record(), ensure_ascii=False, separators=(",", ":")) \
            if claim.messages or claim.held else ""
        if len(record) > _OUTBOX_CHARS:  # one oversized firing must not stop the others
            result.rejected.append((claim, f"firing {claim.key} has more than 1 MiB of rendered messages"))
            continue
        if packed and (len(packed) >= BATCH_LIMIT - 1 or chars + len(record) + 1 > _OUTBOX_CHARS):
            yield packed
            packed, chars = [], 0
        packed.append((claim, record))
        chars += len(record) + 1 if record else 0
    if packed:
        yield packed


def _stored_amount(value: object) -> float | None:
    """Rows written before amounts were checked may hold Infinity: never hand it on (JSON cannot carry it)."""
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def check_amount(amount: object) -> None:
    """An amount is a finite number ≥ 0 (JSON has no Infinity; the dashboard must stay valid JSON)."""
    if amount is None:
        return
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount) or amount < 0:
        raise InvalidInput("must be a finite number ≥ 0", Location(field="amount"))


def _refuse_rep_change_of_crm_outcome(current: Opportunity) -> None:
    if current.outcome_source == CRM and current.status in CLOSED:
        raise Conflict(f"the CRM closed this opportunity as {current.status} (deal {current.deal_id}); "
                       "change the deal in the CRM")


def status_change(status: str, now: datetime, amount: float | None = None) -> dict[str, Any]:
    """The columns a status change writes (for `update_if` callbacks)."""
    if status not in STATUSES:
        raise InvalidInput(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    return _status_change(status, now, amount)


def _status_change(status: str, now: datetime, amount: float | None = None) -> dict[str, Any]:
    changes: dict[str, Any] = {"status": status, "updated_at": now}
    if amount is not None:
        changes["amount"] = float(amount)
    if status == OpportunityStatus.NOTIFIED:
        changes["notified_at"] = now
    if status == OpportunityStatus.QUEUED:
        changes["queued_at"] = now
    return changes


def stored_amount(value: Any) -> float:
    """A ledger row's amount as a number JSON can carry: 0 for anything else (rows written before amounts were
    checked may hold NaN, Infinity, negatives or text)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)
