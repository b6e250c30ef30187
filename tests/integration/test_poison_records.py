"""One bad record never blocks its shard: the sweep plans every other customer, the import names the field."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from shared.broker import OutgoingMessage
from shared.broker.outbound import QueuedMessage
from shared.customers.importer import import_customers
from shared.customers.store import partition_key, shard_of
from shared.devtools.sample_data import DEMO_NOW
from shared.domain.names import CUSTOMERS
from shared.opportunities.ledger import QUEUED, FiringClaim, OpportunityLedger
from shared.pipeline.sweep import ShardTask, evaluate_shard

SAMPLES = Path(__file__).parent.parent.parent / "samples"
NOW = datetime(2026, 11, 24, tzinfo=UTC)


def test_a_shard_with_one_poison_record_still_plans_the_others(container):
    report = import_customers(container.customers, SAMPLES / "customers.csv",
                              purchases_path=SAMPLES / "purchases.csv")
    assert report.imported == 260
    shards = Counter(shard_of(c.id, container.settings.customer_shards) for c in container.customers.iter_all())
    shard = shards.most_common(1)[0][0]
    # A row written before text fields were bounded: Table Storage itself takes a 400,000-character name in a
    # nested field (JSON split over several properties), and it would be rendered into every message.
    owner = json.dumps({"name": "x" * 400_000, "email": "rep@contoso.com"})
    table = container.tables.table(CUSTOMERS)
    table.upsert_entity({"PartitionKey": partition_key(shard), "RowKey": "POISON-1", "name": "Poison",
                         "email": "poison@example.co.jp", "products_json": '["A"]',
                         **{f"owner_json{'_' + str(i) if i else ''}": owner[i * 32_000:(i + 1) * 32_000]
                            for i in range(len(owner) // 32_000 + 1)}})

    result = evaluate_shard(container.customers, container.evaluator, container.planner, ShardTask(shard, DEMO_NOW))
    assert result.rejected == 1
    assert result.customers == shards[shard]  # every other customer of the shard was evaluated
    assert result.planned > 0 and result.planned == result.firings


def test_an_oversized_firing_is_rejected_and_the_rest_of_the_batch_claimed(container):
    ledger = OpportunityLedger(container.storage, container.settings.customer_shards)

    def claim(i: int, body: str) -> FiringClaim:
        key = f"cross-sell-b:C-{i:04d}:ever"
        return FiringClaim(key=key, rule="cross-sell-b", kind="cross_sell", customer_id=f"C-{i:04d}", owner_name=None,
                     owner_email=None, status=QUEUED, recommendation=None, local_date="2026-11-24",
                     actions=({"key": key + "#0", "channel": "teams", "status": "planned", "reason": None},),
                     messages=(QueuedMessage("teams", OutgoingMessage(body=body, message_id=key + "#0")),))

    claims = [claim(1, "{}"), claim(2, "x" * 700_000), claim(3, "{}")]
    result = ledger.claim(claims, NOW)
    assert [c.customer_id for c in result.to_publish] == ["C-0001", "C-0003"]
    [(rejected, reason)] = result.rejected
    assert rejected.customer_id == "C-0002" and "1 MiB" in reason


def test_the_import_refuses_an_oversized_name_naming_row_and_column(container, tmp_path):
    csv = tmp_path / "customers.csv"
    csv.write_text("id,name,email\nC-1,株式会社サンプル,a@example.co.jp\nC-2," + "x" * 400_000 +
                   ",b@example.co.jp\nC-3,Contoso,c@example.co.jp\n", encoding="utf-8")
    report = import_customers(container.customers, csv)
    assert report.imported == 2
    [problem] = report.errors
    assert "customers.csv:3" in str(problem) and "name" in str(problem) and "400,000" in str(problem)


def test_skipping_a_poison_record_logs_its_id_and_field_never_its_value(container, caplog):
    table = container.tables.table(CUSTOMERS)
    table.upsert_entity({"PartitionKey": partition_key(0), "RowKey": "POISON-2", "birthday": "secret-1980-11-22",
                         "name": "山田 太郎"})
    with caplog.at_level("WARNING"):
        result = evaluate_shard(container.customers, container.evaluator, container.planner, ShardTask(0, DEMO_NOW))
    assert result.rejected == 1
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "POISON-2" in logged and "birthday" in logged
    assert "secret-1980" not in logged and "山田" not in logged
