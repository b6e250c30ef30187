"""crmflow sweep [--today YYYY-MM-DD | --now ISO-8601] [--workers N]: run one whole sweep now, with progress."""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime

from shared.container import Container
from shared.devtools.commands._local import local_stack
from shared.devtools.commands._time import add_time_options, resolve_time
from shared.devtools.progress import Progress
from shared.pipeline.planner import PlanReport, summarize_reports
from shared.pipeline.sweep import ShardTask, evaluate_shards


def register(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="evaluate every customer against the sweep rules now",
                                   description=__doc__)
    add_time_options(parser)
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the shards (default 1)")
    parser.set_defaults(func=run)


def run_sweep(container: Container, now: datetime, today: date | None = None, workers: int = 1,
              progress: Progress | None = None) -> PlanReport:
    """Evaluate every shard (in this process, or spread over `workers` processes) and plan what fires."""
    shards = list(range(container.settings.customer_shards))
    reports = []
    if workers <= 1:
        tasks = [ShardTask(shard, now, today) for shard in shards]
        for report in evaluate_shards(container.customers, container.evaluator, container.planner, tasks,
                                      journeys=container.journeys):
            reports.append(report)
            if progress:
                progress.advance()
        return summarize_reports(reports)
    # A few shards a task: a worker reads each next shard of its run while it evaluates one, and the runs are
    # short enough that the workers finish together.
    runs = [shards[start:start + WORKER_RUN] for start in range(0, len(shards), WORKER_RUN)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_evaluate_in_worker, container.settings, run, now, today) for run in runs]
        for future in futures:
            done = future.result()
            reports.extend(done)
            if progress:
                progress.advance(len(done))
    return summarize_reports(reports)


WORKER_RUN = 4  # shards a worker process evaluates one after another
_worker_container: Container | None = None


def _evaluate_in_worker(settings, shards: list[int], now: datetime, today: date | None) -> list[PlanReport]:
    global _worker_container
    if _worker_container is None:  # one container per worker process, like one per Functions instance
        _worker_container = Container(settings)
    c = _worker_container
    tasks = [ShardTask(shard, now, today) for shard in shards]
    return list(evaluate_shards(c.customers, c.evaluator, c.planner, tasks, journeys=c.journeys))


def format_report(report: PlanReport) -> str:
    lines = [f"{report.customers:,} customers evaluated, {report.firings:,} firings: {report.planned:,} newly "
             f"planned, {report.already_planned:,} already planned, {report.recovered:,} recovered; "
             f"{report.messages:,} messages queued"]
    for title, counter in (("rule", report.by_rule), ("channel", report.by_channel), ("status", report.by_status)):
        if counter:
            lines.append(f"  per {title}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counter.items())))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    now, today = resolve_time(args)
    with local_stack() as container:
        container.evaluator  # load and validate the rules before any work  # noqa: B018
        progress = Progress("sweeping shards", total=container.settings.customer_shards)
        report = run_sweep(container, now, today, args.workers, progress)
        progress.close()
        snapshot = container.dashboard.refresh(datetime.now(UTC))
    print(format_report(report), file=sys.stdout)
    print(f"dashboard snapshot refreshed: {snapshot.open_items:,} open opportunities in the work list "
          f"({snapshot.seconds:.1f} s)", file=sys.stdout)
    return 0
