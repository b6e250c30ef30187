"""Import throughput into Azurite: batched transactions vs one-by-one upserts, measured in the same run.

    .venv/bin/python bench/import.py [--customers 20000] [--baseline-sample 2000] [--runs 3]

Generates sample customers (shared.devtools.sample_data), writes them to a CSV, then imports it with `import_customers`
(parse + map + batched upserts, ≤ 100 per partition transaction) into a fresh table each run. The baseline upserts
a sample of the same customers one entity per request. Both run twice: straight against Azurite on loopback, and
through a proxy adding a round-trip delay (--rtt-ms, default 4 ms: an import from a machine in the same Azure
region), since loopback has no latency for batching to save. Prints medians and ratios (target ≥ 5×).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the repo

from bench.latency_proxy import LatencyProxy
from shared.container import Container
from shared.customers.importer import import_customers
from shared.customers.reader import read_customers_file
from shared.devtools.localstack import Azurite
from shared.devtools.sample_data import CUSTOMER_HEADER, PURCHASE_HEADER, customer_rows
from shared.settings import Settings
from shared.storage.tables import azurite_connection_string


def fresh_container(port: int) -> Container:
    settings = Settings.from_env({"TABLES_CONNECTION_STRING": azurite_connection_string(port),
                                  "TABLE_PREFIX": "b" + uuid.uuid4().hex[:10]})
    container = Container(settings)
    container.tables.ensure_tables()
    return container


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--baseline-sample", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rtt-ms", type=float, default=4.0, help="emulated round trip to Azure (default 4 ms)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, Azurite(in_memory=True) as azurite:
        customers_csv, purchases_csv = Path(tmp) / "customers.csv", Path(tmp) / "purchases.csv"
        rows, purchases = customer_rows(args.customers)
        for path, header, data in ((customers_csv, CUSTOMER_HEADER, rows), (purchases_csv, PURCHASE_HEADER, purchases)):
            with path.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                writer.writerows(data)
        sample = read_customers_file(customers_csv, purchases_path=purchases_csv).customers[:args.baseline_sample]

        results = {}
        with LatencyProxy(azurite.port, args.rtt_ms) as proxy:
            for label, port in (("loopback", azurite.port), (f"{args.rtt_ms:g} ms RTT", proxy.port)):
                batched, single = [], []
                for run in range(args.runs):
                    container = fresh_container(port)
                    started = time.perf_counter()
                    report = import_customers(container.customers, customers_csv, purchases_path=purchases_csv)
                    elapsed = time.perf_counter() - started
                    assert report.imported == args.customers and not report.errors, report.errors[:3]
                    batched.append(report.imported / elapsed)

                    container = fresh_container(port)
                    started = time.perf_counter()
                    for customer in sample:
                        container.customers.upsert_one(customer)
                    single.append(len(sample) / (time.perf_counter() - started))
                    print(f"{label} run {run + 1}: batched import {batched[-1]:,.0f} rows/s "
                          f"(parse+map+store {args.customers:,}), one-by-one upserts {single[-1]:,.0f} rows/s "
                          f"({len(sample):,} rows)", flush=True)
                results[label] = statistics.median(batched), statistics.median(single)

    for label, (b, s) in results.items():
        print(f"median {label}: batched {b:,.0f} rows/s, one-by-one {s:,.0f} rows/s, ratio {b / s:.1f}x "
              "(target >= 5x)")


if __name__ == "__main__":
    main()
