"""Contact-cap bookkeeping cost per planned action, against the same sweep without caps, in one run over Azurite.

    .venv/bin/python bench/contact_caps.py [--customers 2000] [--runs 3]

Generated customers (shared.devtools.sample_data) are imported once; each run sweeps them twice on a fresh ledger
and broker, once with the contact policy (contact_policy.yaml + the rules under rules/ and five competing
promotional campaigns) and once with the same rules and no caps, alternated. Reported: table requests and wall time
per planned action for both, and the difference (what the caps cost).
"""

from __future__ import annotations

import argparse
import shutil
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
from shared.domain.names import CONTACT_LOG, OPPORTUNITIES
from shared.settings import APP_ROOT, Settings
from shared.storage.tables import TableAccess

PROMOTIONS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "contact" / "rules" / "promotions.yaml"


def sweep(settings: Settings, capped: bool) -> dict:
    from shared.devtools.commands.sweep import run_sweep

    for table in (OPPORTUNITIES, CONTACT_LOG):  # a fresh ledger and contact log each run
        Container(settings).tables.service.delete_table(f"{settings.table_prefix}{table}")
    Container(settings).tables.ensure_tables()
    run = settings.replace(local_dir=settings.local_dir / uuid.uuid4().hex[:8])
    requests: Counter = Counter()
    container = Container(run)
    container.tables = TableAccess(run, raw_response_hook=lambda r: requests.update([r.http_request.method]))
    container.planner.reps = None  # rep digests are not what is measured here
    if not capped:
        container.planner.contact = None
    container.evaluator  # noqa: B018 - load the rules outside the timing
    started = time.perf_counter()
    report = run_sweep(container, DEMO_NOW)
    elapsed = time.perf_counter() - started
    actions = sum(n for key, n in report.by_channel.items())
    return {"seconds": elapsed, "requests": sum(requests.values()), "actions": actions, "report": report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir, Azurite(in_memory=True) as azurite:
        tmp = Path(tmp_dir)
        rules = tmp / "rules"
        shutil.copytree(APP_ROOT / "rules", rules)
        shutil.copy(PROMOTIONS, rules / "promotions.yaml")
        customers_csv, purchases_csv = write_samples(args.customers, tmp / "samples")
        settings = Settings.from_env({"TABLES_CONNECTION_STRING": azurite.connection_string,
                                      "TABLE_PREFIX": "b" + uuid.uuid4().hex[:8], "LOCAL_DIR": str(tmp / "l"),
                                      "RULES_DIR": str(rules), "CUSTOMER_SHARDS": "8",
                                      "UNSUBSCRIBE_SIGNING_KEY": "bench-only-key-0123456789abcdef"})
        Container(settings).tables.ensure_tables()
        imported = import_customers(Container(settings).customers, customers_csv, purchases_path=purchases_csv)
        print(f"{imported.imported:,} customers imported into Azurite", flush=True)
        results: dict[bool, list[dict]] = {True: [], False: []}
        for run in range(args.runs):
            for capped in (False, True):
                result = sweep(settings, capped)
                results[capped].append(result)
                print(f"run {run + 1}, {'capped  ' if capped else 'uncapped'}: {result['actions']:,} actions, "
                      f"{result['requests']:,} table requests, {result['seconds']:.2f}s", flush=True)
        capped_report = results[True][-1]["report"]
        print(f"\ncapped run statuses: {dict(capped_report.by_channel)}")
        per = {c: (statistics.median(r["requests"] / r["actions"] for r in results[c]),
                   statistics.median(r["seconds"] / r["actions"] * 1e3 for r in results[c])) for c in results}
        print(f"per planned action: uncapped {per[False][0]:.3f} table requests, {per[False][1]:.3f} ms; "
              f"capped {per[True][0]:.3f} table requests, {per[True][1]:.3f} ms")
        print(f"cap bookkeeping cost: {per[True][0] - per[False][0]:+.3f} table requests and "
              f"{per[True][1] - per[False][1]:+.3f} ms per planned action "
              f"({per[True][1] / per[False][1]:.2f}x the uncapped time)")


if __name__ == "__main__":
    main()
