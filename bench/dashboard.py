"""The dashboard at scale, over Azurite: page render from the snapshot vs one point read, and refresh cost.

    .venv/bin/python bench/dashboard.py [--rows 1000000] [--owners 200] [--runs 7]

Seeds `--rows` opportunities (and half as many customers) synthetically, straight into the tables in batched
transactions of 100 per partition (built by hand and sent in parallel: the SDK's multipart encoder costs ~1 ms of
CPU per entity, more than Azurite takes to store it), then:

1. Refresh: the snapshot refresh over half the rows and over all of them (per-row cost at both sizes: linear means
   equal), with the Table requests it made (reads are 1,000-row pages; writes are ≤ 100-entity transactions), and a
   second refresh over unchanged data (steady state: no work-list writes).
2. Render: median time of the dashboard page (team view and one owner's list; warm = this process holds the current
   snapshot, cold = a new instance's first view, which reads the snapshot row too) and of the JSON, each with the
   number of Table requests it made, against the median of one Table point read measured in the same run.
   Target: a page costs ≤ 5 point reads.

Azurite answers each query page by scanning the whole table and each write by scanning the row's partition, so its
cost grows faster than the rows: a million rows there take hours (100,000-200,000 with --shards 16 take tens of
minutes); use --rows 20000 for a quick look. `--storage memory` runs the same steps on the in-memory backend
(`shared/storage/memory.py`; a million rows in ~11 minutes and ~2.3 GB): the refresh's CPU per row (the backend's
work included) and the Table requests the same calls would make (queries paged as the service pages them); its
point read is a dictionary lookup, so the render ratios there say nothing about Table Storage (use Azurite for them).
Progress (tqdm) goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the repo

from azure.core.exceptions import ServiceResponseError
from azure.core.rest import HttpRequest
from azure.data.tables import TableClient
from azure.data.tables._serialize import _add_entity_properties

from shared.container import Container
from shared.customers.store import BATCH_LIMIT, partition_key, shard_of
from shared.dashboard.service import DashboardQuery
from shared.dashboard.worklist import owner_key
from shared.devtools.localstack import Azurite
from shared.devtools.progress import Progress
from shared.domain.names import CUSTOMERS, OPPORTUNITIES
from shared.settings import Settings
from shared.storage.backend import Op, Operation
from shared.storage.memory import MemoryStorage, MemoryTable
from shared.storage.tables import TableAccess
from shared.web import dashboard_page
from shared.web.dashboard_auth import Viewer

RULES = [("cross-sell-a-to-b", "cross_sell"), ("upsell-basic-to-premium", "upsell"), ("renewal-reminder", "lifecycle"),
         ("birthday-mail", "lifecycle"), ("campaign-subdisplay-40s-pc", "campaign")]
STATUSES = ["notified"] * 40 + ["in_progress"] * 10 + ["won"] * 15 + ["lost"] * 10 + ["suppressed"] * 20 + \
           ["needs_approval"] * 5
NOW = datetime(2026, 11, 24, tzinfo=UTC)


class Requests:
    """Counts the Table requests a container makes (the raw response hook sees every HTTP response)."""

    def __init__(self):
        self.counts: Counter = Counter()

    def __call__(self, response) -> None:
        self.counts[response.http_request.method] += 1

    def take(self) -> Counter:
        taken, self.counts = self.counts, Counter()
        return taken


class CountingMemory(MemoryStorage):
    """The in-memory backend, counting the Table requests each call would be (a query: one per page of
    `page_size`, as the service pages it; a transaction or single write: one), so both backends report them."""

    def __init__(self, counter: Requests):
        super().__init__()
        self.counter = counter

    def table(self, name: str) -> MemoryTable:
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = _CountingTable(self, name)
        return handle


class _CountingTable(MemoryTable):
    storage: CountingMemory

    def _count(self, method: str) -> None:
        self.storage.counter.counts[method] += 1

    def get(self, partition, row, select=None):
        self._count("GET")
        return super().get(partition, row, select)

    def _write(self, operation):
        self._count("DELETE" if operation.op is Op.DELETE else "PUT")
        return super()._write(operation)

    def delete(self, partition, row, etag=None):
        self._count("DELETE")
        return super().delete(partition, row, etag)

    def submit(self, operations):
        self._count("POST")
        return super().submit(operations)

    def query(self, filter=None, parameters=None, *, select=None, page_size=1000):
        rows = super().query(filter, parameters, select=select, page_size=page_size)

        def paged():
            self._count("GET")
            for number, row in enumerate(rows, 1):
                yield row
                if number % page_size == 0:
                    self._count("GET")  # a full page comes with a continuation: the next page is asked for
        return paged()


def upsert_batch(client: TableClient, rows: list[dict]) -> None:
    """One entity-group transaction of upserts, its multipart body written here and sent through the SDK's pipeline
    (which signs it): the SDK's own encoder (the `email` package) costs ~1 ms of CPU per entity."""
    base = f"{client.scheme}://{client._primary_hostname}"
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    parts = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"]
    for row in rows:
        keys = ",".join(f"{name}='{quote(row[name].replace(chr(39), chr(39) * 2), safe='')}'"
                        for name in ("PartitionKey", "RowKey"))
        parts.append(f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                     f"PUT {base}/{client.table_name}({keys}) HTTP/1.1\r\nContent-Type: application/json\r\n"
                     "Accept: application/json;odata=minimalmetadata\r\nDataServiceVersion: 3.0\r\n\r\n"
                     + json.dumps(_add_entity_properties(row), ensure_ascii=False) + "\r\n")
    parts.append(f"--{changeset}--\r\n--{batch}--\r\n")
    request = HttpRequest("POST", f"{base}/$batch", content="".join(parts).encode("utf-8"), headers={
        "Content-Type": f"multipart/mixed; boundary={batch}", "x-ms-version": client.api_version,
        "DataServiceVersion": "3.0", "MaxDataServiceVersion": "3.0;NetFx", "Accept": "application/json"})
    response = client._client._client.send_request(request, stream=True)
    text = response.read().decode("utf-8", "replace")
    statuses = [line.split()[1] for line in text.splitlines() if line.startswith("HTTP/1.1 ")]
    if response.status_code != 202 or len(statuses) != len(rows) or any(not s.startswith("2") for s in statuses):
        raise RuntimeError(f"seeding batch refused: {response.status_code} {text[:300]}")


