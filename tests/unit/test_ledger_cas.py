"""The ledger's compare-and-swap (`update_if`), on the in-memory backend: a decision taken on a stale read is taken
again, so a delivery's `notified` cannot overwrite what a rep set meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.domain.vocabulary import OpportunityStatus
from shared.opportunities.ledger import FiringClaim, OpportunityLedger, status_change
from shared.storage.memory import MemoryStorage

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def claimed(ledger: OpportunityLedger) -> str:
    claim = FiringClaim(key="cross-sell-b:C-1:ever", rule="cross-sell-b", kind="cross_sell", customer_id="C-1",
                        owner_name=None, owner_email=None, status=OpportunityStatus.QUEUED, recommendation=None,
                        local_date="2026-11-24", actions=())
    assert ledger.claim([claim], NOW).to_publish == [claim]
    return f"{ledger.partition_of('C-1')}~{claim.key}"


def test_a_decision_on_a_stale_read_is_taken_again():
    ledger = OpportunityLedger(MemoryStorage(), shards=4)
    opportunity_id = claimed(ledger)
    seen = []

    def notify_unless_decided(current):
        seen.append(current.status)
        if len(seen) == 1:  # a rep answers "won" between our read and our write
            ledger.set_status(opportunity_id, OpportunityStatus.WON, NOW, amount=480000)
        return status_change(OpportunityStatus.NOTIFIED, NOW) if current.status == OpportunityStatus.QUEUED else None

    result = ledger.update_if(opportunity_id, notify_unless_decided)
    assert seen == [OpportunityStatus.QUEUED, OpportunityStatus.WON] and result.status == OpportunityStatus.WON
    stored = ledger.get(opportunity_id)
    assert stored.status == OpportunityStatus.WON and stored.amount == 480000 and stored.notified_at is None


def test_update_if_writes_when_nothing_changed_meanwhile_and_ignores_unknown_ids():
    ledger = OpportunityLedger(MemoryStorage(), shards=4)
    opportunity_id = claimed(ledger)
    written = ledger.update_if(opportunity_id, lambda current: status_change(OpportunityStatus.NOTIFIED, NOW))
    assert written.status == OpportunityStatus.NOTIFIED and ledger.get(opportunity_id).notified_at == NOW
    assert "etag" not in written.to_dict()
    assert ledger.update_if("s0000~nobody", lambda current: status_change(OpportunityStatus.WON, NOW)) is None
