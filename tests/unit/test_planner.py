"""The planner on the in-memory storage backend (no Azurite): each firing claimed and published once, a rerun
writes nothing, a crash between claim and publish is recovered, concurrent CRM events lose no change.
The same pipeline against Azurite and worker processes is tests/integration/test_pipeline.py."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from shared.container import Container
from shared.customers.importer import import_customers
from shared.devtools.sample_data import DEMO_NOW
from shared.domain.errors import TransientError
from shared.domain.events import CrmEvent
from shared.domain.names import CRM_TASKS, EMAIL, OPPORTUNITIES, TEAMS
from shared.domain.vocabulary import OpportunityStatus
from shared.opportunities.ledger import OUTBOX_PREFIX
from shared.pipeline.changes import handle_crm_event
from shared.pipeline.planner import summarize_reports
from shared.pipeline.sweep import ShardTask, evaluate_shard
from shared.storage.memory import MemoryStorage
from tests.conftest import make_settings
from tests.queues import drain

SAMPLES = Path(__file__).parent.parent.parent / "samples"
ACTION_QUEUES = (TEAMS, EMAIL, CRM_TASKS)


@pytest.fixture
def loaded(tmp_path) -> Container:
    container = Container(make_settings(tmp_path, CUSTOMER_SHARDS="8"), storage=MemoryStorage())
    report = import_customers(container.customers, SAMPLES / "customers.csv",
                              purchases_path=SAMPLES / "purchases.csv")
    assert report.imported == 260 and not report.errors
    return container


def sweep(container: Container):
    return summarize_reports(
        evaluate_shard(container.customers, container.evaluator, container.planner, ShardTask(shard, DEMO_NOW))
        for shard in range(container.settings.customer_shards))


def queued(container: Container) -> Counter:
    return Counter({queue: container.broker.count(queue) for queue in ACTION_QUEUES})


def test_a_sweep_claims_every_firing_once_and_a_rerun_writes_nothing(loaded):
    first = sweep(loaded)
    assert first.customers == 260 and first.planned == first.firings > 100
    assert first.messages == sum(queued(loaded).values()) > 0
    rows = loaded.storage.snapshot()[OPPORTUNITIES]
    assert not any(row["RowKey"].startswith(OUTBOX_PREFIX) for row in rows)  # every outbox row retired once published
    assert len(rows) == first.planned and all(row.get("published") is not False for row in rows)
    assert not any(row.get("messages_json") for row in rows)  # claim rows never carry the messages

    before = loaded.storage.snapshot()
    second = sweep(loaded)
    assert second.planned == 0 and second.already_planned == first.planned and second.messages == 0
    assert loaded.storage.snapshot() == before  # not one write


def reference_keys(loaded: Container, tmp_path) -> set[str]:
    """What an uninterrupted sweep of the same customers publishes."""
    reference = Container(loaded.settings.replace(local_dir=tmp_path / "reference"), storage=MemoryStorage())
    reference.customers.upsert_many(loaded.customers.iter_all())
    sweep(reference)
    return {m.dedupe_key for queue in ACTION_QUEUES for m in drain(reference.broker, queue)}


def test_a_crash_between_claim_and_publish_is_recovered_by_the_next_evaluation(loaded, tmp_path):
    real_publish = loaded.broker.publish
    calls = []

    def crash_after_one(queue, messages):
        if calls:
            raise TransientError("host stopped")
        calls.append(queue)
        return real_publish(queue, messages)

    loaded.broker.publish = crash_after_one
    with pytest.raises(TransientError):
        sweep(loaded)
    rows = loaded.storage.snapshot()[OPPORTUNITIES]
    outboxes = {row["RowKey"] for row in rows if row["RowKey"].startswith(OUTBOX_PREFIX)}
    stuck = [row for row in rows if row.get("outbox") in outboxes]  # their messages wait in an outbox row
    assert stuck and all(row["status"] != OpportunityStatus.DETECTED and not row.get("messages_json")
                         for row in stuck)

    loaded.broker.publish = real_publish
    again = sweep(loaded)
    assert again.recovered >= len(stuck)
    rows = loaded.storage.snapshot()[OPPORTUNITIES]
    assert not any(row["RowKey"].startswith(OUTBOX_PREFIX) for row in rows)
    # Every planned action exactly once, however the crash split the work (duplicate detection drops repeats).
    keys = [m.dedupe_key for queue in ACTION_QUEUES for m in drain(loaded.broker, queue)]
    assert len(keys) == len(set(keys)) and set(keys) == reference_keys(loaded, tmp_path)
    assert all(row["status"] != OpportunityStatus.DETECTED for row in rows)
    assert sum(1 for row in rows if row["status"] == OpportunityStatus.QUEUED) > 0


def test_concurrent_change_events_for_one_customer_lose_no_field(loaded):
    customer_id = "C-000001"

    def event(event_id: str, field: str, value: str, at: str) -> CrmEvent:
        return CrmEvent(source="generic", entity="customer", record_id=customer_id, operation="update",
                        event_id=event_id, occurred_at=datetime.fromisoformat(at), changed_fields=(field,),
                        record={"id": customer_id, field: value})

    first = event("e-1", "plan", "Premium", "2026-11-24T01:00:00+00:00")
    second = event("e-2", "stage", "renewal", "2026-11-24T01:00:01+00:00")
    store = loaded.customers
    real_get = store.get
    interleaved = []

    def read_then_let_the_other_event_write(cid):
        stored = real_get(cid)
        if not interleaved:  # the first event has read; the second one writes before the first can
            interleaved.append(True)
            handle_crm_event(store, loaded.evaluator, loaded.planner, second, DEMO_NOW)
        return stored

    store.get = read_then_let_the_other_event_write
    outcome = handle_crm_event(store, loaded.evaluator, loaded.planner, first, DEMO_NOW)
    store.get = real_get
    merged = store.get(customer_id).customer
    assert outcome.changed and (merged.plan, merged.stage) == ("Premium", "renewal")
