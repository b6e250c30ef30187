"""crmflow demo: a fresh local stack, the sample customers imported, and what the system makes of them."""

from __future__ import annotations

import argparse
import shutil

from shared.commands._local import local_stack
from shared.importer import format_summary, import_customers, summarize
from shared.progress import Progress
from shared.sample_data import SAMPLES
from shared.settings import Settings


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the whole flow locally on the sample customers",
                                   description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep earlier local data instead of starting fresh")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    local_dir = Settings.from_env({"TABLES_CONNECTION_STRING": "-"}).local_dir
    if not args.keep:
        shutil.rmtree(local_dir / "azurite", ignore_errors=True)
    with local_stack() as container:
        print("== 1. import samples/customers.csv + samples/purchases.csv")
        report = import_customers(container.customers, SAMPLES / "customers.csv",
                                  purchases_path=SAMPLES / "purchases.csv", progress=Progress("importing"))
        print(f"imported {report.imported:,} customers, {report.rejected} rows rejected")
        for error in report.errors:
            print(f"  {error}")
        customers = list(container.customers.iter_all())
        print(format_summary(summarize(customers), len(customers)))
        print("== delivery: a renewal mail and its FYI card through the local outbox")
        from shared.delivery.samples import deliver_samples

        for line in deliver_samples(container):
            print(f"  {line}")
        print(f"  open them: {container.settings.local_dir / 'outbox'} (crmflow outbox lists them)")
    return 0 if not report.errors else 1
