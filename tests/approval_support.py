"""A stack for approval tests: Azurite tables, the local broker on a clock the test sets, one customer whose
contract-renewal mail needs approval (the shipped rules and templates)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.approvals.flow import Approval
from shared.broker.local import LocalBroker
from shared.container import Container
from shared.customers.store import shard_of
from shared.devtools.sample_data import DEMO_NOW
from shared.domain.model import Customer
from shared.pipeline.planner import PlanReport
from shared.pipeline.sweep import ShardTask, evaluate_shard
from shared.storage.backend import Storage
from tests.conftest import make_settings

SIGNING_KEY = "approval-test-signing-key-not-a-secret"
RULE = "renewal-reminder"
CUSTOMER = {
    "id": "C-APR-1", "name": "株式会社サンプル", "contact_name": "山田 太郎", "email": "taro@example.co.jp",
    "owner": {"name": "佐藤 花子", "email": "hanako@contoso.example", "aad_object_id": None},
    "locale": "ja-JP", "timezone": "Asia/Tokyo", "plan": "Premium", "contract_status": "active",
    "contract_start": "2025-12-25", "contract_end": "2026-12-24",  # 30 days after DEMO_NOW: the 30-day window
    "requires_approval": True, "crm_url": "https://crm.example/records/C-APR-1",
}


class Clock:
    """Epoch seconds the test sets (the broker, the senders and the HTTP functions read it)."""

    def __init__(self, now: datetime = DEMO_NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now.timestamp()

    def set(self, now: datetime) -> None:
        self.now = now


def approval_stack(azurite, tmp_path, storage: Storage | None = None, **env) -> tuple[Container, Clock]:
    """Azurite's tables, or `storage` (e.g. MemoryStorage()) when `azurite` is None."""
    connection = azurite.connection_string if azurite else "UseDevelopmentStorage=true"
    env = {"TABLES_CONNECTION_STRING": connection, "UNSUBSCRIBE_SIGNING_KEY": SIGNING_KEY,
           "MAIL_SENDER": "crm-notify@contoso.example", "CUSTOMER_SHARDS": "4",
           "PUBLIC_BASE_URL": "https://crmflow.example", **env}
    settings = make_settings(tmp_path, **env)
    container = Container(settings, storage=storage)
    container.storage.ensure_tables()
    clock = Clock()
    container.clock = clock
    container.broker = LocalBroker(settings.local_dir / "broker.sqlite3", clock=clock)
    container.customers.upsert_many([Customer.from_dict(CUSTOMER)])
    return container, clock


def plan(container: Container, now: datetime = DEMO_NOW) -> PlanReport:
    """The daily sweep of the customer's shard."""
    shard = shard_of(CUSTOMER["id"], container.settings.customer_shards)
    return evaluate_shard(container.customers, container.evaluator, container.planner, ShardTask(shard, now))


def approvals_of(container: Container) -> list[Approval]:
    rows = container.approval_store.table.query()
    return [container.approval_store.get(row["PartitionKey"]) for row in rows]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)
