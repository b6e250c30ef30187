"""The pipeline's triggers called as the Functions host calls them, with real azure.functions objects."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.functions.timer import TimerRequest

from functions.pipeline import crm_event, sweep_shard, sweep_timer
from shared.customers.importer import import_customers
from shared.devtools.sample_data import DEMO_NOW
from shared.domain.events import CrmEvent
from shared.domain.names import SWEEP_SHARDS, TEAMS
from shared.pipeline.sweep import ShardTask
from tests.functional.registered import bindings_of, sb_message

SAMPLES = Path(__file__).parent.parent.parent / "samples"


def test_bindings_read_the_schedule_setting_and_the_queues():
    [timer] = [b for b in bindings_of("sweep_timer") if b["type"] == "timerTrigger"]
    assert timer["schedule"] == "%SWEEP_SCHEDULE%"
    for name, queue in (("sweep_shard", SWEEP_SHARDS), ("crm_event", "crm-events")):
        [trigger] = [b for b in bindings_of(name) if b["type"] == "serviceBusTrigger"]
        assert trigger["queueName"] == queue and trigger["connection"] == "ServiceBusConnection"


def test_timer_fans_out_one_message_per_shard(installed):
    sweep_timer(TimerRequest(past_due=False))
    assert installed.broker.count(SWEEP_SHARDS) == installed.settings.customer_shards


def test_shard_message_evaluates_and_a_redelivery_plans_nothing_more(installed):
    import_customers(installed.customers, SAMPLES / "customers.csv", purchases_path=SAMPLES / "purchases.csv")
    body = ShardTask(0, DEMO_NOW).to_json()
    for shard_number in range(64):  # the whole sweep, as the host would deliver it
        sweep_shard(sb_message(ShardTask(shard_number, DEMO_NOW).to_json(), f"sweep-x-{shard_number}"))
    queued = installed.broker.count(TEAMS)
    assert queued > 0
    sweep_shard(sb_message(body, "sweep-x-redelivered"))
    assert installed.broker.count(TEAMS) == queued


def test_bad_shard_message_raises_so_the_host_redelivers_then_dead_letters(installed):
    from shared.domain.errors import InvalidInput

    with pytest.raises(InvalidInput):
        sweep_shard(sb_message('{"shard": "x"}', "bad"))


def test_crm_event_merges_and_moves_the_journey(installed):
    import_customers(installed.customers, SAMPLES / "customers.csv", purchases_path=SAMPLES / "purchases.csv")
    customer = next(c for c in installed.customers.iter_all() if c.stage == "onboarding" and c.owner and any(
        d.type == "subscription_new" for d in c.deals))
    deal = next(d for d in reversed(customer.deals) if d.type == "subscription_new")
    event = CrmEvent(source="generic", entity="customer", record_id=customer.id, operation="update",
                     event_id="evt-1", occurred_at=datetime.now(UTC), changed_fields=("deals",),
                     record={"id": customer.id, "deals": [{"id": deal.id, "onboarding_due": "2026-01-10"}]})
    crm_event(sb_message(event.to_json(), "generic:evt-1"))
    assert installed.customers.get(customer.id).customer.stage == "utilization"
    notices = installed.broker.receive(TEAMS, max_messages=10)
    assert [n.properties["rule"] for n in notices if n.properties["kind"] == "journey"] == [
        "customer-success-utilization"]