def seed(container: Container, start: int, stop: int, owners: int, shards: int, threads: int = 4,
         chunk: int = 100_000) -> float:
    """Opportunities start..stop (two per customer) and their customers, batched per partition; rows/s."""
    started = time.perf_counter()
    progress = Progress(f"seeding {start:,}..{stop:,}", total=stop - start)
    for first in range(start, stop, chunk):
        _seed_chunk(container, first, min(first + chunk, stop), owners, shards, threads, progress)
    progress.close()
    return (stop - start) / (time.perf_counter() - started)


def _seed_chunk(container: Container, start: int, stop: int, owners: int, shards: int, threads: int,
                progress: Progress) -> None:
    rng = random.Random(start)
    by_table: dict[str, dict[str, list[dict]]] = {CUSTOMERS: {}, OPPORTUNITIES: {}}
    for number in range(start, stop):
        customer = f"C-{number // 2:07d}"
        pk = partition_key(shard_of(customer, shards))
        owner = number // 2 % owners
        rule, kind = RULES[number % len(RULES)]
        status = rng.choice(STATUSES)
        day = NOW - timedelta(days=rng.randrange(0, 365))
        if number % 2 == 0:
            by_table[CUSTOMERS].setdefault(pk, []).append({
                "PartitionKey": pk, "RowKey": customer, "name": f"株式会社サンプル{number // 2}",
                "crm_url": f"https://crm.example/records/{customer}", "stage": rng.choice(
                    ["contract", "implementation", "onboarding", "utilization", "renewal"])})
        key = f"{rule}:{customer}:{number}"
        entity = {"PartitionKey": pk, "RowKey": key, "key": key, "rule": rule, "kind": kind,
                  "customer_id": customer, "owner_name": f"担当 {owner:03d}",
                  "owner_email": f"rep{owner:03d}@contoso.com", "status": status, "target_status": status,
                  "month": day.strftime("%Y-%m"), "local_date": day.date().isoformat(), "detected_at": day,
                  "updated_at": day, "published": True, "actions_json": "[]",
                  "recommendation": "製品Bのデモ案内"}
        if status == "won":
            entity["amount"] = float(rng.randrange(1, 50) * 10000)
        by_table[OPPORTUNITIES].setdefault(pk, []).append(entity)
    batches = [(table, rows[i:i + BATCH_LIMIT]) for table, parts in by_table.items() for rows in parts.values()
               for i in range(0, len(rows), BATCH_LIMIT)]

    def submit(batch):
        table, rows = batch
        if isinstance(container.storage, MemoryStorage):
            container.storage.table(table).submit([Operation(Op.UPSERT, row) for row in rows])
            return
        for attempt in range(5):  # upserts are idempotent: a connection Azurite dropped under load is retried
            try:
                upsert_batch(container.tables.table(table), rows)
                return
            except ServiceResponseError:
                if attempt == 4:
                    raise
                time.sleep(1 + attempt)

    if isinstance(container.storage, MemoryStorage):  # one process: threads would only contend for the GIL
        for batch in batches:
            submit(batch)
            progress.advance(len(batch[1]) if batch[0] == OPPORTUNITIES else 0)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:  # transactions of different partitions: independent
        for (table, rows), _ in zip(batches, pool.map(submit, batches), strict=True):
            progress.advance(len(rows) if table == OPPORTUNITIES else 0)


