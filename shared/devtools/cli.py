"""`crmflow` command line (also `python -m shared.cli`). Each subcommand lives in shared/devtools/commands/<name>.py."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from shared.domain.errors import CrmflowError

# Command name → module under shared/devtools/commands exposing `register(subparsers)`, which adds that one
# subcommand with `func=<callable(args) -> int>` set as a default.
COMMANDS = {
    "import": "import_customers",
    "validate": "validate",
    "dry-run": "dry_run",
    "sweep": "sweep",
    "demo": "demo",
    "serve": "serve",
    "dlq": "dlq",
    "outbox": "outbox",
    "customer": "customer",
    "tasks": "tasks",
    "segments": "segments",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser for every command, or for just `only` (a command runs without importing all the others: the
    storage SDKs alone take a second to import, which an offline dry-run or validate never needs)."""
    parser = argparse.ArgumentParser(prog="crmflow", description="CRM data in, timely actions out.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(f"shared.devtools.commands.{module}").register(subparsers)
    return parser


def _command(argv: list[str]) -> str | None:
    """The command `argv` names (its first argument that is not an option), when it is a known one."""
    name = next((arg for arg in argv if not arg.startswith("-")), None)
    return name if name in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command(argv)).parse_args(argv)
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
