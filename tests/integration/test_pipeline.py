"""The pipeline against Azurite and the local broker: sweep, exactly-once claims, crash recovery, change events."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.container import Container
from shared.customers.importer import import_customers
from shared.customers.store import shard_of
from shared.devtools.sample_data import DEMO_NOW
from shared.domain.events import CrmEvent
from shared.domain.messages import ActionMessage
from shared.domain.names import CRM_TASKS, EMAIL, SWEEP_SHARDS, TEAMS
from shared.domain.vocabulary import OpportunityStatus
from shared.opportunities.ledger import row_key
from shared.pipeline.changes import handle_crm_event
from shared.pipeline.sweep import ShardTask, evaluate_shard, evaluate_shards, plan_sweep
from shared.storage.tables import TableAccess
from tests.queues import drain as drain_actions

SAMPLES = Path(__file__).parent.parent.parent / "samples"
ACTION_QUEUES = (TEAMS, EMAIL, CRM_TASKS)


@pytest.fixture
def loaded(container) -> Container:
    report = import_customers(container.customers, SAMPLES / "customers.csv",
                              purchases_path=SAMPLES / "purchases.csv")
    assert report.imported == 260
    return container


def sweep(container: Container, now: datetime = DEMO_NOW):
    from shared.pipeline.planner import summarize_reports

    return summarize_reports(
        evaluate_shard(container.customers, container.evaluator, container.planner, ShardTask(shard, now))
        for shard in range(container.settings.customer_shards))


def sweep_reading_ahead(container: Container, now: datetime = DEMO_NOW):
    """The whole sweep in one process the way `crmflow sweep` runs it: each next shard read while one is evaluated."""
    from shared.pipeline.planner import summarize_reports

    tasks = [ShardTask(shard, now) for shard in range(container.settings.customer_shards)]
    return summarize_reports(evaluate_shards(container.customers, container.evaluator, container.planner, tasks))


def queued(container: Container) -> dict[str, int]:
    return {queue: container.broker.count(queue) for queue in ACTION_QUEUES}


def drain(container, queue: str) -> list[ActionMessage]:
    return drain_actions(container.broker, queue)


def test_sweep_plans_each_firing_once_and_a_rerun_writes_nothing(loaded):
    first = sweep(loaded)
    assert first.customers == 260 and first.planned == first.firings > 100
    assert first.messages == sum(queued(loaded).values()) > 0
    assert first.by_rule["birthday-mail"] > 0 and first.by_rule["cross-sell-a-to-b"] > 0

    writes = Counter()
    rerun_container = Container(loaded.settings)
    rerun_container.tables = TableAccess(  # counts every request the rerun makes
        loaded.settings, raw_response_hook=lambda response: writes.update([response.http_request.method]))
    rerun_container.broker = loaded.broker
    second = sweep(rerun_container)
    assert second.planned == 0 and second.already_planned == first.planned and second.messages == 0
    assert set(writes) == {"GET"}, writes  # reads only: no claim, no update, no publish
    assert queued(loaded)["teams"] == first.messages - queued(loaded)["email"] - queued(loaded)["crm-tasks"]


def test_reading_ahead_plans_what_shard_by_shard_plans_and_its_rerun_only_reads(loaded):
    expected = _reference(loaded)
    first = sweep_reading_ahead(loaded)
    assert first.customers == 260 and first.planned == first.firings > 100
    assert {m.dedupe_key for q in ACTION_QUEUES for m in drain(loaded, q)} == expected

    requests = Counter()
    rerun_container = Container(loaded.settings)
    rerun_container.tables = TableAccess(
        loaded.settings, raw_response_hook=lambda response: requests.update([response.http_request.method]))
    rerun_container.broker = loaded.broker
    second = sweep_reading_ahead(rerun_container)
    assert second.planned == 0 and second.already_planned == first.planned and second.messages == 0
    assert set(requests) == {"GET"}, requests
    # Two reads a shard (its ledger, its one page of customers), none twice, none left over.
    assert requests["GET"] == 2 * loaded.settings.customer_shards, requests


def test_a_sweep_spread_over_two_worker_processes_plans_each_firing_once(loaded):
    from shared.devtools.commands.sweep import run_sweep

    expected = _reference(loaded)
    first = run_sweep(loaded, DEMO_NOW, workers=2)
    assert first.customers == 260 and first.planned == first.firings > 100
    assert {m.dedupe_key for q in ACTION_QUEUES for m in drain(loaded, q)} == expected
    again = run_sweep(loaded, DEMO_NOW, workers=2)
    assert again.customers == 260 and again.planned == 0 and again.already_planned == first.planned


def test_messages_carry_rendered_content_and_emails_wait_for_business_hours(loaded):
    sweep(loaded)
    emails = drain(loaded, EMAIL)
    assert emails and all(m.channel == "email" and m.content["html"] and m.subject for m in emails)
    by_customer = {c.id: c for c in loaded.customers.iter_all()}
    for message in emails:
        zone = by_customer[message.customer_id].timezone or "Asia/Tokyo"
        if zone == "Asia/Tokyo":  # 09:00 Tuesday: inside business hours, no delay
            assert message.not_before is None
        elif zone == "America/New_York":  # 19:00 Monday: next morning 09:00 EST
            assert message.not_before == datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    # `after: email` notices ride inside the email they wait for, never on the teams queue on their own.
    fyis = [ActionMessage.from_json(f) for m in emails for f in m.followups]
    assert fyis and all(f.channel == "teams" and f.after for f in fyis)
    teams = drain(loaded, TEAMS)
    assert not {f.dedupe_key for f in fyis} & {t.dedupe_key for t in teams}
    assert all(t.content["card"]["type"] == "AdaptiveCard" for t in teams)


def test_plan_sweep_fans_out_one_message_per_shard_once(container):
    assert plan_sweep(container.settings, container.broker, DEMO_NOW) == 64
    assert plan_sweep(container.settings, container.broker, DEMO_NOW) == 64  # a doubled timer firing
    tasks = container.broker.receive(SWEEP_SHARDS, max_messages=200)
    assert sorted(ShardTask.from_json(t.body).shard for t in tasks) == list(range(64))


def test_two_instances_on_the_same_shards_plan_each_firing_once(loaded):
    results = []
    instances = [Container(loaded.settings) for _ in range(2)]

    def work(container):
        results.append(sweep(container))

    threads = [threading.Thread(target=work, args=(c,)) for c in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.planned for r in results) == results[0].firings
    # An instance may re-publish claims the other has not marked yet; duplicate detection drops the repeats.
    messages = [m for q in ACTION_QUEUES for m in drain(loaded, q)]
    assert len(messages) == len({m.dedupe_key for m in messages}) == len(_reference(loaded))


# --- crash safety: a worker process killed at the worst moments --------------------------------------------
def _die_during(settings, step: str, ahead: bool = False) -> None:
    """Child process: sweep shard by shard (`ahead`: reading the next shard while one is evaluated), and hard-exit
    (no cleanup, like a killed host) at `step`."""
    container = Container(settings)
    if step == "publish":
        container.broker.publish = lambda queue, messages: os._exit(17)
    else:
        container.ledger.mark_published = lambda claims, now: os._exit(17)
    (sweep_reading_ahead if ahead else sweep)(container)


@pytest.mark.parametrize("ahead", [False, True], ids=["shard-by-shard", "reading-ahead"])
@pytest.mark.parametrize("step", ["publish", "mark"])
def test_worker_killed_between_steps_loses_nothing_and_duplicates_nothing(loaded, step, ahead):
    expected = _reference(loaded)
    process = multiprocessing.get_context("fork").Process(target=_die_during, args=(loaded.settings, step, ahead))
    process.start()
    process.join(60)
    assert process.exitcode == 17
    before = sum(queued(loaded).values())
    assert (before == 0) if step == "publish" else before > 0  # killed before / after the first publish
    recovered = sweep(Container(loaded.settings))
    assert recovered.recovered >= 1
    if ahead:
        assert sweep_reading_ahead(Container(loaded.settings)).recovered == 0  # recovered once, nothing left
    messages = [m for q in ACTION_QUEUES for m in drain(loaded, q)]
    keys = [m.dedupe_key for m in messages]
    assert len(keys) == len(set(keys)), "a message was published twice"
    assert set(keys) == expected, "a planned action was lost"
    assert all(loaded.ledger.unpublished(p) == [] for p in loaded.customers.shard_keys())


def _reference(loaded) -> set[str]:
    """The dedupe keys an uninterrupted sweep publishes (computed without touching the test's tables)."""
    settings = loaded.settings.replace(table_prefix=loaded.settings.table_prefix + "r",
                                       local_dir=loaded.settings.local_dir / "ref")
    reference = Container(settings)
    reference.tables.ensure_tables()
    reference.customers.upsert_many(loaded.customers.iter_all())
    sweep(reference)
    return {m.dedupe_key for q in ACTION_QUEUES for m in drain(reference, q)}


# --- change events ----------------------------------------------------------------------------------------
def deal_event(customer_id: str, deal: dict, at: str, event_id: str) -> CrmEvent:
    return CrmEvent(source="generic", entity="customer", record_id=customer_id, operation="update",
                    event_id=event_id, occurred_at=datetime.fromisoformat(at), changed_fields=("deals",),
                    record={"id": customer_id, "deals": [deal]})


def test_change_event_merges_and_moves_the_journey(loaded):
    customer = next(c for c in loaded.customers.iter_all() if c.stage == "utilization" and c.owner and any(
        d.type == "subscription_new" for d in c.deals))
    deal = next(d for d in reversed(customer.deals) if d.type == "subscription_new")
    moved = deal_event(customer.id, {"id": deal.id, "renewal_notice_date": "2026-11-20"},
                       "2026-11-24T01:00:00+00:00", "e-1")
    outcome = handle_crm_event(loaded.customers, loaded.evaluator, loaded.planner, moved, DEMO_NOW,
                               journeys=loaded.journeys)
    assert outcome.changed and outcome.report.by_rule == Counter({"customer-success-renewal": 1})
    assert loaded.customers.get(customer.id).customer.stage == "renewal"
    [notice] = drain(loaded, TEAMS)
    assert notice.rule == "customer-success-renewal" and notice.customer_id == customer.id
    [task] = drain(loaded, CRM_TASKS)
    assert task.content["due"]
    # The same event redelivered, and an older event arriving late, change nothing and plan nothing.
    again = handle_crm_event(loaded.customers, loaded.evaluator, loaded.planner, moved, DEMO_NOW,
                             journeys=loaded.journeys)
    stale = deal_event(customer.id, {"id": deal.id, "renewal_notice_date": "2027-11-20"},
                       "2026-11-23T00:00:00+00:00", "e-0")
    late = handle_crm_event(loaded.customers, loaded.evaluator, loaded.planner, stale, DEMO_NOW,
                            journeys=loaded.journeys)
    assert not again.changed and not late.changed
    assert loaded.customers.get(customer.id).customer.stage == "renewal"
    assert sum(queued(loaded).values()) == 0
    opportunity = loaded.ledger.get(
        f"s{shard_of(customer.id, 64):04d}~{row_key(notice.properties['firing_key'])}")
    assert opportunity.status == OpportunityStatus.QUEUED and opportunity.rule == "customer-success-renewal"


def test_event_for_a_new_customer_creates_it(loaded):
    event = CrmEvent(source="generic", entity="customer", record_id="NEW-1", operation="create", event_id="e-9",
                     occurred_at=DEMO_NOW, record=json.loads(json.dumps(
                         {"id": "NEW-1", "name": "New Co", "email": "new@example.com", "products": ["A"],
                          "owner": {"name": "Rep", "email": "rep@contoso.com"}})))
    outcome = handle_crm_event(loaded.customers, loaded.evaluator, loaded.planner, event, DEMO_NOW)
    assert outcome.changed and loaded.customers.get("NEW-1").customer.products == ("A",)


def _die_handling_event(settings, event: CrmEvent, step: str) -> None:
    """Child process: handle one change event and hard-exit at `step` (the write, the publish or the mark)."""
    container = Container(settings)
    if step == "put":
        container.customers.put = lambda customer, etag: os._exit(17)
    elif step == "publish":
        container.broker.publish = lambda queue, messages: os._exit(17)
    else:
        container.ledger.mark_published = lambda claims, now: os._exit(17)
    handle_crm_event(container.customers, container.evaluator, container.planner, event, DEMO_NOW)


@pytest.mark.parametrize("step", ["publish", "put", "mark"])
def test_worker_killed_while_handling_a_change_event_loses_no_firing(loaded, step):
    created = CrmEvent(source="generic", entity="customer", record_id="KILL-1", operation="create",
                       event_id=f"e-kill-{step}", occurred_at=DEMO_NOW, record={
                           "id": "KILL-1", "name": "Kill Co", "email": "kill@example.com", "products": ["A"],
                           "owner": {"name": "Rep", "email": "rep@contoso.com"}})
    process = multiprocessing.get_context("fork").Process(target=_die_handling_event,
                                                          args=(loaded.settings, created, step))
    process.start()
    process.join(60)
    assert process.exitcode == 17
    # The broker redelivers the event to another worker.
    handle_crm_event(loaded.customers, loaded.evaluator, loaded.planner, created, DEMO_NOW)
    assert loaded.customers.get("KILL-1").customer.products == ("A",)
    messages = [m for q in ACTION_QUEUES for m in drain(loaded, q)]
    keys = [m.dedupe_key for m in messages]
    assert len(keys) == len(set(keys)), "a message was published twice"
    assert messages and {m.rule for m in messages} == {"cross-sell-a-to-b"}, "the on: change firing was lost"
    assert all(loaded.ledger.unpublished(p) == [] for p in loaded.customers.shard_keys())
