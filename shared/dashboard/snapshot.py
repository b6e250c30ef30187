"""The dashboard's materialised snapshot: the report computed once, read with one point read.

`refresh` (after a sweep, and by the `dashboard_refresh` timer) runs the report of `shared/dashboard/report.py`,
walks the ledger once more shard by shard — joined with the same shard's customers for names and CRM links — to
count the KPI cards and rewrite the work list (only rows that changed; batched per owner), and stores the result in
the `Dashboard` table as one row (the JSON split over string columns). A page view then costs one point read for
the snapshot plus one query for the work-list page, whatever the ledger's size.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.approvals.flow import ApprovalStore
from shared.broker import Broker
from shared.customers.store import partition_key
from shared.dashboard.report import build_dashboard
from shared.dashboard.worklist import OPEN_STATUSES, WorkItem, WorkList, due_date, owner_key
from shared.domain.names import CUSTOMERS, DASHBOARD
from shared.journeys.model import Journey
from shared.opportunities.ledger import LOST, WON, OpportunityLedger
from shared.rules.model import RuleSet
from shared.storage.backend import Storage, Table
from shared.storage.codec import BATCH_LIMIT, MAX_STRING_CHARS

SNAPSHOT_PARTITION, SNAPSHOT_ROW = "snapshot", "current"
_LEDGER_COLUMNS = ["RowKey", "rule", "kind", "customer_id", "owner_name", "owner_email", "status", "recommendation",
                   "local_date", "detected_at", "amount"]


@dataclass(frozen=True)
class RefreshReport:
    ledger_rows: int
    customers: int
    open_items: int
    written: int
    deleted: int
    transactions: int
    seconds: float


class SnapshotStore:
    """One row: the snapshot's JSON in `data`, `data_1`, ... (string columns hold 32 K characters each)."""

    def __init__(self, storage: Storage):
        self.storage = storage

    @property
    def table(self) -> Table:
        return self.storage.table(DASHBOARD)

    def read(self) -> dict[str, Any] | None:
        row = self.table.get(SNAPSHOT_PARTITION, SNAPSHOT_ROW)
        if row is None:
            return None
        parts, index = [], 0
        while (part := row.get("data" if index == 0 else f"data_{index}")):
            parts.append(part)
            index += 1
        return json.loads("".join(parts)) if parts else None

    def write(self, data: Mapping[str, Any]) -> None:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
        entity: dict[str, Any] = {"PartitionKey": SNAPSHOT_PARTITION, "RowKey": SNAPSHOT_ROW,
                                  "generated_at": str(data.get("generated_at", ""))}
        for index, start in enumerate(range(0, len(text), MAX_STRING_CHARS)):
            entity["data" if index == 0 else f"data_{index}"] = text[start:start + MAX_STRING_CHARS]
        self.table.upsert(entity)  # insert or replace: no stale data_N columns remain


