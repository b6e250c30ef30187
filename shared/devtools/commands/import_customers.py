"""crmflow import customers.csv [--purchases purchases.csv] [--mapping FILE] [--encoding ENC]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.customers.importer import import_customers
from shared.devtools.commands._local import local_stack
from shared.devtools.progress import Progress, count_lines

MAX_ERRORS_SHOWN = 50


def register(subparsers) -> None:
    parser = subparsers.add_parser("import", help="import customers (CSV or JSON) into the customer store",
                                   description=__doc__)
    parser.add_argument("customers", type=Path, help="customers .csv, .json or .jsonl")
    parser.add_argument("--purchases", type=Path, help="purchases/deals CSV linked by customer id or email")
    parser.add_argument("--mapping", type=Path, help="CSV column mapping (default mappings/csv_default.yaml)")
    parser.add_argument("--encoding", help="file encoding (default: detect UTF-8, UTF-8 with BOM or CP932)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with local_stack() as container:
        progress = Progress("importing", total=max(count_lines(args.customers) - 1, 1))
        report = import_customers(container.customers, args.customers, purchases_path=args.purchases,
                                  mapping_path=args.mapping, encoding=args.encoding, progress=progress)
    rate = report.imported / report.seconds if report.seconds else 0
    print(f"imported {report.imported:,} customers in {report.seconds:.1f}s ({rate:,.0f}/s); "
          f"{report.rejected:,} rows rejected, {len(report.warnings):,} warnings")
    for found in (report.errors, report.warnings):
        for problem in found[:MAX_ERRORS_SHOWN]:
            print(f"  {problem}", file=sys.stderr)
        if len(found) > MAX_ERRORS_SHOWN:
            print(f"  ... and {len(found) - MAX_ERRORS_SHOWN:,} more", file=sys.stderr)
    # Non-zero when any row was rejected, so scripts notice; the good rows are imported all the same. Warnings
    # (rows kept, e.g. an address no mail can go to) do not fail the import.
    return 1 if report.rejected else 0
