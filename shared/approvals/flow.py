"""Approvals: a held action message waits for a person (the customer's owner) to approve or reject it.

Life of an approval (one per held message; `Approvals` table, PartitionKey = approval id):
  1. The planner renders the firing as usual; an action whose `approval:` expression is true is *held* in the ledger
     claim, and a Teams card asking the owner to review it (`approval_request` template, link signed with purpose
     `approval`) is added to the claim's ordinary messages.
  2. `Planner.publish` calls `ApprovalFlow.open` *before* publishing: one atomic insert per held message, id derived
     from the action's dedupe key, so a re-run or crash recovery never makes a second one and the card's link
     resolves as soon as the card can arrive.
  3. The owner opens the link (GET shows exactly what will be sent) and decides (POST):
     approve → compare-and-swap pending → approved, publish the held message (message id = its dedupe key; an
     email is scheduled into the customer's next business-hours slot from *now*), mark it published and the
     opportunity `queued`; reject → rejected, opportunity `rejected`. A second decision (double click, a second
     approver) loses the ETag race and gets `AlreadyDecided` (HTTP 409). Unanswered past `APPROVAL_TTL_DAYS` it
     expires (409 on the link; the daily housekeeping marks it and the opportunity `suppressed`).
A crash between "approved" and "published" leaves `published=False`: approving again, or housekeeping, after
`STUCK_AFTER` finishes the publish (the broker drops a repeat by message id; the sender's idempotency record is the
last guard).

A record holds no more personal data than the held message itself, plus the approver's work address (already in the
ledger as the opportunity's owner).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.broker import Broker
from shared.broker.outbound import QueuedMessage, publish_by_queue, queued
from shared.customers.store import CustomerStore
from shared.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from shared.domain.messages import MAX_MESSAGE_ID, ActionMessage
from shared.domain.model import Customer
from shared.domain.names import APPROVALS
from shared.domain.schedule import next_business_slot
from shared.domain.signing import APPROVAL, sign, verify
from shared.domain.vocabulary import ApprovalStatus, Channel, Decision, OpportunityStatus
from shared.opportunities.ledger import FiringClaim, OpportunityLedger
from shared.rendering.engine import one_line, template_context
from shared.settings import Settings
from shared.storage.backend import AlreadyExists, Entity, Storage, Table, etag_of
from shared.storage.codec import get_json, put_json
from shared.storage.keys import digest, normalise_address

if TYPE_CHECKING:
    from shared.rendering.engine import Renderer
    from shared.rules.model import Firing

log = logging.getLogger(__name__)

REQUEST_TEMPLATE = "approval_request"
ROW = "approval"  # one row per partition: the partition key is the approval id
PREVIEW_CHARS = 280
# A link stays verifiable a while after its approval expired, so a late click reads "expired" (409), not "invalid".
TOKEN_GRACE = timedelta(days=30)
# Approved but not published for this long: the approving request died; housekeeping or a new click finishes it.
# (Sooner, the first request may still be publishing: a concurrent click gets 409 rather than a second publish.)
STUCK_AFTER = timedelta(minutes=5)


def approval_id(action_key: str) -> str:
    """Deterministic, URL- and key-safe id of the approval of one held action."""
    return "ap" + digest(action_key)[:32]


def request_key(action_key: str) -> str:
    """Message id / dedupe key of the Teams card asking for the approval (≤ 128 characters)."""
    key = f"{action_key}~ap"
    if len(key) <= MAX_MESSAGE_ID:
        return key
    hashed = digest(action_key)[:24]
    return f"{action_key[:MAX_MESSAGE_ID - len(hashed) - 4]}~{hashed}~ap"


def mask_address(address: str | None) -> str:
    """`taro@example.co.jp` → `t***@example.co.jp`; not an address (a channel) → unchanged."""
    if not address or "@" not in address:
        return address or ""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def preview_text(message: ActionMessage, limit: int = PREVIEW_CHARS) -> str:
    """One line of what the held message says (the card shows it; the page shows everything)."""
    content = message.content
    text = content.get("text") or content.get("summary") or content.get("description") or message.subject or ""
    line = one_line(text)
    return line if len(line) <= limit else line[:limit - 1] + "…"


class AlreadyDecided(Conflict):
    """The approval is no longer pending (decided, or expired): nothing was changed."""

    def __init__(self, status: str):
        super().__init__(f"this approval is already {status}")
        self.status = status

    def to_dict(self) -> dict:
        return {**super().to_dict(), "status": self.status}


@dataclass(frozen=True)
class Approval:
    """One held message and the decision about it."""

    id: str
    status: str
    action_key: str
    firing_key: str
    rule: str
    kind: str
    customer_id: str
    held: QueuedMessage
    approver: str | None  # who is asked: the customer's owner
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None  # the signed-in principal when App Service authentication names one
    published: bool = False
    etag: str | None = None
    deputy: str | None = None  # may decide too: the customer's manager when the approval was opened

    def may_decide(self, person: str) -> bool:
        """Is this signed-in person the approver (owner) or the deputy (manager)? Addresses compared normalised."""
        wanted = normalise_address(person)
        return any(known and normalise_address(known) == wanted for known in (self.approver, self.deputy))

    @property
    def message(self) -> ActionMessage:
        return ActionMessage.from_json(self.held.message.body)

    def expired(self, now: datetime) -> bool:
        return self.status == ApprovalStatus.EXPIRED or (
            self.status == ApprovalStatus.PENDING and now >= self.expires_at)

    def effective_status(self, now: datetime) -> str:
        return ApprovalStatus.EXPIRED if self.expired(now) else self.status

    def to_dict(self) -> dict:
        """A summary without message content (for JSON answers)."""
        return {"id": self.id, "status": self.status, "rule": self.rule, "customer_id": self.customer_id,
                "channel": self.message.channel, "created_at": self.created_at.isoformat(),
                "expires_at": self.expires_at.isoformat(),
                "decided_at": self.decided_at.isoformat() if self.decided_at else None,
                "published": self.published}


class ApprovalStore:
    """The `Approvals` table: atomic create, ETag compare-and-swap updates."""

    def __init__(self, storage: Storage):
        self.storage = storage

    @property
    def table(self) -> Table:
        return self.storage.table(APPROVALS)

    def create(self, approval: Approval) -> bool:
        """Insert; False when it exists already (a re-run or a recovery: the first one is kept)."""
        try:
            self.table.insert(_entity(approval))
            return True
        except AlreadyExists:
            return False

    def get(self, approval_id: str) -> Approval:
        try:
            row = self.table.get(approval_id, ROW)
        except InvalidInput:  # not a key the table can hold: no such approval
            row = None
        if row is None:
            raise NotFound(f"no approval {approval_id!r}")
        return _approval(row)

    def update(self, approval: Approval, **changes: Any) -> Approval:
        """Write `changes` if the row is unchanged since `approval` was read; Conflict otherwise."""
        updated = replace(approval, **changes)
        entity = {"PartitionKey": approval.id, "RowKey": ROW, **_scalars(updated)}
        try:
            etag = self.table.merge(entity, approval.etag)
        except (Conflict, NotFound):
            raise Conflict(f"approval {approval.id} changed meanwhile") from None
        return replace(updated, etag=etag)

    def query(self, status: str, before: datetime | None = None, field: str = "expires_at") -> Iterator[Approval]:
        """Approvals of one status (optionally with `field` before an instant): a filtered scan."""
        query, parameters = "RowKey eq @row and status eq @status", {"row": ROW, "status": status}
        if before is not None:
            query += f" and {field} lt @before"
            parameters["before"] = before
        for row in self.table.query(query, parameters):
            yield _approval(row)

    def count_pending(self, now: datetime) -> int:
        """Approvals still waiting for a decision: pending and not yet expired (housekeeping marks those later)."""
        rows = self.table.query("RowKey eq @row and status eq @status and expires_at gt @now",
                                {"row": ROW, "status": ApprovalStatus.PENDING, "now": now}, select=["PartitionKey"])
        return sum(1 for _ in rows)

    def count(self, status: str) -> int:
        rows = self.table.query("RowKey eq @row and status eq @status", {"row": ROW, "status": status},
                                select=["PartitionKey"])
        return sum(1 for _ in rows)

    def decided_before(self, cutoff: datetime) -> Iterator[tuple[str, str]]:
        """Keys of approvals decided (or expired) before `cutoff`: what retention lets go."""
        rows = self.table.query("status ne @pending and decided_at lt @cutoff",
                                {"pending": ApprovalStatus.PENDING, "cutoff": cutoff},
                                select=["PartitionKey", "RowKey"])
        return ((row["PartitionKey"], row["RowKey"]) for row in rows)

    def delete_many(self, keys: Iterable[tuple[str, str]]) -> int:
        return self.table.delete_many(keys)


class ApprovalFlow:
    """Opens approvals for held messages, asks the approver in Teams, and applies decisions."""

    def __init__(self, settings: Settings, store: ApprovalStore, ledger: OpportunityLedger, broker: Broker,
                 customers: CustomerStore, renderer: Callable[[], Renderer]):
        self.settings = settings
        self.store = store
        self.ledger = ledger
        self.broker = broker
        self.customers = customers
        self._renderer = renderer  # loaded on first use: the approval routes never render
        self._warned_no_key = False

    @property
    def ttl(self) -> timedelta:
        return timedelta(days=self.settings.approval_ttl_days)

    # --- planning ------------------------------------------------------------------------------------------
    def link(self, approval_id_: str, now: datetime) -> str:
        """The signed review link (GET page with Approve / Reject)."""
        token = sign(self.settings, APPROVAL, approval_id_, now, self.ttl + TOKEN_GRACE)
        return f"{self.settings.public_base_url}/api/approvals/{approval_id_}?token={token}"

    def request_message(self, customer: Customer, firing: Firing, held: QueuedMessage,
                        now: datetime) -> QueuedMessage | None:
        """The Teams card asking the customer's owner to review `held`; None when it cannot be sent (no signing
        key, no owner address): the approval is still opened and shows up in the count of pending ones."""
        from shared.rules.evaluator import valid_address

        owner = customer.owner
        if not self.settings.unsubscribe_signing_key:
            if not self._warned_no_key:
                log.warning("approval requests are not sent: UNSUBSCRIBE_SIGNING_KEY is not set")
                self._warned_no_key = True
            return None
        if owner is None or not valid_address(owner.email):
            log.warning("approval for rule %s, customer %s: the owner has no usable address", firing.rule_id,
                        customer.id)
            return None
        message = ActionMessage.from_json(held.message.body)
        ident = approval_id(message.dedupe_key)
        renderer = self._renderer()
        locale = renderer.locale_for(customer.locale)
        context = template_context(
            customer=customer, rule_id=firing.rule_id, kind=firing.kind, locale=locale, today=firing.local_date,
            reason=firing.reason, recommendation=firing.recommendation, window=firing.window,
            approval={"url": self.link(ident, now), "subject": message.subject or "",
                      "preview": preview_text(message), "to": mask_address(message.to), "rule": firing.rule_id})
        card = renderer.card(REQUEST_TEMPLATE, locale, context)
        summary = one_line(card.get("fallbackText") or firing.rule_id)
        # No `firing_key` property: delivering this card must not mark the opportunity notified.
        properties = {"rule": firing.rule_id, "kind": firing.kind, "customer_id": customer.id,
                      "approval_id": ident, "template": REQUEST_TEMPLATE}
        request = ActionMessage(
            dedupe_key=request_key(message.dedupe_key), channel=Channel.TEAMS, rule=firing.rule_id, kind=firing.kind,
            customer_id=customer.id, to=owner.email, subject=summary,
            content={"card": card, "summary": summary, "aad_object_id": owner.aad_object_id}, planned_at=now,
            importance="high", properties=properties)
        return queued(request, properties=properties)

    def open(self, claims: Iterable[FiringClaim], now: datetime) -> int:
        """One pending approval per held message of the claims (existing ones kept); returns how many are new."""
        created = 0
        for claim in claims:
            for held in claim.held:
                key = held.message.message_id
                created += self.store.create(Approval(
                    id=approval_id(key), status=ApprovalStatus.PENDING, action_key=key, firing_key=claim.key,
                    rule=claim.rule, kind=claim.kind, customer_id=claim.customer_id, held=held,
                    approver=claim.owner_email, deputy=claim.manager_email, created_at=now, expires_at=now + self.ttl))
        return created

    # --- the link ------------------------------------------------------------------------------------------
    def authorize(self, approval_id_: str, token: str | None, now: datetime) -> Approval:
        """The approval a valid link points to. Unauthorized before any lookup, so ids cannot be probed."""
        if not token:
            raise Unauthorized("the link has no token")
        try:
            subject = verify(self.settings, APPROVAL, token, now)
        except InvalidInput:
            raise Unauthorized("the link token is malformed") from None
        if not hmac.compare_digest(subject.encode(), approval_id_.encode()):
            raise Unauthorized("the link belongs to another approval")
        return self.store.get(approval_id_)

    def decide(self, approval_id_: str, token: str | None, decision: str, now: datetime,
               decided_by: str | None = None) -> Approval:
        """Approve (publish the held message) or reject; AlreadyDecided when it is not pending any more.

        `decided_by` is the signed-in person App Service authentication names; it is only trusted, and then
        required, with APP_SERVICE_AUTH_ENABLED (else anybody could send the header), and must be the approval's
        approver or deputy (Forbidden otherwise). Without sign-in, the signed link sent to the owner is the credential.
        """
        if decision not in (Decision.APPROVE, Decision.REJECT):
            raise InvalidInput(f"decision must be '{Decision.APPROVE}' or '{Decision.REJECT}'")
        approval = self.authorize(approval_id_, token, now)
        if not self.settings.app_service_auth_enabled:
            decided_by = None
        elif not decided_by:
            raise Unauthorized("sign in to decide approvals")
        elif not approval.may_decide(decided_by):
            raise Forbidden("only the customer's owner or manager may decide this approval")
        if approval.status == ApprovalStatus.APPROVED and not approval.published and decision == Decision.APPROVE \
                and approval.decided_at is not None and now - approval.decided_at >= STUCK_AFTER:
            return self._release(approval, now)  # an earlier approval stopped before publishing: finish it
        if approval.expired(now):
            self._expire(approval, now)
            raise AlreadyDecided(ApprovalStatus.EXPIRED)
        if approval.status != ApprovalStatus.PENDING:
            raise AlreadyDecided(approval.status)
        status = ApprovalStatus.APPROVED if decision == Decision.APPROVE else ApprovalStatus.REJECTED
        try:
            decided = self.store.update(approval, status=status, decided_at=now, decided_by=decided_by)
        except Conflict:  # another click or approver won the race
            raise AlreadyDecided(self.store.get(approval_id_).status) from None
        log.info("approval %s %s (rule %s)", decided.id, status, decided.rule)
        if status == ApprovalStatus.APPROVED:
            return self._release(decided, now)
        self.ledger.mark_decided(decided.customer_id, decided.firing_key, OpportunityStatus.REJECTED, now)
        return decided

    def review(self, approval_id_: str, token: str | None, now: datetime) -> Approval:
        """The approval a valid link points to, while it still waits for a decision; AlreadyDecided otherwise."""
        approval = self.authorize(approval_id_, token, now)
        status = approval.effective_status(now)
        if status != ApprovalStatus.PENDING:
            raise AlreadyDecided(status)
        return approval

    def locale_of(self, approval: Approval) -> str | None:
        """The customer's language for pages about this approval: the held message's locale, else the customer's."""
        locale = approval.message.content.get("locale")
        if not locale:
            customer = self.customer_of(approval)
            locale = customer.locale if customer else None
        return locale

    def customer_of(self, approval: Approval) -> Customer | None:
        stored = self.customers.get(approval.customer_id)
        return stored.customer if stored else None

    # --- housekeeping --------------------------------------------------------------------------------------
    def housekeeping(self, now: datetime) -> dict[str, int]:
        """Expire overdue approvals and finish approved ones a crash left unpublished (daily timer)."""
        expired = sum(self._expire(a, now) for a in self.store.query(ApprovalStatus.PENDING, before=now))
        finished = 0
        for approval in self.store.query(ApprovalStatus.APPROVED, before=now - STUCK_AFTER, field="decided_at"):
            if not approval.published:
                self._release(approval, now)
                finished += 1
        return {"expired": expired, "finished": finished}

    # --- internals -----------------------------------------------------------------------------------------
    def _release(self, approval: Approval, now: datetime) -> Approval:
        held = approval.held.message
        message = approval.message
        slot = None
        if message.channel == Channel.EMAIL:
            customer = self.customer_of(approval)
            timezone = (customer.timezone if customer else None) or self.settings.default_timezone
            slot = next_business_slot(now, timezone, self.settings.business_hours, self.settings.business_days)
        publish_by_queue(self.broker, [queued(replace(message, not_before=slot), message_id=held.message_id,
                                              properties=held.properties)])
        try:
            approval = self.store.update(approval, published=True)
        except Conflict:
            approval = self.store.get(approval.id)  # a concurrent finisher marked it: the broker dropped our copy
        self.ledger.mark_decided(approval.customer_id, approval.firing_key, OpportunityStatus.QUEUED, now)
        return approval

    def _expire(self, approval: Approval, now: datetime) -> bool:
        if approval.status != ApprovalStatus.PENDING:
            return False
        try:
            self.store.update(approval, status=ApprovalStatus.EXPIRED, decided_at=now)
        except Conflict:
            return False
        self.ledger.mark_decided(approval.customer_id, approval.firing_key, OpportunityStatus.SUPPRESSED, now)
        return True


# --- encoding ----------------------------------------------------------------------------------------------
_SCALARS = ("status", "action_key", "firing_key", "rule", "kind", "customer_id", "approver", "deputy",
            "created_at", "expires_at", "decided_at", "decided_by", "published")


def _scalars(approval: Approval) -> dict:
    return {name: getattr(approval, name) for name in _SCALARS if getattr(approval, name) is not None}


def _entity(approval: Approval) -> dict:
    return {"PartitionKey": approval.id, "RowKey": ROW, **_scalars(approval),
            **put_json("held_json", approval.held.to_dict())}


def _approval(row: Entity) -> Approval:
    return Approval(
        id=row["PartitionKey"], status=row["status"], action_key=row["action_key"], firing_key=row["firing_key"],
        rule=row["rule"], kind=row.get("kind", ""), customer_id=row["customer_id"],
        held=QueuedMessage.from_dict(get_json(row, "held_json")), approver=row.get("approver"),
        created_at=row["created_at"], expires_at=row["expires_at"], decided_at=row.get("decided_at"),
        decided_by=row.get("decided_by"), published=bool(row.get("published")), deputy=row.get("deputy"),
        etag=etag_of(row))