def refresh(storage: Storage, ledger: OpportunityLedger, approvals: ApprovalStore, broker: Broker, *,
            shards: int, timezone: str, due_days: Callable[[str], int | None], now: datetime,
            days: int = 7, store: SnapshotStore | None = None, work_list: WorkList | None = None,
            month_of: datetime | None = None, journey: Journey | None = None,
            ruleset: RuleSet | None = None) -> tuple[dict[str, Any], RefreshReport]:
    """Recompute the report, the KPI cards and the work list; store the snapshot. Linear in ledger rows.

    "This month" is the month of `month_of` (default `now`) in `timezone`; the demo, which plays a fixed day, sets it.
    """
    started = time.perf_counter()
    store = store or SnapshotStore(storage)
    work_list = work_list or WorkList(storage)
    data = build_dashboard(storage, ledger, approvals, broker, now, days, journey=journey, ruleset=ruleset)

    existing = work_list.existing()
    month = (month_of or now).astimezone(ZoneInfo(timezone)).strftime("%Y-%m")
    counts: Counter = Counter()
    owners: dict[str, dict[str, Any]] = {}
    by_rule: dict[str, Counter] = {}
    changed: dict[str, list[WorkItem]] = {}  # per owner: written as full transactions of 100
    rows = customers_seen = open_items = transactions = written = 0
    for shard in range(shards):
        partition = partition_key(shard)
        customers = {row["RowKey"]: (row.get("name"), row.get("crm_url")) for row in storage.table(CUSTOMERS)
                     .partition(partition, select=["RowKey", "name", "crm_url"])}
        customers_seen += len(customers)
        for row in ledger.rows_of(partition, _LEDGER_COLUMNS):
            rows += 1
            status = row.get("status")
            detected_at = row.get("detected_at")
            if isinstance(detected_at, datetime) and detected_at.astimezone(ZoneInfo(timezone)).strftime(
                    "%Y-%m") == month:
                counts["this_month"] += 1
            rule = by_rule.setdefault(row.get("rule") or "(none)", Counter())
            rule["opportunities"] += 1
            if status in (WON, LOST):
                counts[status] += 1
                rule[status] += 1
            if status == WON:
                rule["revenue"] += float(row.get("amount") or 0)
            if status not in OPEN_STATUSES:
                continue
            open_items += 1
            key = owner_key(row.get("owner_email"))
            owner = owners.setdefault(key, {"key": key, "name": _display_name(row), "open": 0})
            owner["open"] += 1
            name, crm_url = customers.get(row.get("customer_id"), (None, None))
            item = WorkItem(owner=key, opportunity_id=f"{partition}~{row['RowKey']}", rule=row.get("rule") or "",
                            kind=row.get("kind") or "", status=status, customer_id=row.get("customer_id") or "",
                            customer_name=name, crm_url=_safe_url(crm_url), owner_name=owner["name"],
                            recommendation=row.get("recommendation"), detected=row.get("local_date"),
                            due=due_date(row.get("local_date"), due_days(row.get("rule") or "")),
                            amount=row.get("amount"))
            if existing.pop((item.owner, item.row), None) != item.signature():
                pending = changed.setdefault(item.owner, [])
                pending.append(item)
                if len(pending) == BATCH_LIMIT:
                    transactions += work_list.upsert(pending)
                    written += len(pending)
                    changed[item.owner] = []
    for pending in changed.values():
        transactions += work_list.upsert(pending)
        written += len(pending)
    transactions += work_list.delete(existing)  # rows whose opportunity closed or is gone

    closed = counts[WON] + counts[LOST]
    data["kpi"] = {
        "month": month, "this_month": counts["this_month"], "open": open_items, "won": counts[WON],
        "lost": counts[LOST], "revenue_won": data["opportunities"].get("amount_won", 0),
        "conversion_rate": round(counts[WON] / closed, 3) if closed else None,
    }
    # Per rule, from the ledger's amounts (the report may carry attributed revenue per rule and month too).
    data["rules"] = {rule: {"opportunities": c["opportunities"], "won": c[WON], "lost": c[LOST],
                            "revenue": c["revenue"]} for rule, c in sorted(by_rule.items())}
    data["owners"] = sorted(owners.values(), key=lambda o: (-o["open"], o["name"]))
    report = RefreshReport(ledger_rows=rows, customers=customers_seen, open_items=open_items, written=written,
                           deleted=len(existing), transactions=transactions,
                           seconds=round(time.perf_counter() - started, 3))
    data["snapshot"] = {"refreshed_at": now.isoformat(), "seconds": report.seconds, "ledger_rows": rows}
    store.write(data)
    return data, report


def _display_name(row: Mapping[str, Any]) -> str:
    """The rep's name; never their address (a row without a name shows the address masked)."""
    if row.get("owner_name"):
        return str(row["owner_name"])
    email = row.get("owner_email")
    if not email:
        return ""
    local, _, domain = str(email).partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def _safe_url(url: Any) -> str | None:
    """Only http(s) links reach an href (a `javascript:` URL from a CRM must never become clickable)."""
    if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
        return url
    return None
