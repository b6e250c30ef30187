"""`crmflow dlq list|replay [--queue NAME] [--id ID ...]`: inspect and replay dead-lettered messages.

Lists ids, reasons and counts only, never bodies: a message may hold a customer's personal data.
"""

from __future__ import annotations

import argparse
import os
import sys

from shared.broker.port import Broker
from shared.broker.replay import original_message_id
from shared.container import Container
from shared.domain.names import QUEUES
from shared.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dlq", help="list or replay dead-lettered messages")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, help_text in (("list", "list dead letters (no bodies)"),
                              ("replay", "move dead letters back onto their queue")):
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument("--queue", action="append", choices=QUEUES, metavar="NAME",
                         help=f"queue to act on (repeatable; default all: {', '.join(QUEUES)})")
        sub.add_argument("--id", action="append", dest="ids", metavar="ID",
                         help="only these message ids (repeatable; a replayed id's original works too)")
        sub.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shared.devtools.commands._local import load_local_settings

    load_local_settings()
    broker = Container(Settings.from_env(_broker_env())).broker
    try:
        if args.action == "list":
            return list_dead_letters(broker, args.queue or list(QUEUES), args.ids)
        return replay(broker, args.queue or list(QUEUES), args.ids)
    finally:
        broker.close()


def _broker_env() -> dict[str, str]:
    """The environment, with a placeholder for Table Storage: the DLQ commands never touch tables."""
    env = dict(os.environ)
    if not (env.get("TABLES_CONNECTION_STRING") or env.get("TABLES_ACCOUNT_URL")):
        env["TABLES_CONNECTION_STRING"] = "unused-by-dlq"
    return env


def list_dead_letters(broker: Broker, queues: list[str], ids: list[str] | None, out=None) -> int:
    out = out or sys.stdout
    wanted = _wanted(ids)
    rows = []
    for queue in queues:
        for m in broker.peek_dead_letters(queue, max_messages=1000):
            if wanted is None or m.message_id in wanted or original_message_id(m.message_id) in wanted:
                rows.append((m.message_id, queue, m.dead_letter_reason or "", m.dead_letter_description or "",
                             str(m.delivery_count), m.enqueued_at.isoformat(timespec="seconds")))
    if not rows:
        print("no dead letters", file=out)
        return 0
    header = ("id", "queue", "reason", "description", "deliveries", "enqueued (UTC)")
    widths = [min(60, max(len(r[i]) for r in [header, *rows])) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell[:60].ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)
    print(f"{len(rows)} dead letter(s)", file=out)
    return 0


def replay(broker: Broker, queues: list[str], ids: list[str] | None, out=None) -> int:
    out = out or sys.stdout
    wanted = _wanted(ids)
    total = 0
    for queue in queues:
        selected = None
        if wanted is not None:
            selected = [m.message_id for m in broker.peek_dead_letters(queue, max_messages=1000)
                        if m.message_id in wanted or original_message_id(m.message_id) in wanted]
            if not selected:
                continue
        moved = broker.replay_dead_letters(queue, selected)
        if moved:
            print(f"{queue}: replayed {moved}", file=out)
        total += moved
    print(f"replayed {total} message(s)", file=out)
    return 0


def _wanted(ids: list[str] | None) -> set[str] | None:
    return set(ids) if ids else None
