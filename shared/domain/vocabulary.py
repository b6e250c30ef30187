"""The words crmflow stores and prints: statuses, channels and kinds, each defined once.

Every value is a `StrEnum`, so a member *is* its string: it compares equal to what Table Storage rows, queue
messages and JSON outputs hold (`OpportunityStatus.QUEUED == "queued"`), serialises as that string, and the stored
values never change when code is renamed. Three different things are called "suppressed", each in its own type:
an opportunity with nothing to send (`OpportunityStatus.SUPPRESSED`), an action the rules decided not to send
(`ActionStatus.SUPPRESSED`) and a delivery stopped at send time because the customer opted out
(`DeliveryStatus.OPTED_OUT`, stored as "suppressed").
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """Where an action goes (a rule's action key, a message's channel; `CHANNEL_QUEUES` maps each to its queue)."""

    TEAMS = "teams"
    EMAIL = "email"
    CRM_TASK = "crm_task"


class RuleKind(StrEnum):
    """What a rule is about (the `kind:` of a rule file; the ledger and dashboard group by it)."""

    CROSS_SELL = "cross_sell"
    UPSELL = "upsell"
    LIFECYCLE = "lifecycle"
    JOURNEY = "journey"
    CAMPAIGN = "campaign"
    ALERT = "alert"


class Trigger(StrEnum):
    """When a rule is evaluated (`on:`): the daily sweep or a CRM change event."""

    SWEEP = "sweep"
    CHANGE = "change"


class Importance(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


class ContactCategory(StrEnum):
    """What a contact is for: the contact policy caps promotional and lifecycle contacts; transactional ones are
    exempt. A rule's `category:` defaults by its kind (`DEFAULT_CATEGORY`)."""

    PROMOTIONAL = "promotional"
    LIFECYCLE = "lifecycle"
    TRANSACTIONAL = "transactional"


DEFAULT_CATEGORY: dict[RuleKind, ContactCategory] = {
    RuleKind.CROSS_SELL: ContactCategory.PROMOTIONAL, RuleKind.UPSELL: ContactCategory.PROMOTIONAL,
    RuleKind.CAMPAIGN: ContactCategory.PROMOTIONAL, RuleKind.LIFECYCLE: ContactCategory.LIFECYCLE,
    RuleKind.JOURNEY: ContactCategory.LIFECYCLE, RuleKind.ALERT: ContactCategory.TRANSACTIONAL,
}


class ActionStatus(StrEnum):
    """What evaluation decided for one action of a firing (the dry-run's `status`)."""

    PLANNED = "planned"
    SUPPRESSED = "suppressed"  # not sent: opted out, no or invalid recipient, or waits for a suppressed action
    NEEDS_APPROVAL = "needs_approval"  # rendered, held until a person approves it
    CAPPED = "capped"  # over a contact cap: dropped, or deferred to the next free day (`deferred_to`)
    HELD_OUT = "held_out"  # the control group of a rule's holdout: recorded, never rendered or sent


class OpportunityStatus(StrEnum):
    """The ledger row of a firing: detected → queued → notified → in_progress → won | lost, or one of the others."""

    DETECTED = "detected"
    QUEUED = "queued"
    NOTIFIED = "notified"
    IN_PROGRESS = "in_progress"
    WON = "won"
    LOST = "lost"
    SUPPRESSED = "suppressed"  # nothing to send, or its approval expired unanswered
    NEEDS_APPROVAL = "needs_approval"
    REJECTED = "rejected"  # a person said no (kept apart from rule-based suppression)
    CAPPED = "capped"  # a contact cap dropped every message of the firing
    HELD_OUT = "held_out"  # the control group of a rule's holdout: nothing sent, outcomes still count


_O = OpportunityStatus
# The status changes people may make (PATCH /api/opportunities/{id}); the pipeline's own moves are not limited.
MANUAL_TRANSITIONS: dict[OpportunityStatus, frozenset[OpportunityStatus]] = {
    _O.QUEUED: frozenset({_O.IN_PROGRESS, _O.WON, _O.LOST}),
    _O.NOTIFIED: frozenset({_O.IN_PROGRESS, _O.WON, _O.LOST}),
    _O.IN_PROGRESS: frozenset({_O.WON, _O.LOST, _O.NOTIFIED}),
    _O.DETECTED: frozenset({_O.IN_PROGRESS, _O.WON, _O.LOST}),
    _O.NEEDS_APPROVAL: frozenset({_O.LOST}),
    _O.WON: frozenset({_O.IN_PROGRESS}),
    _O.LOST: frozenset({_O.IN_PROGRESS}),
    _O.REJECTED: frozenset({_O.IN_PROGRESS, _O.LOST}),
    _O.CAPPED: frozenset({_O.IN_PROGRESS, _O.LOST}),
    _O.HELD_OUT: frozenset({_O.IN_PROGRESS, _O.WON, _O.LOST}),
}


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class Decision(StrEnum):
    """What an approver answers."""

    APPROVE = "approve"
    REJECT = "reject"


class DeliveryStatus(StrEnum):
    """How one delivery attempt of a queued message ended (`DeliveryService.deliver`, the audit rows)."""

    SENT = "sent"
    DUPLICATE = "duplicate"  # already delivered: a redelivery
    OPTED_OUT = "suppressed"  # the customer opted out, checked at send time
    RESCHEDULED = "rescheduled"
    FAILED = "failed"


class DeliveryRecordStatus(StrEnum):
    """The idempotency record of a delivery (`Deliveries` table)."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class DeliveryStage(StrEnum):
    """How far the worker holding a delivery record got."""

    CLAIMED = "claimed"  # held, nothing sent yet
    SENDING = "sending"  # the external send was started; its outcome is unknown until completed


class BudgetKind(StrEnum):
    """The three shapes of a shared rate limit (`RateLimits` table)."""

    RATE = "rate"  # n per interval, paced into slots
    WINDOW = "window"  # n per fixed window (a day's recipients)
    CONCURRENCY = "concurrency"  # n at once, as leases


class TemplateKind(StrEnum):
    CARD = "card"
    EMAIL = "email"


class RecordKind(StrEnum):
    """What a CRM mapping maps: a customer record or a deal."""

    CUSTOMER = "customer"
    DEAL = "deal"
