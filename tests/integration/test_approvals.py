"""Approvals against Azurite and the local broker: opened once per held message, asked once, expired, recovered."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from shared.approvals.flow import (
    STUCK_AFTER,
    AlreadyDecided,
    approval_id,
    request_key,
)
from shared.devtools.sample_data import DEMO_NOW
from shared.domain.errors import TransientError
from shared.domain.messages import ActionMessage
from shared.domain.names import CRM_TASKS, EMAIL, TEAMS
from shared.domain.signing import APPROVAL, verify
from shared.domain.vocabulary import ApprovalStatus, Decision, OpportunityStatus
from shared.opportunities.ledger import row_key
from tests.approval_support import CUSTOMER, RULE, approval_stack, approvals_of, plan
from tests.queues import drain as drain_actions


@pytest.fixture
def stack(azurite, tmp_path):
    container, clock = approval_stack(azurite, tmp_path)
    yield container, clock
    container.broker.close()


def drain(container, queue: str) -> list[ActionMessage]:
    return drain_actions(container.broker, queue)


def opportunity(container, firing_key: str):
    return container.ledger.get(f"{container.ledger.partition_of(CUSTOMER['id'])}~{row_key(firing_key)}")


def test_a_held_mail_gets_one_approval_and_one_request_card_even_when_the_shard_runs_twice(stack):
    container, _ = stack
    first = plan(container)
    second = plan(container)
    assert first.approvals == 1 and second.approvals == 0 and second.already_planned == first.planned

    [approval] = approvals_of(container)
    assert approval.status == ApprovalStatus.PENDING
    assert approval.rule == RULE and approval.customer_id == CUSTOMER["id"]
    assert approval.id == approval_id(approval.action_key) and approval.approver == "hanako@contoso.example"
    assert approval.expires_at == DEMO_NOW + timedelta(days=7) and not approval.published
    held = approval.message
    assert held.channel == "email" and held.to == CUSTOMER["email"] and held.subject
    assert [ActionMessage.from_json(f).channel for f in held.followups] == ["teams"]  # the FYI after the mail

    assert drain(container, EMAIL) == [] and drain(container, CRM_TASKS) == []
    [card] = drain(container, TEAMS)
    assert card.dedupe_key == request_key(approval.action_key) and len(card.dedupe_key) <= 128
    assert card.to == "hanako@contoso.example" and "firing_key" not in card.properties
    text = json.dumps(card.content["card"], ensure_ascii=False)
    assert r"t\\*\\*\\*@example.co.jp" in text and CUSTOMER["email"] not in text and approval.rule in text
    [link] = [a["url"] for a in card.content["card"]["actions"] if "/api/approvals/" in a["url"]]
    assert link.startswith(f"https://crmflow.example/api/approvals/{approval.id}?token=")
    assert verify(container.settings, APPROVAL, link.split("token=")[1], DEMO_NOW) == approval.id

    row = container.ledger.table.get(container.ledger.partition_of(CUSTOMER["id"]), row_key(approval.firing_key))
    partition = container.ledger.partition_of(CUSTOMER["id"])
    assert row["status"] == OpportunityStatus.NEEDS_APPROVAL and row.get("published") is not False
    assert not row.get("held_json") and container.ledger.known_keys(partition).outboxes == [], \
        "the held mail lives in the approval only"


def test_a_crash_before_publishing_is_recovered_without_a_second_approval_or_card(stack):
    container, _ = stack
    real_publish = container.broker.publish

    def broken(queue, messages):
        raise TransientError("broker unavailable")

    container.broker.publish = broken
    with pytest.raises(TransientError):
        plan(container)
    [approval] = approvals_of(container)  # opened before publishing, so the card's link resolves
    # The claim is final at once; the card waits in the partition's outbox row for the next evaluation.
    assert opportunity(container, approval.firing_key).status == OpportunityStatus.NEEDS_APPROVAL
    partition = container.ledger.partition_of(CUSTOMER["id"])
    assert [c.key for c in container.ledger.unpublished(partition)] == [approval.firing_key]

    container.broker.publish = real_publish
    recovered = plan(container)
    assert recovered.recovered == 1 and recovered.approvals == 0
    assert len(approvals_of(container)) == 1 and len(drain(container, TEAMS)) == 1
    assert opportunity(container, approval.firing_key).status == OpportunityStatus.NEEDS_APPROVAL


def test_without_a_signing_key_the_approval_opens_but_nobody_is_sent_a_broken_link(azurite, tmp_path, caplog):
    container, _ = approval_stack(azurite, tmp_path, UNSUBSCRIBE_SIGNING_KEY="")
    plan(container)
    assert [a.status for a in approvals_of(container)] == [ApprovalStatus.PENDING]
    assert container.broker.count(TEAMS) == 0
    assert "UNSUBSCRIBE_SIGNING_KEY" in caplog.text and CUSTOMER["email"] not in caplog.text


def test_housekeeping_expires_unanswered_approvals_and_suppresses_the_opportunity(stack):
    container, _ = stack
    plan(container)
    [approval] = approvals_of(container)
    assert container.approvals.housekeeping(DEMO_NOW + timedelta(days=6))["expired"] == 0
    assert container.approvals.housekeeping(DEMO_NOW + timedelta(days=7, seconds=1))["expired"] == 1
    assert container.approval_store.get(approval.id).status == ApprovalStatus.EXPIRED
    assert opportunity(container, approval.firing_key).status == OpportunityStatus.SUPPRESSED
    assert container.approvals.housekeeping(DEMO_NOW + timedelta(days=8)) == {"expired": 0, "finished": 0}


@pytest.mark.parametrize("finisher", ["housekeeping", "a later click"])
def test_an_approval_interrupted_before_publishing_is_finished_once(stack, finisher):
    container, clock = stack
    plan(container)
    drain(container, TEAMS)
    [approval] = approvals_of(container)
    token = container.approvals.link(approval.id, DEMO_NOW).split("token=")[1]
    real_publish = container.broker.publish

    def crash(queue, messages):
        raise TransientError("host stopped")

    container.broker.publish = crash
    with pytest.raises(TransientError):
        container.approvals.decide(approval.id, token, Decision.APPROVE, DEMO_NOW)
    stuck = container.approval_store.get(approval.id)
    assert stuck.status == ApprovalStatus.APPROVED and not stuck.published
    assert opportunity(container, approval.firing_key).status == OpportunityStatus.NEEDS_APPROVAL

    container.broker.publish = real_publish
    with pytest.raises(AlreadyDecided):  # the first request may still be publishing: no second publish now
        container.approvals.decide(approval.id, token, Decision.APPROVE, DEMO_NOW + timedelta(seconds=5))
    later = DEMO_NOW + STUCK_AFTER + timedelta(seconds=1)
    if finisher == "housekeeping":
        assert container.approvals.housekeeping(later) == {"expired": 0, "finished": 1}
    else:
        assert container.approvals.decide(approval.id, token, Decision.APPROVE, later).published
    assert container.approvals.housekeeping(later) == {"expired": 0, "finished": 0}
    with pytest.raises(AlreadyDecided):
        container.approvals.decide(approval.id, token, Decision.APPROVE, later)
    assert container.approval_store.get(approval.id).published
    assert opportunity(container, approval.firing_key).status == OpportunityStatus.QUEUED
    clock.set(later)
    assert [m.dedupe_key for m in drain(container, EMAIL)] == [approval.action_key]
