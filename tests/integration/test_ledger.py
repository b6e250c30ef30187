"""Opportunity ledger against Azurite: atomic claims, crash recovery state, status transitions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.broker import OutgoingMessage
from shared.broker.outbound import QueuedMessage
from shared.domain.errors import InvalidInput, NotFound
from shared.domain.vocabulary import OpportunityStatus
from shared.opportunities.ledger import (
    FiringClaim,
    OpportunityLedger,
    row_key,
)

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def claim(i: int, *, messages: int = 1, status: str = OpportunityStatus.QUEUED, body: str = "{}") -> FiringClaim:
    key = f"cross-sell-b:C-{i:04d}:ever"
    return FiringClaim(key=key, rule="cross-sell-b", kind="cross_sell", customer_id=f"C-{i:04d}",
                       owner_name="佐藤 花子", owner_email="hanako@contoso.com", status=status,
                       recommendation="製品Bのデモ案内", local_date="2026-11-24",
                       actions=({"key": key + "#0", "channel": "teams", "status": "planned", "reason": None},),
                       messages=tuple(QueuedMessage("teams", OutgoingMessage(body=body, message_id=f"{key}#{n}"))
                                      for n in range(messages)))


@pytest.fixture
def ledger(container) -> OpportunityLedger:
    return OpportunityLedger(container.storage, container.settings.customer_shards)


def test_claims_are_atomic_and_once(ledger):
    first = ledger.claim([claim(i) for i in range(150)], NOW)
    assert len(first.to_publish) == 150 and first.already_planned == 0
    # A second instance racing on an overlapping set only gets the new ones.
    second = ledger.claim([claim(i) for i in range(140, 160)], NOW)
    assert sorted(c.customer_id for c in second.to_publish) == [f"C-{i:04d}" for i in range(150, 160)]
    assert second.already_planned == 10


def test_unpublished_claims_keep_their_messages_until_marked(ledger):
    big_body = "x" * 70_000  # longer than one string property: chunked
    claims = ledger.claim([claim(1, messages=2, body=big_body), claim(2)], NOW).to_publish
    partition = ledger.partition_of("C-0001")
    [pending] = [c for c in ledger.unpublished(partition) if c.customer_id == "C-0001"]
    original = next(c for c in claims if c.customer_id == "C-0001")
    assert pending == original and pending.messages[0].message.body == big_body
    assert len(ledger.known_keys(partition).outboxes) == 1  # the messages wait in the partition's outbox row
    # The claim row is final at once (and slim: the messages are not in it).
    opportunity = ledger.get(f"{partition}~{row_key(pending.key)}")
    assert opportunity.status == OpportunityStatus.QUEUED and opportunity.queued_at == NOW
    assert "messages_json" not in ledger.table.get(partition, row_key(pending.key))
    ledger.mark_published(claims, NOW)
    assert ledger.unpublished(partition) == [] and ledger.known_keys(partition).outboxes == []
    assert ledger.known_keys(partition)[row_key(pending.key)] is True
    assert ledger.unpublished_of(claims) == []


def test_a_change_event_finds_a_stranded_claim_through_its_outbox(container):
    one_shard = OpportunityLedger(container.storage, 1)
    claims = one_shard.claim([claim(i) for i in range(5)], NOW).to_publish
    stranded = one_shard.unpublished_of([claims[0]])  # with the others of its transaction: all unpublished
    assert sorted(c.key for c in stranded) == sorted(c.key for c in claims) and all(c.outbox for c in stranded)
    one_shard.mark_published(stranded, NOW)
    assert one_shard.unpublished_of(claims) == [] and one_shard.unpublished("s0000") == []


def test_claims_of_one_partition_fill_several_transactions(container):
    one_shard = OpportunityLedger(container.storage, 1)
    body = "y" * 9_000  # ~100 of these exceed what one outbox row holds: the transactions are cut earlier
    result = one_shard.claim([claim(i, body=body) for i in range(230)], NOW)
    assert len(result.to_publish) == 230
    known = one_shard.known_keys("s0000")
    assert len(known) == 230 and len(known.outboxes) >= 4
    assert sorted(c.key for c in one_shard.unpublished("s0000")) == sorted(c.key for c in result.to_publish)
    one_shard.mark_published(result.to_publish, NOW)
    assert one_shard.unpublished("s0000") == []


def test_a_lost_race_falls_back_to_single_inserts_with_messages_inline(container):
    one_shard = OpportunityLedger(container.storage, 1)
    first = one_shard.claim([claim(1)], NOW)  # another instance claimed C-0001 first and has not published yet
    second = one_shard.claim([claim(i) for i in range(3)], NOW)
    assert second.already_planned == 1 and sorted(c.customer_id for c in second.to_publish) == ["C-0000", "C-0002"]
    assert all(c.outbox is None for c in second.to_publish)
    inline = one_shard.table.get("s0000", row_key(claim(0).key))
    assert inline["published"] is False and inline["status"] == OpportunityStatus.DETECTED
    assert sorted(c.customer_id for c in one_shard.unpublished("s0000")) == ["C-0000", "C-0001", "C-0002"]
    one_shard.mark_published(first.to_publish + second.to_publish, NOW)
    assert one_shard.unpublished("s0000") == []
    assert one_shard.get(f"s0000~{row_key(claim(0).key)}").status == OpportunityStatus.QUEUED


def test_claim_without_messages_is_final_at_once(ledger):
    [only] = ledger.claim([claim(3, messages=0, status=OpportunityStatus.SUPPRESSED)], NOW).to_publish
    partition = ledger.partition_of("C-0003")
    assert ledger.unpublished(partition) == []
    assert ledger.get(f"{partition}~{row_key(only.key)}").status == OpportunityStatus.SUPPRESSED


def test_status_transitions(ledger):
    [c] = ledger.claim([claim(4)], NOW).to_publish
    ledger.mark_published([c], NOW)
    oid = f"{ledger.partition_of('C-0004')}~{row_key(c.key)}"
    ledger.mark_notified("C-0004", c.key, NOW)
    assert ledger.get(oid).status == OpportunityStatus.NOTIFIED and ledger.get(oid).notified_at == NOW
    assert ledger.set_status(oid, OpportunityStatus.IN_PROGRESS).status == OpportunityStatus.IN_PROGRESS
    won = ledger.set_status(oid, OpportunityStatus.WON, amount=480000)
    assert won.status == OpportunityStatus.WON and won.amount == 480000
    ledger.mark_notified("C-0004", c.key, NOW)  # a late delivery never moves it backwards
    assert ledger.get(oid).status == OpportunityStatus.WON
    with pytest.raises(InvalidInput, match="cannot change"):
        ledger.set_status(oid, OpportunityStatus.NOTIFIED)
    with pytest.raises(InvalidInput, match="unknown status"):
        ledger.set_status(oid, "maybe")


def test_unknown_opportunity_is_not_found(ledger):
    with pytest.raises(NotFound):
        ledger.get("s0000~nope")
    with pytest.raises(NotFound):
        ledger.get("garbage")


def test_outbox_rows_are_never_read_as_opportunities(ledger):
    claims = ledger.claim([claim(i) for i in range(3)], NOW).to_publish  # not marked: the outbox rows remain
    assert ledger.known_keys(ledger.partition_of("C-0000")).outboxes
    keys = {c.key for c in claims}
    assert {o.key for o in ledger.iter_all()} == keys
    assert {o.key for o in ledger.query(limit=10)} == keys
    assert len(list(ledger.scan(["status"]))) == 3
    assert all(row["status"] == OpportunityStatus.QUEUED for row in ledger.rows_of(
        ledger.partition_of("C-0000"), ["status"]))
