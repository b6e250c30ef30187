"""`crmflow` command line (also `python -m shared.cli`). Each subcommand lives in shared/devtools/commands/<name>.py."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from shared.domain.errors import CrmflowError

# Modules under shared/commands, each exposing `register(subparsers)` that adds one subcommand whose parser
# has `func=<callable(args) -> int>` set as a default.
COMMAND_MODULES = (
    "import_customers",
    "validate",
    "dry_run",
    "sweep",
    "demo",
    "serve",
    "dlq",
    "outbox",
    "customer",
    "tasks",
    "segments",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crmflow", description="CRM data in, timely actions out.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"shared.devtools.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except CrmflowError as exc:
        print(f"crmflow {args.command}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
