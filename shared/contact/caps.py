"""Contact caps that hold across instances: one contact log row per customer (`ContactLog` table), changed only by
ETag compare-and-swap, as the rate limits are (`shared/delivery/ratelimit.py`).

The row lists the customer's contacts as `action key → [customer-local day, channel, category]` for the longest
cap window. Planning a contact *reserves* a day in that row: today when every cap on its channel and category has
room in every rolling window containing today, else (policy `defer`) the first later day with room, else nothing
(`dropped`). Reservations are keyed by the action's dedupe key, so whoever plans the same action again — a
redelivered shard, a change event racing the sweep, a replay from the dead-letter queue — reads back the decision
already made instead of counting a second contact; and two workers planning different contacts for one customer
cannot both take the last slot, because only one of their replace-if-unchanged writes succeeds and the other
recomputes against the winner's row.

Competing firings of one planning batch are reserved highest `priority` first (then rule id), so the loser of a
cap is the lower-priority rule.

Rows live in the customer's shard partition (as in `Customers` and the ledger), so a sweep reserves a whole planning
batch at once: one read of the shard's rows (kept a few minutes, and only ever used as the base of conditional
writes), decisions in memory, then insert-if-absent / replace-if-unchanged writes in transactions of ≤ 100. A
transaction refused because a row changed meanwhile (a change event won a race) is redone customer by customer with
the compare-and-swap above, so the guarantee is the same as one reservation at a time.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from shared.contact.policy import DROP, Cap, ContactPolicy
from shared.domain.errors import TransientError
from shared.domain.names import CONTACT_LOG
from shared.domain.vocabulary import DEFAULT_CATEGORY, ActionStatus, ContactCategory
from shared.rules.model import Firing, PlannedAction, Rule
from shared.storage.backend import BatchFailed, Entity, Op, Operation, Storage, etag_of
from shared.storage.codec import BATCH_LIMIT
from shared.storage.keys import digest, readable_key, shard_of, shard_partition

_CAPPABLE = (ActionStatus.PLANNED, ActionStatus.NEEDS_APPROVAL)  # what a cap can still stop
DROPPED_DAY = "-"  # a contact that found no room: remembered (so a replay decides the same) but never counted
BATCHED_FROM = 8  # customers with contacts in one planning batch from which one shard read beats a read each
SHARD_ROWS_FOR = 300.0  # seconds a shard's rows are reused as the base of conditional writes


@dataclass(frozen=True)
class ContactRequest:
    key: str  # the action's dedupe key
    channel: str
    category: str
    today: date  # the customer's local date


@dataclass(frozen=True)
class Decision:
    """Where a contact went: `day` (today or later), or None when dropped; `cap` names the cap that moved it."""

    key: str
    day: date | None
    cap: Cap | None = None

    @property
    def capped(self) -> bool:
        return self.cap is not None


class ContactLog:
    """Per-customer contact reservations under the policy's caps (one table row per customer)."""

    def __init__(self, storage: Storage, policy: ContactPolicy, max_cas_attempts: int = 30, shards: int = 64):
        self.table = storage.table(CONTACT_LOG)
        self.policy = policy
        self.max_cas_attempts = max_cas_attempts
        self.shards = shards
        self.operations = 0  # table round trips (benchmarks report the bookkeeping cost)
        self._shard_rows: dict[str, tuple[float, dict[str, Entity | None]]] = {}

    def _keys(self, customer_id: str) -> tuple[str, str]:
        return shard_partition(shard_of(customer_id, self.shards)), readable_key(customer_id)

    def _take(self, entity: Entity | None, requests: Sequence[ContactRequest],
              decided: list[Decision]) -> dict[str, Any] | None:
        """Decide `requests` against the row `entity`: fills `decided`, returns the row's new columns (None: no
        change)."""
        entries: dict[str, list[str]] = json.loads(entity.get("entries", "{}")) if entity else {}
        oldest = min(r.today for r in requests) - timedelta(days=self.policy.longest_window)
        entries = {k: v for k, v in entries.items() if v[0] == DROPPED_DAY or date.fromisoformat(v[0]) > oldest}
        decided.clear()
        changed = False
        for request in requests:
            slot = _entry_key(request.key)
            if slot in entries:  # decided before (a replay, a racing worker planning the same action)
                decided.append(_decision_of(request, entries[slot], self.policy))
                continue
            decision = self._decide(request, entries)
            entries[slot] = [decision.day.isoformat() if decision.day else DROPPED_DAY, request.channel,
                             request.category]
            decided.append(decision)
            changed = True
        return {"entries": json.dumps(entries, separators=(",", ":"))} if changed else None

    def reserve(self, customer_id: str, requests: Sequence[ContactRequest]) -> list[Decision]:
        """Reserve a day for each request, in the order given (put the higher priority first)."""
        if not requests:
            return []
        decided: list[Decision] = []

        def take(entity: Entity | None) -> dict[str, Any] | None:
            self.operations += 1
            return self._take(entity, requests, decided)

        partition, row = self._keys(customer_id)
        try:
            self.table.compare_and_swap(partition, row, take, attempts=self.max_cas_attempts)
        except TransientError as exc:
            raise TransientError(f"ContactLog row is contended or unavailable; try again ({exc.message})") from None
        self.operations += 1  # the write
        self._forget(partition, row)
        return list(decided)

    def reserve_many(self, wanted: Mapping[str, Sequence[ContactRequest]]) -> dict[str, list[Decision]]:
        """`reserve` for many customers (customer id → requests, higher priority first), batched per shard."""
        by_partition: dict[str, list[str]] = defaultdict(list)
        for customer_id, requests in wanted.items():
            if requests:
                by_partition[self._keys(customer_id)[0]].append(customer_id)
        decided: dict[str, list[Decision]] = {}
        for partition, customer_ids in by_partition.items():
            if len(customer_ids) < BATCHED_FROM:  # a few point reads cost less than the shard's rows
                for customer_id in customer_ids:
                    decided[customer_id] = self.reserve(customer_id, wanted[customer_id])
                continue
            rows = self._rows_of(partition)
            writes: list[tuple[str, Operation]] = []
            for customer_id in customer_ids:
                row_key_ = readable_key(customer_id)
                if row_key_ in rows and rows[row_key_] is None:  # written since the read: read it afresh
                    decided[customer_id] = self.reserve(customer_id, wanted[customer_id])
                    continue
                current = rows.get(row_key_)
                decisions: list[Decision] = []
                changed = self._take(current, wanted[customer_id], decisions)
                decided[customer_id] = decisions
                if changed is not None:
                    entity = {"PartitionKey": partition, "RowKey": row_key_, **changed}
                    writes.append((customer_id, Operation(Op.INSERT, entity) if current is None
                                   else Operation(Op.REPLACE, entity, etag_of(current))))
            for start in range(0, len(writes), BATCH_LIMIT):
                chunk = writes[start:start + BATCH_LIMIT]
                self.operations += 1
                try:
                    self.table.submit([operation for _, operation in chunk])
                except BatchFailed:  # a row changed since the read: these customers one at a time, read afresh
                    self._shard_rows.pop(partition, None)
                    for customer_id, _ in chunk:
                        decided[customer_id] = self.reserve(customer_id, wanted[customer_id])
                    continue
                for customer_id, _ in chunk:  # written: its ETag is no longer the one read
                    rows[readable_key(customer_id)] = None
        return decided

    def _rows_of(self, partition: str) -> dict[str, Entity | None]:
        """The shard's rows by RowKey (one paged read, reused for SHARD_ROWS_FOR seconds); None for a row this log
        wrote since (its ETag changed: the next reservation for it reads it afresh)."""
        cached = self._shard_rows.get(partition)
        if cached is not None and time.monotonic() - cached[0] < SHARD_ROWS_FOR:
            return cached[1]
        self.operations += 1
        rows: dict[str, Entity | None] = {row["RowKey"]: row for row in self.table.partition(partition)}
        self._shard_rows[partition] = (time.monotonic(), rows)
        return rows

    def _forget(self, partition: str, row: str) -> None:
        cached = self._shard_rows.get(partition)
        if cached is not None:
            cached[1][row] = None

    def _decide(self, request: ContactRequest, entries: Mapping[str, list[str]]) -> Decision:
        caps = self.policy.caps_for(request.channel, request.category)
        if not caps:
            return Decision(request.key, request.today)
        days = [date.fromisoformat(day) for day, channel, category in entries.values()
                if day != DROPPED_DAY and channel == request.channel and category == request.category]
        first_full = _full_cap(caps, days, request.today)
        if first_full is None:
            return Decision(request.key, request.today)
        if self.policy.when_capped != DROP:
            for ahead in range(1, self.policy.defer_within_days + 1):
                day = request.today + timedelta(days=ahead)
                if _full_cap(caps, days, day) is None:
                    return Decision(request.key, day, first_full)
        return Decision(request.key, None, first_full)

    def contacts(self, customer_id: str) -> list[tuple[date, str, str]]:
        """The customer's counted contacts (day, channel, category), oldest first."""
        entity = self.table.get(*self._keys(customer_id))
        entries = json.loads(entity.get("entries", "{}")) if entity else {}
        return sorted((date.fromisoformat(day), channel, category) for day, channel, category in entries.values()
                      if day != DROPPED_DAY)


