"""The sender: one rendered ActionMessage in, exactly one delivery out (or a recorded reason why not).

`DeliveryService.deliver(message)` never sleeps. Every path ends in one `Outcome`:
- `sent`: the transport accepted it; the record is completed, follow-ups (`after: email`) are published, an audit
  row is written and `on_delivered` is called.
- `duplicate`: the record was already completed (a redelivery): nothing is sent, follow-ups are published again
  (their own message ids make the broker drop repeats) and `on_delivered` is called again (it must be idempotent).
- `suppressed`: the customer opted out (Suppressions table or the customer's flag), checked now, at send time.
- `rescheduled`: over a rate budget, throttled (429 Retry-After), a transient failure (5xx, timeout: exponential
  backoff with jitter) or another worker holds the record: a copy is published with `scheduled_at` and a new
  message id `<dedupe_key>~r<n>`; the caller completes the original.
- `failed`: permanent (4xx, bad content, a customer mail without an unsubscribe link, too many attempts): recorded
  with the reason in `Deliveries`, acknowledged.
Configuration problems (missing settings, rejected credentials) raise instead: fixing them must let the message
through, so the trigger abandons it and the broker's redelivery/dead-letter queue keeps it.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from shared.broker.outbound import QueuedMessage, publish_by_queue, queued
from shared.broker.port import Broker, OutgoingMessage
from shared.delivery.idempotency import BaseDedupeStore, DedupeRecord
from shared.delivery.ratelimit import HEADROOM, Budget, Lease, RateLimiter
from shared.delivery.suppressions import SuppressionStore, email_digest
from shared.delivery.transports import SendResult, Transport
from shared.domain.errors import (
    ConfigError,
    CrmflowError,
    OutcomeUnknown,
    PermanentError,
    RetryableError,
    Throttled,
    TransientError,
    Unauthorized,
)
from shared.domain.messages import MAX_MESSAGE_ID, ActionMessage
from shared.domain.vocabulary import BudgetKind, Channel, DeliveryRecordStatus, DeliveryStatus
from shared.storage.backend import Table
from shared.storage.keys import digest

log = logging.getLogger(__name__)

SLOT_PROPERTY = "rl_slot"  # epoch seconds of the rate-limit slot reserved for this message
RESCHEDULES_PROPERTY = "reschedules"
EARLY_TOLERANCE = 0.05  # a scheduled message may surface this much before its slot and still use it
BACKOFF_BASE = 2.0
BACKOFF_CAP = 900.0
NO_UNSUBSCRIBE_LINK = ("refused: the mail has no unsubscribe link (UNSUBSCRIBE_SIGNING_KEY was not set when it was "
                       "planned)")


@dataclass(frozen=True)
class Outcome:
    status: DeliveryStatus
    dedupe_key: str
    transport: str | None = None
    reference: str | None = None
    retry_at: datetime | None = None
    reason: str | None = None
    attempts: int = 0


DeliveredHook = Callable[[ActionMessage, Outcome], None]


def _no_hook(message: ActionMessage, outcome: Outcome) -> None:
    """Default `on_delivered`: nothing (the lead wires the opportunity ledger here)."""


def reschedule_id(dedupe_key: str, n: int) -> str:
    """`<dedupe_key>~r<n>`, shortened with a digest when it would pass the 128-character MessageId limit."""
    suffix = f"~r{n}"
    if len(dedupe_key) + len(suffix) <= MAX_MESSAGE_ID:
        return dedupe_key + suffix
    return hashlib.sha256(dedupe_key.encode("utf-8")).hexdigest()[:64] + suffix


class DeliveryService:
    def __init__(self, *, transports: Mapping[str, Transport], dedupe: BaseDedupeStore, limiter: RateLimiter,
                 broker: Broker, suppressions: SuppressionStore | None = None,
                 customer_opted_out: Callable[[str], bool] | None = None, audit: Table | None = None,
                 on_delivered: DeliveredHook = _no_hook, max_attempts: int = 8,
                 clock: Callable[[], float] = time.time,
                 prepare: Callable[[ActionMessage], ActionMessage] | None = None,
                 route_followup: Callable[[ActionMessage, OutgoingMessage], OutgoingMessage] | None = None):
        """`prepare`: completes a message whose content is only known when it is due (a rep's daily digest);
        `route_followup`: how a released follow-up travels (into a rep's digest, or inside working hours)."""
        self.transports = transports
        self.dedupe = dedupe
        self.limiter = limiter
        self.broker = broker
        self.suppressions = suppressions
        self.customer_opted_out = customer_opted_out
        self.audit = audit
        self.on_delivered = on_delivered
        self.max_attempts = max_attempts
        self.clock = clock
        self.prepare = prepare
        self.route_followup = route_followup

    # --- the one entry point -------------------------------------------------------------------------------
    def deliver(self, message: ActionMessage) -> Outcome:
        if self.prepare is not None:
            message = self.prepare(message)
        transport = self.transports.get(message.channel)
        if transport is None:
            raise ConfigError(f"no transport for channel {message.channel!r}")
        budgets = transport.budgets(message)
        # Pacing comes first and costs two table operations: a burst of queued messages is spread over future
        # slots quickly, so the copies due first are not left waiting behind the burst (and losing their slots).
        paced = self._pace(message, budgets)
        if paced is not None:
            return self._reschedule(_with_property(message, SLOT_PROPERTY, repr(paced)), paced, None,
                                    reason="rate limit", release=False)
        claim = self.dedupe.claim(message.dedupe_key)
        record = claim.record
        if claim.outcome == DeliveryRecordStatus.COMPLETED:
            outcome = Outcome(DeliveryStatus.DUPLICATE, message.dedupe_key, record.result.get("transport"),
                              record.result.get("reference"), attempts=record.attempts)
            if record.result.get("status", DeliveryStatus.SENT) == DeliveryStatus.SENT:
                self._publish_followups(message)
            self.on_delivered(message, outcome)
            return outcome
        if claim.outcome == DeliveryRecordStatus.FAILED:
            return Outcome(DeliveryStatus.FAILED, message.dedupe_key, reason=record.reason, attempts=record.attempts)
        if claim.outcome == DeliveryRecordStatus.IN_PROGRESS:
            # Another worker holds it; come back when its lease ends (then this copy is a duplicate or takes over).
            at = (record.lease_until or datetime.now(UTC)).timestamp() + random.uniform(0.1, 1.0)
            return self._reschedule(message, at, record, reason="in progress elsewhere", release=False)

        if message.channel == Channel.EMAIL and self._opted_out(message):
            record = self.dedupe.complete(record, {"status": DeliveryStatus.OPTED_OUT})
            outcome = Outcome(DeliveryStatus.OPTED_OUT, message.dedupe_key, attempts=record.attempts)
            self._audit(message, outcome)
            self.on_delivered(message, outcome)
            return outcome

        if message.channel == "email" and not message.content.get("unsubscribe_url"):
            # Planned while UNSUBSCRIBE_SIGNING_KEY was unset: the rendered mail has no opt-out link, and setting
            # the key now cannot add one to it. Refused for good, with the reason recorded (never sent without).
            return self._fail(message, record, NO_UNSUBSCRIBE_LINK)

        admitted = self._admit(budgets)
        if isinstance(admitted, float):
            return self._reschedule(_without_slot(message), admitted, record, reason="rate limit")
        lease = admitted
        try:
            record = self.dedupe.mark_sending(record)
            result = transport.send(message, uncertain=record.uncertain)
        except Throttled as exc:
            until = self.clock() + exc.retry_after_seconds
            for budget in budgets:
                if budget.kind == BudgetKind.RATE:
                    self.limiter.block_until(budget, until)
            # A throttled request was not carried out, but the Graph draft may exist: look before the next send.
            return self._reschedule(_without_slot(message), until + random.uniform(0, 0.05), record,
                                    reason=exc.message, uncertain=True)
        except (ConfigError, Unauthorized):
            self.dedupe.release(record, uncertain=True)
            raise
        except RetryableError as exc:
            failures = record.failures + 1
            if failures >= self.max_attempts:
                return self._fail(message, record, f"{exc.message} (after {failures} failed attempts)")
            # Exponential backoff with jitter ("equal jitter": half fixed, half random).
            delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
            if isinstance(exc, OutcomeUnknown):  # it may have been carried out: retry once the look-up can see it
                delay = max(delay, transport.settle_seconds)
            return self._reschedule(_without_slot(message), self.clock() + delay, record, reason=exc.message,
                                    uncertain=True, failed=True)
        except PermanentError as exc:
            return self._fail(message, record, exc.message)
        finally:
            if lease is not None:
                self._release(lease)
        return self._succeed(message, record, result)

    # --- steps ---------------------------------------------------------------------------------------------
    def _opted_out(self, message: ActionMessage) -> bool:
        if self.suppressions and self.suppressions.is_suppressed(customer_id=message.customer_id, email=message.to):
            return True
        return bool(self.customer_opted_out and self.customer_opted_out(message.customer_id))

    def _pace(self, message: ActionMessage, budgets: list[Budget]) -> float | None:
        """None when the message may go now on every rate budget; else the slot reserved for it (epoch)."""
        rates = [b for b in budgets if b.kind == BudgetKind.RATE]
        if not rates:
            return None
        now = self.clock()
        reserved = _slot_of(message)
        # A copy that surfaces late may still use its slot while the lateness stays inside the headroom the
        # pacing leaves (HEADROOM of the limit); later than that, its slot is gone and it queues again.
        late_ok = max(max(b.interval for b in rates), min((1 - HEADROOM) * b.seconds for b in rates))
        if reserved is not None and now < reserved - EARLY_TOLERANCE:
            return reserved  # surfaced early: keep the slot, wait for it
        if reserved is not None and now <= reserved + late_ok:
            return None
        slot = 0.0
        for budget in rates:
            slot = self.limiter.reserve(budget, not_before=slot or None)
        # Against the clock after reserving: a free slot is "now" as of the reservation, and slow storage (each
        # reservation is a read and a compare-and-swap) must not turn it into a reschedule of a message that may go.
        return slot if slot > self.clock() + EARLY_TOLERANCE else None

    def _admit(self, budgets: list[Budget]) -> Lease | float | None:
        """Window and concurrency budgets: a lease (or None) when the message may go now, else when to retry."""
        now = self.clock()
        for budget in budgets:
            if budget.kind == BudgetKind.WINDOW:
                wait = self.limiter.take_window(budget)
                if wait > 0:
                    return now + wait
        lease: Lease | None = None
        for budget in budgets:
            if budget.kind == BudgetKind.CONCURRENCY:
                got = self.limiter.acquire(budget)
                if not isinstance(got, Lease):
                    return now + min(got, 1.0) + random.uniform(0, 0.05)
                lease = got
        return lease

    def _release(self, lease: Lease) -> None:
        try:
            self.limiter.release(lease)
        except TransientError:
            log.warning("could not release a concurrency lease; it expires on its own")

    def _succeed(self, message: ActionMessage, record: DedupeRecord, result: SendResult) -> Outcome:
        record = self.dedupe.complete(record, {"status": DeliveryStatus.SENT, "transport": result.transport,
                                               "reference": result.reference,
                                               "found_existing": result.found_existing})
        outcome = Outcome(DeliveryStatus.SENT, message.dedupe_key, result.transport, result.reference,
                          attempts=record.attempts)
        self._publish_followups(message)
        self._audit(message, outcome)
        self.on_delivered(message, outcome)
        log.info("delivered %s via %s (attempt %d%s)", message.dedupe_key, result.transport, record.attempts,
                 ", found already sent" if result.found_existing else "")
        return outcome

    def _fail(self, message: ActionMessage, record: DedupeRecord, reason: str) -> Outcome:
        record = self.dedupe.fail(record, reason)
        outcome = Outcome(DeliveryStatus.FAILED, message.dedupe_key, reason=reason, attempts=record.attempts)
        log.warning("delivery %s failed permanently: %s", message.dedupe_key, reason)
        self._audit(message, outcome)
        self.on_delivered(message, outcome)
        return outcome

    def _reschedule(self, message: ActionMessage, at: float, record: DedupeRecord | None, *, reason: str,
                    uncertain: bool = False, failed: bool = False, release: bool = True) -> Outcome:
        n = int(message.properties.get(RESCHEDULES_PROPERTY, "0")) + 1
        copy = _with_property(message, RESCHEDULES_PROPERTY, str(n))
        when = datetime.fromtimestamp(at, UTC)
        # Publish first: if publishing fails the original is abandoned and redelivered, nothing is lost.
        publish_by_queue(self.broker, [queued(copy, message_id=reschedule_id(message.dedupe_key, n),
                                              scheduled_at=when)])
        if release and record is not None:
            self.dedupe.release(record, uncertain=uncertain, failed=failed)
        log.info("rescheduled %s to %s: %s", message.dedupe_key, when.isoformat(), reason)
        return Outcome(DeliveryStatus.RESCHEDULED, message.dedupe_key, retry_at=when, reason=reason,
                       attempts=record.attempts if record else 0)

    def _publish_followups(self, message: ActionMessage) -> None:
        publish_by_queue(self.broker, (self._followup(body) for body in message.followups))

    def _followup(self, body: str) -> QueuedMessage:
        """A released follow-up on its queue, routed (digest, working hours) when the service was given a route."""
        message = ActionMessage.from_json(body)
        followup = queued(message, body=body)
        if self.route_followup is None:
            return followup
        return replace(followup, message=self.route_followup(message, followup.message))

    def _audit(self, message: ActionMessage, outcome: Outcome) -> None:
        """One row per terminal outcome, without personal data in clear (the recipient as a digest)."""
        if self.audit is None:
            return
        now = datetime.now(UTC)
        row = {
            "PartitionKey": f"audit-{now:%Y%m%d}",
            "RowKey": f"{digest(message.dedupe_key)[:32]}-{outcome.status}",
            "at": now, "dedupe_key": message.dedupe_key, "channel": message.channel, "rule": message.rule,
            "kind": message.kind, "customer_id": message.customer_id,
            "recipient_sha256": email_digest(message.to) if "@" in message.to else message.to,
            "status": outcome.status, "transport": outcome.transport or "", "attempts": outcome.attempts,
            "firing_key": message.properties.get("firing_key", ""), "reason": (outcome.reason or "")[:500],
        }
        try:
            self.audit.upsert(row)
        except CrmflowError:
            # The delivery itself is done and recorded; a missing audit row must not resend it.
            log.warning("audit row for %s not written", message.dedupe_key)


def _slot_of(message: ActionMessage) -> float | None:
    raw = message.properties.get(SLOT_PROPERTY)
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _with_property(message: ActionMessage, name: str, value: str) -> ActionMessage:
    return replace(message, properties={**message.properties, name: value})


def _without_slot(message: ActionMessage) -> ActionMessage:
    if SLOT_PROPERTY not in message.properties:
        return message
    return replace(message, properties={k: v for k, v in message.properties.items() if k != SLOT_PROPERTY})
