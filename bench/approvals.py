"""What approvals cost, over Azurite and the local broker, against baselines measured in the same run.

    .venv/bin/python bench/approvals.py [--customers 300] [--runs 3]

1. Planning: the renewal firing of N customers whose mail needs approval (one approval insert + one request card
   each) versus the same N customers without the flag (the mail queued at once). Median ms per firing, the ratio,
   and Table writes per firing.
2. Deciding: median latency of one approve (token check, read, ETag swap, publish, mark published, ledger update)
   versus one Table point read (the floor of any request that touches storage).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the repo

from shared.container import Container
from shared.devtools.localstack import Azurite
from shared.devtools.sample_data import DEMO_NOW
from shared.domain.model import Customer
from shared.domain.names import APPROVALS
from shared.domain.vocabulary import Decision
from shared.settings import Settings
from shared.storage.tables import TableAccess
from tests.approval_support import CUSTOMER

WRITE_METHODS = {"POST", "PUT", "PATCH", "MERGE", "DELETE"}


def stack(base: dict, tmp: Path, writes: Counter) -> Container:
    settings = Settings.from_env({**base, "TABLE_PREFIX": "b" + uuid.uuid4().hex[:8],
                                  "LOCAL_DIR": str(tmp / uuid.uuid4().hex[:8])})
    container = Container(settings)
    container.tables = TableAccess(settings, raw_response_hook=lambda r: writes.update([r.http_request.method]))
    container.tables.ensure_tables()
    return container


def customers(count: int, needs_approval: bool) -> list[Customer]:
    return [Customer.from_dict({**CUSTOMER, "id": f"C-B{i:05d}", "requires_approval": needs_approval})
            for i in range(count)]


def plan_ms(container: Container, people: list[Customer]) -> float:
    """Evaluate and plan every customer (one batch, as a shard does); ms per firing."""
    pairs = [(c, f) for c in people for f in container.evaluator.evaluate(c, now=DEMO_NOW, trigger="sweep")]
    started = time.perf_counter()
    container.planner.plan(pairs, DEMO_NOW)
    return (time.perf_counter() - started) * 1000 / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_dir, Azurite(in_memory=True) as azurite:
        tmp = Path(tmp_dir)
        base = {"TABLES_CONNECTION_STRING": azurite.connection_string, "CUSTOMER_SHARDS": "4",
                "UNSUBSCRIBE_SIGNING_KEY": "bench-only-key-0123456789abcdef"}
        timings: dict[bool, list[float]] = {False: [], True: []}
        writes: dict[bool, Counter] = {False: Counter(), True: Counter()}
        approved_stack = None
        for _ in range(args.runs):
            for held in (False, True):  # alternated, so drift hits both alike
                counter = Counter()
                container = stack(base, tmp, counter)
                container.evaluator  # noqa: B018 - load the rules outside the timing
                people = customers(args.customers, held)
                container.customers.upsert_many(people)
                counter.clear()
                timings[held].append(plan_ms(container, people))
                writes[held] = counter
                approved_stack = container if held else approved_stack
        plain, held = statistics.median(timings[False]), statistics.median(timings[True])
        w_plain = sum(n for m, n in writes[False].items() if m in WRITE_METHODS) / args.customers
        w_held = sum(n for m, n in writes[True].items() if m in WRITE_METHODS) / args.customers
        print(f"planning {args.customers} renewal firings x {args.runs} runs: queued at once {plain:.2f} ms/firing "
              f"({w_plain:.2f} table writes), held for approval {held:.2f} ms/firing ({w_held:.2f} table writes); "
              f"ratio {held / plain:.2f}x")

        container = approved_stack
        flow = container.approvals
        rows = list(container.tables.table(APPROVALS).list_entities(select=["PartitionKey"]))
        ids = [row["PartitionKey"] for row in rows]
        tokens = {i: flow.link(i, DEMO_NOW).split("token=")[1] for i in ids}
        reads, decides = [], []
        client = container.tables.table(APPROVALS)
        for approval_id in ids:
            started = time.perf_counter()
            client.get_entity(approval_id, "approval")
            reads.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            flow.decide(approval_id, tokens[approval_id], Decision.APPROVE, DEMO_NOW)
            decides.append((time.perf_counter() - started) * 1000)
        read, decide = statistics.median(reads), statistics.median(decides)
        print(f"deciding {len(ids)} approvals: approve {decide:.2f} ms median vs one table read {read:.2f} ms; "
              f"ratio {decide / read:.1f}x (6 storage round trips + 1 publish)")


if __name__ == "__main__":
    main()
