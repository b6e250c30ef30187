"""crmflow segments --input FILE.csv|FILE.json [--purchases FILE.csv] [--today D] [--segments FILE] [--format text|json]

How many customers each RFM label and score gets on D (default today), with the thresholds and labels of
segments.yaml: check a change to the file against real data before rules use it. Nothing is stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from shared.customers.reader import RowError, iter_customers
from shared.devtools.commands._local import offline_settings
from shared.devtools.commands._time import _day
from shared.devtools.progress import Progress, count_lines
from shared.segments.config import SegmentProblems, load_segments
from shared.segments.summary import count_segments

MAX_ERRORS_SHOWN = 50
PROGRESS_FROM_BYTES = 1 << 20  # files smaller than this finish before a bar is worth drawing


def register(subparsers) -> None:
    parser = subparsers.add_parser("segments", help="count customers per RFM label and score",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="customers .csv, .json (array) or .jsonl")
    parser.add_argument("--purchases", type=Path, help="purchases/deals CSV for a CSV input")
    parser.add_argument("--mapping", type=Path, help="CSV column mapping (default mappings/csv_default.yaml)")
    parser.add_argument("--segments", type=Path, help="segments file (default: SEGMENTS_FILE, segments.yaml)")
    parser.add_argument("--today", type=_day, metavar="YYYY-MM-DD", help="the day to score on (default today)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = offline_settings()
    try:
        segments = load_segments(args.segments or settings.segments_file)
    except SegmentProblems as exc:
        print(exc.message, file=sys.stderr)
        return 1
    today = args.today or date.today()
    errors: list[RowError] = []
    customers = (customer for _, customer in iter_customers(
        args.input, mapping_path=args.mapping, purchases_path=args.purchases, errors=errors, today=today))
    progress = None
    if args.input.is_file() and args.input.stat().st_size >= PROGRESS_FROM_BYTES:
        progress = Progress("scoring", total=max(count_lines(args.input) - 1, 1))
    counts = count_segments(customers, segments, today, on_customer=progress.advance if progress else None)
    if progress is not None:
        progress.close()
    result = counts.to_dict(segments.labels)
    if args.format == "json":
        print(json.dumps({"today": today.isoformat(), **result}, ensure_ascii=False, indent=2))
    else:
        total = max(counts.customers, 1)
        print(f"{counts.customers:,} customers on {today.isoformat()} ({segments.file or 'shipped defaults'})")
        print(f"{'LABEL':<16}{'CUSTOMERS':>10}{'SHARE':>8}")
        for label, n in result["by_label"].items():
            print(f"{label:<16}{n:>10,}{n / total:>8.1%}")
        print(f"\n{'SCORE (r f m)':<16}{'CUSTOMERS':>10}{'SHARE':>8}  LABEL")
        for score, n in result["by_score"].items():
            label = segments.label_of(*(int(digit) for digit in score))
            print(f"{score:<16}{n:>10,}{n / total:>8.1%}  {label}")
    for error in errors[:MAX_ERRORS_SHOWN]:
        print(f"  rejected {error}", file=sys.stderr)
    if len(errors) > MAX_ERRORS_SHOWN:
        print(f"  ... and {len(errors) - MAX_ERRORS_SHOWN:,} more rejected rows", file=sys.stderr)
    return 1 if errors else 0
