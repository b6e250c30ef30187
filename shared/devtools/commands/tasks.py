"""crmflow tasks [--customer ID] [--owner EMAIL] [--format table|json]: the CRM tasks crmflow wrote.

With CRM_TASK_TARGET=local (the default) the local Tasks table; with CRM_TASK_TARGET=dataverse and DATAVERSE_URL the
tasks crmflow created in Dataverse (found by their `crmflow:` stamp). Subjects name customers: they are printed to
this terminal only, never logged.
"""

from __future__ import annotations

import argparse
import json

from shared.crm.tasks import WrittenTask, list_dataverse_tasks, list_local_tasks
from shared.customers.importer import display_width
from shared.devtools.commands._local import local_stack


def register(subparsers) -> None:
    parser = subparsers.add_parser("tasks", help="list the CRM tasks crmflow wrote (local Tasks table or Dataverse)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customer", metavar="ID", help="only this customer's tasks")
    parser.add_argument("--owner", metavar="EMAIL", help="only tasks of this owner (the rep's e-mail)")
    parser.add_argument("--limit", type=int, default=500, help="at most this many (default 500)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with local_stack(quiet=True) as container:
        settings = container.settings
        if settings.crm_task_target == "dataverse" and container.dataverse is not None:
            tasks = list_dataverse_tasks(container.dataverse, customer_id=args.customer, owner_email=args.owner,
                                         limit=args.limit)
            where = f"Dataverse ({settings.dataverse_url})"
        else:
            tasks = list_local_tasks(container.storage, customer_id=args.customer, owner_email=args.owner,
                                     limit=args.limit)
            where = "the local Tasks table"
    if args.format == "json":
        print(json.dumps([t.to_dict() for t in tasks], ensure_ascii=False, indent=2))
        return 0
    print(format_tasks(tasks, where))
    return 0


def format_tasks(tasks: list[WrittenTask], where: str) -> str:
    if not tasks:
        return f"no tasks in {where}"
    header = ("DUE", "CUSTOMER", "STATUS", "OWNER", "RULE", "SUBJECT")
    rows = [(t.due or "-", t.customer_id or "-", t.status or "-", t.owner or "-", t.rule or "-", t.subject)
            for t in tasks]
    widths = [max(display_width(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    lines = ["  ".join(f"{cell}{' ' * (width - display_width(cell))}" for cell, width in zip(row, widths, strict=False))
             + "  " + row[-1] for row in (header, *rows)]
    lines.append(f"{len(tasks)} task{'s' if len(tasks) != 1 else ''} in {where}")
    return "\n".join(lines)