def _full_cap(caps: Iterable[Cap], days: Sequence[date], day: date) -> Cap | None:
    """The first cap one more contact on `day` would break: some window of `cap.days` days that contains `day`
    already holds `cap.limit` contacts (later reservations count too: a deferred contact is still a contact)."""
    for cap in caps:
        for start_offset in range(cap.days):
            start = day - timedelta(days=start_offset)
            end = start + timedelta(days=cap.days - 1)
            if sum(1 for d in days if start <= d <= end) >= cap.limit:
                return cap
    return None


def _decision_of(request: ContactRequest, entry: list[str], policy: ContactPolicy) -> Decision:
    day_text = entry[0]
    if day_text == DROPPED_DAY:
        caps = policy.caps_for(request.channel, request.category)
        return Decision(request.key, None, caps[0] if caps else None)
    day = date.fromisoformat(day_text)
    if day <= request.today:
        return Decision(request.key, day)
    caps = policy.caps_for(request.channel, request.category)
    return Decision(request.key, day, caps[0] if caps else None)


def _entry_key(action_key: str) -> str:
    return digest(action_key)[:20]


class ContactGuard:
    """Applies the contact policy to a batch of firings before they are claimed: capped contacts are marked
    `capped` (naming the cap) and deferred or dropped. Called from one place, the planner."""

    def __init__(self, policy: ContactPolicy, log: ContactLog, rules: Callable[[str], Rule | None]):
        self.policy = policy
        self.log = log
        self.rules = rules
        self._rules_capped: dict[str, bool] = {}  # rule id → whether any cap applies to one of its channels

    @property
    def active(self) -> bool:
        return bool(self.policy.caps)

    def apply(self, customer_id: str, firings: Sequence[Firing]) -> list[Firing]:
        """The firings (same order) with every capped contact action rewritten."""
        return self.apply_many({customer_id: firings})[customer_id]

    def apply_many(self, firings_of: Mapping[str, Sequence[Firing]]) -> dict[str, list[Firing]]:
        """`apply` for many customers at once (customer id → firings): one batched reservation."""
        if not self.active:
            return {customer_id: list(firings) for customer_id, firings in firings_of.items()}
        wanted = {customer_id: self.requests(firings) for customer_id, firings in firings_of.items()}
        decided = self.log.reserve_many({customer_id: r for customer_id, r in wanted.items() if r})
        result = {}
        for customer_id, firings in firings_of.items():
            decisions = {d.key: d for d in decided.get(customer_id, ())}
            result[customer_id] = [_with_decisions(firing, decisions)
                                   if any(a.dedupe_key in decisions for a in firing.actions) else firing
                                   for firing in firings]
        return result

    def requests(self, firings: Sequence[Firing]) -> list[ContactRequest]:
        """The cappable contacts of one customer's firings, higher priority first (what `apply` reserves)."""
        for firing in firings:  # a loop, not any(...): asked for every customer with firings
            if self._may_be_capped(firing):
                break
        else:
            return []
        ranked = sorted(range(len(firings)), key=lambda i: (-self._priority(firings[i]), firings[i].rule_id))
        requests = []
        for index in ranked:
            firing = firings[index]
            category = self._category(firing)
            for action in firing.actions:
                if action.status in _CAPPABLE and self.policy.caps_for(action.channel, category):
                    requests.append(ContactRequest(action.dedupe_key, action.channel, category, firing.local_date))
        return requests

    def fit_empty_log(self, requests: Sequence[ContactRequest]) -> bool:
        """Whether a customer with no contacts logged has room for all of one evaluation's `requests` (one local
        date, as `requests` orders them) today. Then `apply` would reserve each today and change no action."""
        counts: dict[tuple[str, str], int] = {}
        for request in requests:
            kind = (request.channel, request.category)
            earlier = counts.get(kind, 0)
            # Every earlier contact of the kind is on the same day, inside every window of every cap.
            if request.today != requests[0].today or \
                    any(earlier >= cap.limit for cap in self.policy.caps_for(request.channel, request.category)):
                return False
            counts[kind] = earlier + 1
        return True

    def _may_be_capped(self, firing: Firing) -> bool:
        """False when no cap covers any channel of the firing's rule (known per rule, asked once)."""
        known = self._rules_capped.get(firing.rule_id)
        if known is None:
            rule = self._rule(firing)
            if rule is None:  # a journey transition's entry actions: decided action by action
                return True
            category = self._category(firing)
            known = self._rules_capped[firing.rule_id] = any(
                self.policy.caps_for(spec.channel, category) for spec in rule.actions)
        return known

    def _rule(self, firing: Firing) -> Rule | None:
        return self.rules(firing.rule_id)

    def _priority(self, firing: Firing) -> int:
        rule = self._rule(firing)
        return rule.priority if rule else 0

    def _category(self, firing: Firing) -> str:
        rule = self._rule(firing)
        return rule.category if rule else DEFAULT_CATEGORY.get(firing.kind, ContactCategory.LIFECYCLE)


