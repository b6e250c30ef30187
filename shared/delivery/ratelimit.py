"""Rate limits shared by any number of instances: one row per limited key in the `RateLimits` table, changed only by
ETag compare-and-swap (read, compute, replace-if-unchanged, retry on conflict).

Three kinds of budget:
- `rate`: at most `limit` per `seconds`, paced evenly (GCRA: one "theoretical arrival time" per key, no burst, so any
  window of `seconds` holds at most `limit`). Over budget, a caller *reserves* the next free slot and is told when it
  is; the message is rescheduled for that instant and admitted then without taking a second slot. A 429 pushes the
  key's next slot past Retry-After, so every instance honours it.
- `window`: at most `limit` units (recipients) in any rolling `seconds`, counted in 24 sub-buckets.
- `concurrency`: at most `limit` requests in flight, as leases that expire (a crashed holder frees its lease).

Rates are paced at `HEADROOM` of the documented limit: timing jitter between our clock and the service's could
otherwise put limit+1 requests into one of its windows.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.domain.errors import PayloadTooLarge, TransientError
from shared.domain.names import RATE_LIMITS
from shared.domain.vocabulary import BudgetKind
from shared.storage.backend import Entity, Storage
from shared.storage.keys import digest

HEADROOM = 0.97
WINDOW_BUCKETS = 24
RATE, WINDOW, CONCURRENCY = BudgetKind


@dataclass(frozen=True)
class Budget:
    """One limit a send must fit into. `key` names what is limited (mailbox, conversation, channel, tenant)."""

    kind: str
    key: str
    limit: int
    seconds: float
    cost: int = 1

    @property
    def interval(self) -> float:
        """Seconds between two paced sends of a `rate` budget."""
        return self.seconds / (self.limit * HEADROOM)

    @property
    def row_key(self) -> str:
        # Keys may name a mailbox or a conversation: store a digest, never the name.
        return f"{self.kind}-{digest(self.key)[:40]}"


@dataclass(frozen=True)
class Lease:
    budget: Budget
    lease_id: str


class RateLimiter:
    def __init__(self, storage: Storage, clock: Callable[[], float] = time.time, max_cas_attempts: int = 20):
        self.table = storage.table(RATE_LIMITS)
        self.clock = clock
        self.max_cas_attempts = max_cas_attempts

    # --- rate (GCRA with reservation) ----------------------------------------------------------------------
    def reserve(self, budget: Budget, not_before: float | None = None) -> float:
        """Take the next free slot at or after `not_before` (default now); returns its epoch time.

        A slot ≤ now means "send now"; a later one is the instant to reschedule the message for."""
        slot_box: list[float] = []

        def take(state: dict[str, Any]) -> dict[str, Any]:
            now = self.clock()
            slot = max(state.get("tat", 0.0), now, not_before or 0.0)
            slot_box[:] = [slot]
            return {**state, "tat": slot + budget.interval}

        self._cas(budget, take)
        return slot_box[0]

    def block_until(self, budget: Budget, until: float) -> None:
        """Nobody gets a slot of this budget before `until` (the service said Retry-After)."""
        self._cas(budget, lambda state: {**state, "tat": max(state.get("tat", 0.0), until)})

    # --- rolling window ------------------------------------------------------------------------------------
    def take_window(self, budget: Budget) -> float:
        """Count `budget.cost` units into the rolling window: 0.0 when taken, else seconds until they would fit."""
        if budget.cost > budget.limit:
            raise PayloadTooLarge(f"{budget.cost} recipients exceed the limit of {budget.limit} per window")
        wait_box: list[float] = []
        width = budget.seconds / WINDOW_BUCKETS

        def take(state: dict[str, Any]) -> dict[str, Any] | None:
            now = self.clock()
            current = math.floor(now / width)
            buckets = {int(k): v for k, v in json.loads(state.get("buckets", "{}")).items()
                       if int(k) > current - WINDOW_BUCKETS}
            used = sum(buckets.values())
            if used + budget.cost > budget.limit:
                # Wait until enough of the oldest buckets leave the window.
                freed, wait = 0, width
                for index in sorted(buckets):
                    freed += buckets[index]
                    wait = (index + WINDOW_BUCKETS) * width - now
                    if used - freed + budget.cost <= budget.limit:
                        break
                wait_box[:] = [max(wait, 0.001)]
                return None
            buckets[current] = buckets.get(current, 0) + budget.cost
            wait_box[:] = [0.0]
            return {**state, "buckets": json.dumps(buckets, separators=(",", ":"))}

        self._cas(budget, take)
        return wait_box[0]

    # --- concurrency ---------------------------------------------------------------------------------------
    def acquire(self, budget: Budget, lease_seconds: float = 60.0) -> Lease | float:
        """A lease when fewer than `limit` are held, else the seconds until the first one expires."""
        lease_id = uuid.uuid4().hex
        result: list[Lease | float] = []

        def take(state: dict[str, Any]) -> dict[str, Any] | None:
            now = self.clock()
            leases = {k: v for k, v in json.loads(state.get("leases", "{}")).items() if v > now}
            if len(leases) >= budget.limit:
                result[:] = [max(min(leases.values()) - now, 0.001)]
                return None
            leases[lease_id] = now + lease_seconds
            result[:] = [Lease(budget, lease_id)]
            return {**state, "leases": json.dumps(leases, separators=(",", ":"))}

        self._cas(budget, take)
        return result[0]

    def release(self, lease: Lease) -> None:
        def drop(state: dict[str, Any]) -> dict[str, Any] | None:
            leases = json.loads(state.get("leases", "{}"))
            if lease.lease_id not in leases:
                return None
            leases.pop(lease.lease_id)
            return {**state, "leases": json.dumps(leases, separators=(",", ":"))}

        self._cas(lease.budget, drop)

    # --- compare-and-swap ----------------------------------------------------------------------------------
    def _cas(self, budget: Budget, mutate: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        """Apply `mutate` to the key's row atomically; `mutate` returning None means "no change"."""

        def apply(entity: Entity | None) -> dict[str, Any] | None:
            state = {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")} if entity else {}
            return mutate(state)

        try:
            self.table.compare_and_swap(LIMITS_PARTITION, budget.row_key, apply, attempts=self.max_cas_attempts)
        except TransientError as exc:
            raise TransientError(f"RateLimits row is contended or unavailable; try again ({exc.message})") from None


LIMITS_PARTITION = "limits"