def timed(call, runs: int, counter: Requests, baseline=None) -> tuple[float, float, float]:
    """(median ms, Table requests per call, median ms of `baseline`). With a baseline (one point read), each run
    times one baseline call right before the call itself, so both see the same load on a shared machine."""
    times, base = [], []
    counter.take()
    requests = 0
    for _ in range(runs):
        if baseline is not None:
            started = time.perf_counter()
            baseline()
            base.append((time.perf_counter() - started) * 1000)
            counter.take()
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
        requests += sum(counter.take().values())
    return statistics.median(times), requests / runs, statistics.median(base) if base else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="opportunities to seed (default 1,000,000)")
    parser.add_argument("--owners", type=int, default=200)
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=4, help="transactions in flight while seeding")
    parser.add_argument("--storage", choices=("azurite", "memory"), default="azurite")
    args = parser.parse_args()
    memory = args.storage == "memory"

    with tempfile.TemporaryDirectory() as tmp, (contextlib.nullcontext() if memory else Azurite(in_memory=True)) as \
            azurite:
        settings = Settings.from_env({"TABLES_CONNECTION_STRING": azurite.connection_string if azurite else "x",
                                      "CUSTOMER_SHARDS": str(args.shards), "LOCAL_DIR": tmp,
                                      "TABLE_PREFIX": "b" + uuid.uuid4().hex[:8],
                                      "UNSUBSCRIBE_SIGNING_KEY": "bench-only-key-0123456789abcdef"})
        counter = Requests()
        if memory:
            container = Container(settings, storage=CountingMemory(counter))
            print("in-memory backend: the Table requests below are those the same calls would make (queries paged as "
                  "the service pages them); CPU includes the backend's own work, which Azurite would do")
        else:
            container = Container(settings)
            container.tables = TableAccess(settings, raw_response_hook=counter)
            container.tables.ensure_tables()
        service = container.dashboard
        service.due_days("")  # load the rules outside the timings

        half = args.rows // 2
        print(f"seeding {args.rows:,} opportunities, {args.rows // 2:,} customers, {args.owners} owners, "
              f"{args.shards} shards ...", flush=True)
        rate = seed(container, 0, half, args.owners, args.shards, args.threads)
        counter.take()

        rows_of = service.ledger.rows_of

        def refresh(seeded: int):
            counter.take()
            progress = Progress(f"refresh over {seeded:,}", total=seeded)

            def counted(partition, columns):  # the refresh reads the ledger one shard partition at a time
                read = 0
                for read, row in enumerate(rows_of(partition, columns), 1):  # noqa: B007 (the count is used below)
                    yield row
                progress.advance(read)

            service.ledger.rows_of = counted
            cpu = time.process_time()
            try:
                report = service.refresh(NOW)
            finally:
                cpu = time.process_time() - cpu
                service.ledger.rows_of = rows_of
                progress.close()
            return report, counter.take(), cpu

        first_half = refresh(half)
        steady_half = refresh(half)
        rate = (rate + seed(container, half, args.rows, args.owners, args.shards, args.threads)) / 2
        counter.take()
        first_full = refresh(args.rows)
        steady_full = refresh(args.rows)
        print(f"seeded at {rate:,.0f} opportunities/s (+ half as many customers; hand-built transactions of 100, "
              f"{args.threads} threads)\n")

        print("refresh (report + KPI pass + work-list diff); CPU = this process (" + (
            "the in-memory backend's work included" if memory else "Azurite's own time excluded") + "):")
        runs = (("half, new rows", first_half), ("half, unchanged", steady_half), ("full, new rows", first_full),
                ("full, unchanged", steady_full))
        for label, (report, requests, cpu) in runs:
            writes = sum(n for method, n in requests.items() if method != "GET")
            print(f"  {label:>16}: {report.ledger_rows:>9,} rows, wall {report.seconds:6.1f} s, CPU "
                  f"{cpu * 1e6 / report.ledger_rows:5.0f} µs/row; {requests['GET']:,} read requests "
                  f"({requests['GET'] * 1000 / report.ledger_rows:.1f} per 1,000 rows), {writes:,} write requests "
                  f"({report.written:,} work rows written in {report.transactions:,} "
                  f"transactions, {report.deleted:,} deleted; {report.heads_written} list heads written)")
        print("  (a refresh's write requests include the snapshot's own transaction: 1 when nothing else changed)")
        (half_report, half_requests, half_cpu), (full_report, full_requests, full_cpu) = steady_half, steady_full
        cpu_ratio = (full_cpu / full_report.ledger_rows) / (half_cpu / half_report.ledger_rows)
        extra_reads = (full_requests["GET"] - half_requests["GET"]) / (full_report.ledger_rows
                                                                       - half_report.ledger_rows) * 1000
        print(f"  linearity (unchanged data, full vs half): CPU per row ×{cpu_ratio:.2f} (1.00 = linear); "
              f"{extra_reads:.1f} more read requests per 1,000 more rows, on top of ~3 per shard" + (
                  "\n" if memory else "; Azurite scans a whole table per page, so its own wall time grows faster "
                  "than the rows\n"))

        some_key = owner_key("rep007@contoso.com")
        pk = partition_key(shard_of("C-0000001", args.shards))
        point_row = next(iter(container.ledger.table.partition(pk, select=["RowKey"], page_size=1)))["RowKey"]
        def point():
            return container.ledger.table.get(pk, point_row)

        point_ms, _, _ = timed(point, args.runs * 3, counter)
        viewer = Viewer()
        kind = RULES[1][1]

        def cold(query):  # a new instance's first view: the snapshot row is read too
            service.snapshots.forget()
            return service.page(query, viewer, "ja", NOW)

        head = service.work_list.head(some_key)
        held = (f"the owner's head holds {len(head.items) if head else 0} rows, "
                f"{'all of the list' if head and head.complete else 'not all: a query past it'}")
        cases = {
            "page, team view": (lambda: service.page(DashboardQuery(owner="all"), viewer, "ja", NOW), ""),
            "page, one owner": (lambda: service.page(DashboardQuery(owner=some_key), viewer, "ja", NOW), ""),
            "team view, cold": (lambda: cold(DashboardQuery(owner="all")), ""),
            "one owner, cold": (lambda: cold(DashboardQuery(owner=some_key)), ""),
            "JSON": (lambda: service.data(DashboardQuery(), NOW), ""),
            # A view a head may not hold (a filter on a list longer than its head): then the work-list query.
            "owner + type filter": (lambda: service.page(DashboardQuery(owner=some_key, kind=kind), viewer, "ja", NOW),
                                    f"; {held}"),
        }
        print(f"render (median of {args.runs}; each run right after one point read, median of those alone: "
              f"{point_ms:.1f} ms) vs one Table point read:")
        for label, (call, note) in cases.items():
            ms, requests, base = timed(call, args.runs, counter, point)
            if memory:
                print(f"  {label:>16}: {ms:7.1f} ms in this process, {requests:.0f} Table requests (no round trips "
                      f"in memory: a point read is a dictionary lookup, so a ratio to it says nothing){note}")
                continue
            print(f"  {label:>16}: {ms:7.1f} ms vs {base:5.1f} ms = {ms / base:4.1f} point reads; {requests:.0f} "
                  f"Table requests (target ≤ 5 point reads: {'met' if ms / base <= 5 else 'missed'}){note}")
        # The page's own work without storage: the same snapshot and work-list page, rendered only.
        data = service.snapshot(NOW)
        work = service.work_list.page(owner=some_key)
        context = dashboard_page.PageContext(data=data, work=work, filters=dashboard_page.Filters(owner=some_key))
        render_ms, _, base = timed(lambda: dashboard_page.render(context), args.runs, counter, point)
        print(f"  {'HTML + SVG only':>16}: {render_ms:7.1f} ms vs {base:5.1f} ms = {render_ms / base:4.1f} point reads "
              "(templates and charts drawn afresh, no storage)")


if __name__ == "__main__":
    main()