def _with_decisions(firing: Firing, decisions: Mapping[str, Decision]) -> Firing:
    actions: list[PlannedAction] = []
    for action in firing.actions:
        decision = decisions.get(action.dedupe_key)
        if decision is None or not decision.capped:
            if decision is not None and decision.day and decision.day > firing.local_date:
                action = replace(action, deferred_to=decision.day)
            actions.append(action)
            continue
        outcome = f"deferred to {decision.day.isoformat()}" if decision.day else "dropped"
        note = f"cap {decision.cap.name}: {outcome}"
        # A contact waiting for an approver stays with the approver; the cap only moves the day it may go.
        status = ActionStatus.NEEDS_APPROVAL if action.status == ActionStatus.NEEDS_APPROVAL and decision.day \
            else ActionStatus.CAPPED
        actions.append(replace(action, status=status, deferred_to=decision.day,
                               reason=f"{action.reason}; {note}" if action.reason else note))
    # An action waiting for a dropped one is dropped with it (the FYI of a mail that never goes).
    dropped = {a.dedupe_key for a in actions if a.status == ActionStatus.CAPPED and a.deferred_to is None}
    actions = [replace(a, status=ActionStatus.CAPPED, reason="waits for an action a contact cap dropped")
               if a.after in dropped and a.status != ActionStatus.CAPPED else a for a in actions]
    return replace(firing, actions=tuple(actions))
