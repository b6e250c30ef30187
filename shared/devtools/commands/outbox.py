"""crmflow outbox: what the local outbox transport wrote (mails as .eml, Teams payloads as JSON)."""

from __future__ import annotations

import argparse
import json
import os

from shared.delivery.transports import list_outbox
from shared.devtools.commands._local import load_local_settings
from shared.settings import Settings


def register(subparsers) -> None:
    parser = subparsers.add_parser("outbox", help="list mails and Teams messages written by the local outbox",
                                   description=__doc__)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    load_local_settings()
    local_dir = Settings.from_env({**os.environ, "TABLES_CONNECTION_STRING": "-"}).local_dir
    directory = local_dir / "outbox"
    rows = list_outbox(directory)
    if args.format == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print(f"outbox is empty ({directory})")
        return 0
    for row in rows:
        print(f"{row['channel']:<6} {row['bytes']:>7,} B  {row['path']}  {row['subject']}")
    print(f"{len(rows)} file(s) in {directory}")
    return 0
