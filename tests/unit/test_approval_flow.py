"""The approval flow on the in-memory storage backend (no Azurite): opened once, decided once, expired by housekeeping.
The same flow against Azurite is tests/integration/test_approvals.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.approvals.flow import AlreadyDecided
from shared.devtools.sample_data import DEMO_NOW
from shared.domain.errors import Unauthorized
from shared.domain.names import EMAIL, TEAMS
from shared.domain.vocabulary import ApprovalStatus, Decision, OpportunityStatus
from shared.opportunities.ledger import row_key
from shared.storage.memory import MemoryStorage
from tests.approval_support import CUSTOMER, approval_stack, approvals_of, plan
from tests.queues import drain


@pytest.fixture
def stack(tmp_path):
    return approval_stack(None, tmp_path, storage=MemoryStorage())


def opportunity(container, firing_key: str):
    return container.ledger.get(f"{container.ledger.partition_of(CUSTOMER['id'])}~{row_key(firing_key)}")


def token_for(container, approval) -> str:
    return container.approvals.link(approval.id, DEMO_NOW).split("token=")[1]


def test_a_held_mail_opens_one_approval_and_one_card_however_often_the_shard_runs(stack):
    container, _ = stack
    first, second = plan(container), plan(container)
    assert first.approvals == 1 and second.approvals == 0 and second.already_planned == first.planned
    [approval] = approvals_of(container)
    assert approval.status == ApprovalStatus.PENDING and approval.message.channel == "email"
    assert len(drain(container.broker, TEAMS)) == 1 and container.broker.count(EMAIL) == 0  # nothing sent yet
    assert opportunity(container, approval.firing_key).status == OpportunityStatus.NEEDS_APPROVAL


def test_approve_publishes_the_held_mail_once_and_a_second_decision_loses(stack):
    container, clock = stack
    plan(container)
    [approval] = approvals_of(container)
    token = token_for(container, approval)
    decided = container.approvals.decide(approval.id, token, Decision.APPROVE, DEMO_NOW)
    assert decided.status == ApprovalStatus.APPROVED and decided.published
    clock.set(DEMO_NOW + timedelta(days=3))  # past the customer's next business-hours slot
    [mail] = drain(container.broker, EMAIL)
    assert mail.dedupe_key == approval.action_key and mail.to == CUSTOMER["email"]
    assert opportunity(container, approval.firing_key).status == OpportunityStatus.QUEUED
    with pytest.raises(AlreadyDecided):
        container.approvals.decide(approval.id, token, Decision.REJECT, DEMO_NOW)
    with pytest.raises(AlreadyDecided):
        container.approvals.decide(approval.id, token, Decision.APPROVE, DEMO_NOW)
    assert container.broker.count(EMAIL) == 0


def test_reject_publishes_nothing_and_a_forged_token_is_refused_before_any_lookup(stack):
    container, clock = stack
    plan(container)
    [approval] = approvals_of(container)
    with pytest.raises(Unauthorized):
        container.approvals.decide(approval.id, "forged", Decision.APPROVE, DEMO_NOW)
    decided = container.approvals.decide(approval.id, token_for(container, approval), Decision.REJECT, DEMO_NOW)
    assert decided.status == ApprovalStatus.REJECTED
    clock.set(DEMO_NOW + timedelta(days=3))
    assert container.broker.count(EMAIL) == 0
    assert opportunity(container, approval.firing_key).status == OpportunityStatus.REJECTED


def test_housekeeping_expires_the_unanswered_and_cleanup_keeps_the_pending(stack):
    from shared.ops.cleanup import purge_deliveries

    container, _ = stack
    plan(container)
    [approval] = approvals_of(container)
    assert container.approvals.housekeeping(DEMO_NOW + timedelta(days=8))["expired"] == 1
    assert opportunity(container, approval.firing_key).status == OpportunityStatus.SUPPRESSED
    assert purge_deliveries(container.storage, DEMO_NOW + timedelta(days=9), 400).approvals == 0
    assert purge_deliveries(container.storage, DEMO_NOW + timedelta(days=500), 400).approvals == 1
    assert approvals_of(container) == []
