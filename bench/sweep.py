"""The daily sweep over Azurite: storage and broker operations per customer, and fan-out across processes.

    .venv/bin/python bench/sweep.py [--customers 10000] [--runs 3] [--journey-only | --no-journey]

1. Imports generated customers (shared.devtools.sample_data, every scenario) into Azurite once.
2. Operation counts (every Table request is counted through the SDK's response hook, every broker call through a
   counting wrapper): a first sweep on an empty ledger, then the same sweep again (nothing new to plan).
3. Throughput: whole sweeps with 1 and with 2 worker processes over the same data (fresh ledger and broker each
   run, runs alternated), medians and the ratio. After each 1-worker sweep, the baseline: the very ledger entities
   that sweep inserted (claim rows and outbox rows, recorded as they were written), inserted again into a fresh table
   of the same Azurite the way a competent Azure SDK user would — `TableClient.submit_transaction` with 100-entity
   batches of one partition — and the sweep's rate as a ratio of that (target >= 0.8x).
4. Journey cost, against the rules-only numbers of the same run (target <= 1.2x): a steady-state sweep (everything
   planned) with and without the journey, alternated; CRM change events (a usage update, planned with the change
   rules) with and without it; and, for scale, events that do move a customer (a new subscription deal: stage write,
   history, two actions claimed and published, pending cleared). `--journey-only` runs just this part.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the repo

from shared.container import Container
from shared.customers.importer import import_customers
from shared.devtools.localstack import Azurite
from shared.devtools.sample_data import DEMO_NOW, write_samples
from shared.domain.names import OPPORTUNITIES
from shared.settings import Settings
from shared.storage.backend import Op, group_batches
from shared.storage.tables import TableAccess

WRITE_METHODS = {"POST", "PUT", "PATCH", "MERGE", "DELETE"}


class CountingBroker:
    """The real broker, with its calls counted."""

    def __init__(self, real):
        self.real, self.calls, self.messages = real, 0, 0

    def publish(self, queue, messages):
        self.calls += 1
        self.messages += len(messages)
        return self.real.publish(queue, messages)

    def __getattr__(self, name):
        return getattr(self.real, name)


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of a process and its children so far (Linux /proc; 0 elsewhere)."""
    if pid is None:
        return 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        total = 0.0
        for process in [pid, *map(int, children)]:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total
    except (OSError, ValueError, IndexError):
        return 0.0


def counted_sweep(settings: Settings, azurite_pid: int | None = None) -> dict:
    from shared.devtools.commands.sweep import run_sweep

    requests: Counter = Counter()
    container = Container(settings)
    container.tables = TableAccess(settings, raw_response_hook=lambda r: requests.update([r.http_request.method]))
    container.broker = CountingBroker(container.broker)
    container.evaluator  # noqa: B018 - load the rules outside the timing
    azurite_before, cpu_before = process_cpu(azurite_pid), time.process_time()
    started = time.perf_counter()
    report = run_sweep(container, DEMO_NOW)
    elapsed = time.perf_counter() - started
    cpu, azurite_cpu = time.process_time() - cpu_before, process_cpu(azurite_pid) - azurite_before
    writes = sum(n for method, n in requests.items() if method in WRITE_METHODS)
    return {"report": report, "reads": requests["GET"], "writes": writes, "broker_calls": container.broker.calls,
            "messages": container.broker.messages, "seconds": elapsed, "cpu": cpu, "azurite_cpu": azurite_cpu}


def record_ledger_inserts(container: Container) -> list:
    """Every ledger operation the container's sweep inserts, recorded as it is submitted (for the baseline)."""
    recorded: list = []
    table = container.storage.table(OPPORTUNITIES)
    submit = table.submit

    def recording(operations):
        submit(operations)
        recorded.extend(op for op in operations if op.op is Op.INSERT)

    table.submit = recording
    return recorded


def bare_sdk_inserts(settings: Settings, operations: list) -> float:
    """Seconds the same Azurite takes to accept these entities in 100-entity `submit_transaction` batches of one
    partition each, written as a competent Azure SDK user would (fresh table, client built outside the timing)."""
    service = Container(settings).tables.service
    name = f"{settings.table_prefix}base{uuid.uuid4().hex[:6]}"
    client = service.create_table(name)
    batches = [[("create", op.entity) for op in batch] for batch in group_batches(operations, 100)]
    started = time.perf_counter()
    for batch in batches:
        client.submit_transaction(batch)
    elapsed = time.perf_counter() - started
    service.delete_table(name)
    return elapsed


def fresh_run_settings(base: Settings, tmp: Path) -> Settings:
    """Same customers, empty ledger, new broker file."""
    Container(base).tables.service.delete_table(f"{base.table_prefix}{OPPORTUNITIES}")
    Container(base).tables.ensure_tables()
    return base.replace(local_dir=tmp / uuid.uuid4().hex[:8])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--journey-only", action="store_true", help="only the journey cost (part 4)")
    parser.add_argument("--no-journey", action="store_true", help="skip the journey cost (part 4)")
    parser.add_argument("--events", type=int, default=300, help="change events per measurement (part 4)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_dir, Azurite(in_memory=True) as azurite:
        tmp = Path(tmp_dir)
        customers_csv, purchases_csv = write_samples(args.customers, tmp / "samples")
        settings = Settings.from_env({"TABLES_CONNECTION_STRING": azurite.connection_string,
                                      "TABLE_PREFIX": "b" + uuid.uuid4().hex[:8], "LOCAL_DIR": str(tmp / "l0"),
                                      "UNSUBSCRIBE_SIGNING_KEY": "bench-only-key-0123456789abcdef"})
        Container(settings).tables.ensure_tables()
        imported = import_customers(Container(settings).customers, customers_csv, purchases_path=purchases_csv)
        print(f"{imported.imported:,} customers imported into Azurite", flush=True)

        if args.journey_only:
            journey_cost(settings, args.runs, args.events)
            return
        pid = azurite.process.pid if azurite.process else None
        first = counted_sweep(settings, pid)
        again = counted_sweep(settings, pid)
        r = first["report"]
        actions = first["messages"]
        per10k = 10_000 / r.customers
        print(f"\nfirst sweep: {r.customers:,} customers, {r.firings:,} firings, {actions:,} messages published")
        print(f"  storage: {first['reads']:,} reads, {first['writes']:,} writes -> "
              f"{first['writes'] / actions:.2f} writes per planned action (target <= 3)")
        print(f"  broker:  {first['broker_calls']:,} publish calls -> {first['broker_calls'] / actions:.3f} per "
              f"planned action (target <= 1, amortised)")
        print(f"second sweep (same day, everything already planned): {again['writes']:,} writes, "
              f"{again['broker_calls']:,} broker calls, {again['reads'] * per10k:,.0f} reads per 10,000 customers "
              f"(target: 0 writes for customers with nothing new)")
        print(f"  throughput, 1 worker: first sweep {r.customers / first['seconds']:,.0f} customers/s "
              f"({r.firings / r.customers:.2f} firings per customer), re-run "
              f"{r.customers / again['seconds']:,.0f} customers/s")
        for name, run in (("first sweep", first), ("re-run", again)):
            print(f"  CPU, {name}: this process {run['cpu']:.2f}s ({r.customers / run['cpu']:,.0f} customers/s of "
                  f"its CPU), Azurite {run['azurite_cpu']:.2f}s (wall time on a busy machine is mostly waiting)")

        from shared.devtools.commands.sweep import run_sweep

        rates: dict[int, list[float]] = {1: [], 2: []}
        baseline_ratios: list[float] = []
        for run in range(args.runs):
            for workers in (1, 2):
                run_settings = fresh_run_settings(settings, tmp)
                container = Container(run_settings)
                container.evaluator, container.planner  # noqa: B018 - rules and clients outside the timing
                inserted = record_ledger_inserts(container) if workers == 1 else []
                started = time.perf_counter()
                report = run_sweep(container, DEMO_NOW, workers=workers)
                elapsed = time.perf_counter() - started
                rates[workers].append(report.customers / elapsed)
                print(f"run {run + 1}, {workers} worker(s): {report.customers / elapsed:,.0f} customers/s "
                      f"({report.planned:,} firings planned in {elapsed:.1f}s)", flush=True)
                if workers == 1:
                    bare = bare_sdk_inserts(run_settings, inserted)
                    baseline_ratios.append(bare / elapsed)
                    print(f"  baseline: the same {len(inserted):,} ledger entities in bare 100-entity "
                          f"submit_transaction batches: {bare:.1f}s ({report.planned / bare:,.0f} firings/s); "
                          f"the sweep planned {report.planned / elapsed:,.0f} firings/s = {bare / elapsed:.2f}x",
                          flush=True)
        one, two = statistics.median(rates[1]), statistics.median(rates[2])
        print(f"\nmedian: 1 worker {one:,.0f} customers/s, 2 workers {two:,.0f} customers/s, "
              f"ratio {two / one:.2f}x (target >= 1.6x)")
        print(f"median first sweep vs bare SDK inserts of its ledger entities: "
              f"{statistics.median(baseline_ratios):.2f}x (target >= 0.8x)")
        if not args.no_journey:
            journey_cost(settings, args.runs, args.events)


def journey_cost(settings: Settings, runs: int, events: int) -> None:
    """Part 4: journey on vs off, same data, same process, alternated runs."""
    from shared.devtools.commands.sweep import run_sweep
    from shared.domain.events import CrmEvent
    from shared.pipeline.changes import handle_crm_event

    def container(with_journey: bool) -> Container:
        built = Container(settings)
        # Build clients, rules and (for one side) the journey outside the timing, the same for both sides.
        built.evaluator, built.planner, built.customers, built.broker  # noqa: B018
        if not with_journey:
            built.journeys = None
        else:
            assert built.journeys is not None
        return built

    run_sweep(container(True), DEMO_NOW)  # plan (and move) whatever is due once: then both sides are steady
    sweep_seconds: dict[bool, list[float]] = {False: [], True: []}
    customers = 0
    for run in range(runs):
        for with_journey in ((False, True) if run % 2 == 0 else (True, False)):
            c = container(with_journey)
            started = time.perf_counter()
            customers = run_sweep(c, DEMO_NOW).customers
            sweep_seconds[with_journey].append((time.perf_counter() - started) / customers)
    rules, journey = (statistics.median(sweep_seconds[k]) * 1e6 for k in (False, True))
    print(f"\njourney, steady-state sweep of {customers:,} customers: rules only {rules:.0f} us per customer, "
          f"with the journey {journey:.0f} us ({journey / rules:.2f}x, target <= 1.2x)")

    ids = [c.id for c in Container(settings).customers.iter_all()]
    event_seconds: dict[bool, list[float]] = {False: [], True: []}
    batch = 0

    def run_events(c: Container, build, run: int) -> float:
        """`events` events for the customers of this run (both sides of a run change the same customers)."""
        nonlocal batch
        batch += 1
        chosen = ids[(run * events) % len(ids):][:events]
        started = time.perf_counter()
        for index, customer_id in enumerate(chosen):
            handle_crm_event(c.customers, c.evaluator, c.planner, build(customer_id, index), DEMO_NOW,
                             journeys=c.journeys)
        return (time.perf_counter() - started) / len(chosen)

    def usage(customer_id: str, index: int) -> CrmEvent:
        return CrmEvent(source="generic", entity="customer", record_id=customer_id, operation="update",
                        event_id=f"bench-{batch}-{index}", record={"id": customer_id,
                                                                    "usage": {"bench": batch * 100_000 + index}})

    for run in range(runs):
        for with_journey in ((False, True) if run % 2 == 0 else (True, False)):
            event_seconds[with_journey].append(run_events(container(with_journey), usage, run))
    rules, journey = (statistics.median(event_seconds[k]) * 1e3 for k in (False, True))
    print(f"journey, change events (usage update): rules only {rules:.2f} ms per event, with the journey "
          f"{journey:.2f} ms ({journey / rules:.2f}x, target <= 1.2x)")

    def new_deal(customer_id: str, index: int) -> CrmEvent:
        return CrmEvent(source="generic", entity="customer", record_id=customer_id, operation="update",
                        event_id=f"bench-deal-{batch}-{index}", record={"id": customer_id, "stage": None, "deals": [
                            {"id": f"BENCH-{batch}-{index}", "type": "subscription_new", "stage": "open"}]})

    moving = run_events(container(True), new_deal, runs) * 1e3
    print(f"journey, change events that move the customer (new subscription deal -> contract, 2 actions): "
          f"{moving:.2f} ms per event ({moving / rules:.1f}x a rules-only event: 1 more customer write, "
          f"1 history insert, 1 ledger claim + publish)")


if __name__ == "__main__":
    main()
