"""Chaos run: planned actions through the real local stack while workers die, services fail and storage restarts.

    .venv/bin/python bench/chaos.py [--customers 3400] [--workers 3] [--threads 1] [--seed 7] [--timeout 7200]

What runs (nothing is mocked): Azurite (persistent, on a free port), the local SQLite broker, and worker processes
that run the functions registered on `function_app.app` (discovered by the local host, fed by the broker with
peek-lock, lock renewal and dead-lettering, as in Azure). The Graph, Bot Connector and token stand-ins of
`tests/standins` answer over real HTTP (tokens over TLS through MSAL). Every customer matches one chaos rule with three
actions (a Teams card to the owner, a mail to the customer, a CRM task), so `--customers 3400` plans 10,200 actions:
the daily sweep is published as `sweep-shards` messages and everything after that is the workers' own doing.

Faults, all at once:
- workers SIGKILL themselves at random points: after a ledger claim, after a broker publish, after a transport send
  (before the idempotency record is completed), after completing it; and the parent SIGKILLs a random worker every
  few seconds and starts a new one;
- the Graph and Bot stand-ins answer ~`--fault-rate` (20%) of requests with 429 + Retry-After, 503, a connection
  reset, or (Graph) carry the request out and then answer too late for the client's read timeout;
- Azurite is stopped (SIGINT, so it saves) and restarted once mid-run on the same port;
- messages are redelivered: besides the redeliveries the kills cause (lock expiry), some completions are turned into
  abandons, so a finished message is handed out again.
Time is scaled so it ends in minutes: 0.05–0.4 s Retry-After, 2 s broker locks, 3 s idempotency leases, 1 s settle time
before an uncertain mail is retried, 0.3 s in the Outbox, backoff from 0.05 s up to 2 s.

Reconciliation, from the stand-ins' own records (Graph: mails that left the mailbox, by their dedupe property; Bot:
posted activities, by the card's marker) and the Tasks table, against the planned actions in the Opportunities ledger
(and the customers, which must all have been planned): every planned action delivered exactly once, or dead-lettered
/ recorded failed with a reason. Prints planned / delivered / dead-lettered / lost / duplicated; exits 1 unless lost
and duplicated are 0. Teams cards are at-least-once by design (the Bot Connector has no way to ask whether a post that
timed out or whose worker died was shown): a card repeated after such an uncertain attempt is counted apart
("repeated after an uncertain send"), never hidden.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing as mp
import os
import random
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from the repo

from shared.broker.local import LocalBroker  # noqa: E402
from shared.container import Container  # noqa: E402
from shared.delivery.idempotency import FAILED, TableDedupeStore  # noqa: E402
from shared.delivery.transports import DEDUPE_PROPERTY  # noqa: E402
from shared.devtools.localstack import Azurite  # noqa: E402
from shared.domain.messages import ActionMessage  # noqa: E402
from shared.domain.model import Customer  # noqa: E402
from shared.domain.names import CRM_TASKS, EMAIL, SWEEP_SHARDS, TASKS, TEAMS  # noqa: E402
from shared.pipeline.sweep import plan_sweep  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.standins import BotStandIn, Fault, GraphStandIn, TokenIssuer, TokenStandIn, self_signed_tls  # noqa: E402

QUEUES = (SWEEP_SHARDS, TEAMS, EMAIL, CRM_TASKS)
ACTION_QUEUES = (TEAMS, EMAIL, CRM_TASKS)
MAILBOX = "crm-notify@contoso.example"
RULE_ID = "chaos-cross-sell"
MARKER = re.compile(r"chaos-card (CH\d+)")
KILL_POINTS = ("claim", "publish", "send", "complete")
LOG_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"

RULES = f"""\
- id: {RULE_ID}
  kind: cross_sell
  on: [sweep]
  when: "'A' in products"
  once: ever
  recommendation: "Offer product B"
  actions:
    - teams: owner
      template: chaos
    - email: customer
      template: chaos
    - crm_task: {{subject: "chaos task {{{{ customer.id }}}}", due_in_days: 7}}
"""
CARD = {"type": "AdaptiveCard", "version": "1.5", "fallbackText": "Chaos opportunity",
        "body": [{"type": "TextBlock", "text": "chaos-card {{ customer.id }}", "wrap": True},
                 {"type": "TextBlock", "text": "{{ customer.name }}: {{ recommendation }}", "wrap": True}]}
TEMPLATES = {
    "chaos.card.json": json.dumps(CARD),
    "chaos.subject.txt": "An offer for {{ customer.name }}",
    "chaos.txt": "Dear {{ customer.contact_name }}, chaos body for {{ customer.id }}.\n"
                 "Unsubscribe: {{ unsubscribe_url }}\n",
    "chaos.html": "<p>Dear {{ customer.contact_name }}, chaos body for {{ customer.id }}.</p>"
                  '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
}


@dataclass(frozen=True)
class ChaosConfig:
    customers: int = 3400
    workers: int = 3
    threads: int = 1  # concurrent invocations per queue and worker (the host's maxConcurrentCalls)
    # The production default. A sweep shard is claimed at its end, so a worker killed mid-shard wastes the whole
    # evaluation; small shards keep that waste (and the time before anything is planned) short under kills.
    shards: int = 64
    fault_rate: float = 0.2
    kill_rate: float = 0.004  # per kill point passed, per worker
    kill_every: float = 8.0  # seconds between the parent's SIGKILLs of a random worker
    redeliver_rate: float = 0.03  # completions turned into abandons
    restart_azurite_at: float = 0.4  # share of the actions delivered when Azurite is restarted
    seed: int = 7
    timeout: float = 7200.0  # the 10,200-action run took 74 minutes on a shared 2-core machine
    log_level: str = "INFO"  # of the workers' log files (DEBUG: everything, as the log scan wants)
    directory: Path | None = None  # keeps logs there (else a temporary directory)


@dataclass
class ChaosResult:
    expected: int = 0  # actions the customers must produce (3 each)
    planned: int = 0  # actions in the ledger with status planned
    delivered: int = 0  # distinct planned actions the stand-ins / Tasks table received
    dead_lettered: int = 0  # planned actions in a dead-letter queue or recorded failed, with a reason
    lost: int = 0
    duplicated: int = 0  # extra copies of email / crm_task actions, and Teams repeats without an uncertain send
    teams_repeats_after_uncertain: int = 0
    unplanned_deliveries: int = 0
    unplanned_samples: list = field(default_factory=list)  # what those were (dedupe key or "?": no stamp/marker)
    still_queued: int = 0  # planned, not delivered, its message still on the broker (only when the run timed out)
    timed_out: bool = False
    by_channel: dict = field(default_factory=dict)
    dead_letter_reasons: dict = field(default_factory=dict)
    faults: dict = field(default_factory=dict)
    kills: int = 0
    worker_kills: int = 0
    azurite_restarts: int = 0
    seconds: float = 0.0
    log_dir: str = ""

    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.unplanned_deliveries == 0 \
            and self.planned == self.expected and not self.timed_out


# --- fault injection on the stand-ins -------------------------------------------------------------------------
class RandomFaults:
    """A stand-in's `chaos` hook: about `rate` of the named routes' requests fail one of the given ways."""

    def __init__(self, rate: float, seed: int, routes: set[str], late: bool):
        self.rate, self.routes, self.late = rate, routes, late
        self.random = random.Random(seed)
        self.counts: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self, route: str) -> Fault | None:
        with self.lock:
            if route not in self.routes or self.random.random() >= self.rate:
                return None
            kinds = ["429", "503", "reset"] + (["late"] if self.late else [])
            kind = self.random.choice(kinds)
            self.counts[f"{route}:{kind}"] += 1
            retry_after = f"{self.random.uniform(0.05, 0.4):.2f}"
        if kind == "429":
            return Fault(status=429, headers={"Retry-After": retry_after})
        if kind == "503":
            return Fault(status=503)
        if kind == "reset":
            return Fault(kind="reset")
        return Fault(kind="late", delay=1.6)  # the client's read timeout is 1 s


# --- worker processes -------------------------------------------------------------------------------------------
def _worker(index: int, env: dict[str, str], ca: str, config: ChaosConfig, log_path: str) -> None:
    """One Function App instance: the registered queue functions, fed by the local broker, with kill points."""
    logging.basicConfig(filename=log_path, level=config.log_level, force=True, format=LOG_FORMAT)
    if config.log_level != "DEBUG":  # the Azure SDK logs every request at INFO: most of the file, and slow
        logging.getLogger("azure").setLevel(logging.WARNING)
    import function_app
    from devhost import LocalHost
    from shared.container import set_container
    from shared.delivery import service

    # Time-scaled backoff after transient failures (2 s doubling up to 15 min in production).
    service.BACKOFF_BASE, service.BACKOFF_CAP = 0.05, 2.0
    rng = random.Random(config.seed * 1000 + index * 7919 + os.getpid())
    container = Container(Settings.from_env(env))
    container.http_session.verify = ca
    container.http_session.trust_env = False
    broker = LocalBroker(container.settings.local_dir / "broker.sqlite3", lock_duration=timedelta(seconds=2),
                         poll_interval=0.25)
    container.__dict__.update(
        broker=broker, http_timeout=(2.0, 1.0),
        dedupe=TableDedupeStore(container.storage, lease=timedelta(seconds=3)))

    def die_sometimes(point: str) -> None:
        if rng.random() < config.kill_rate:
            logging.getLogger("chaos").warning("worker %d killing itself after %s", index, point)
            os.kill(os.getpid(), signal.SIGKILL)

    def after(obj, name: str, point: str) -> None:
        inner = getattr(obj, name)

        def wrapped(*args, **kwargs):
            result = inner(*args, **kwargs)
            die_sometimes(point)
            return result
        setattr(obj, name, wrapped)

    after(container.ledger, "claim", "claim")
    after(broker, "publish", "publish")
    for transport in container.delivery_transports.values():
        after(transport, "send", "send")
    after(container.dedupe, "complete", "complete")
    complete = broker.complete

    def complete_or_redeliver(message):
        if rng.random() < config.redeliver_rate:
            return broker.abandon(message)  # as if the completion were lost: the message comes back
        return complete(message)
    broker.complete = complete_or_redeliver

    host = LocalHost(function_app.app, container, port=0, receive_wait_seconds=1.0)
    set_container(container)
    threads = [threading.Thread(target=host._run_queue, args=(fn,), daemon=True)
               for fn in host.functions.queues for _ in range(config.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# --- the run ----------------------------------------------------------------------------------------------------
def write_catalog(directory: Path) -> tuple[Path, Path, Path]:
    """The run's own catalog: the chaos rule, its templates, and an empty journeys directory (the shipped journey
    names templates this catalog does not have, and would fail every shard at load)."""
    rules, templates, journeys = directory / "rules", directory / "templates" / "en-US", directory / "journeys"
    for path in (rules, templates, journeys):
        path.mkdir(parents=True)
    (rules / "chaos.yaml").write_text(RULES, encoding="utf-8")
    for name, text in TEMPLATES.items():
        (templates / name).write_text(text, encoding="utf-8")
    return rules, templates.parent, journeys


def run_env(work: Path, config: ChaosConfig, *, tables: str, authority: str, graph: str, bot: str) -> dict[str, str]:
    """The app settings of the run (its own catalog under `work`; the stand-ins' URLs; time-scaled limits)."""
    rules_dir, templates_dir, journeys_dir = write_catalog(work / "catalog")
    return {
        "TABLES_CONNECTION_STRING": tables, "LOCAL_DIR": str(work / "local"),
        "BROKER": "local", "DELIVERY_TRANSPORT": "live", "AUTHORITY_HOST": authority,
        "GRAPH_BASE_URL": graph, "BOT_SERVICE_URL": bot, "GRAPH_TENANT_ID": "tenant-1",
        "GRAPH_CLIENT_ID": "graph-app", "GRAPH_CLIENT_SECRET": "graph-secret", "BOT_APP_ID": "bot-app",
        "BOT_APP_SECRET": "bot-secret", "BOT_TENANT_ID": "tenant-1", "MAIL_SENDER": MAILBOX,
        "UNSUBSCRIBE_SIGNING_KEY": "chaos-signing-key-not-a-secret", "RULES_DIR": str(rules_dir),
        "JOURNEYS_DIR": str(journeys_dir), "TEMPLATES_DIR": str(templates_dir), "DEFAULT_LOCALE": "en-US",
        "CUSTOMER_SHARDS": str(config.shards),
        "BUSINESS_HOURS": "00:00-23:59", "BUSINESS_DAYS": "mon-sun", "MAIL_MESSAGES_PER_MINUTE": "10000",
        "MAIL_RECIPIENTS_PER_DAY": "1000000", "MAIL_CONCURRENT_REQUESTS": "64",
        "BOT_SENDS_PER_SECOND_PER_CONVERSATION": "1000", "BOT_REQUESTS_PER_SECOND": "1000",
        "MAIL_SEND_SETTLE_SECONDS": "1", "DELIVERY_MAX_ATTEMPTS": "12", "SWEEP_SCHEDULE": "0 0 0 1 1 *",
        "PUBLIC_BASE_URL": "https://crmflow.example",
    }


def chaos_customers(count: int) -> list[Customer]:
    """The customers of a run (their names, addresses and mail bodies are what the log scan looks for)."""
    return [Customer.from_dict({
        "id": f"CH{i:05d}", "name": f"Chaos Trading {i:05d} KK", "contact_name": f"Hanako Chaosuser{i:05d}",
        "email": f"chaos.customer{i:05d}@example.jp", "locale": "en-US", "timezone": "Asia/Tokyo",
        "products": ["A"], "owner": {"name": f"Rep {i % 40:02d}", "email": f"rep{i % 40:02d}@contoso.example",
                                     "aad_object_id": f"00000000-0000-0000-0000-{i % 40:012d}"}})
        for i in range(count)]


@contextlib.contextmanager
def _parent_log(path: Path, level: str):
    """The run's own process logs to `parent.log` beside the workers' (seeding, sweep, reconciliation): the log scan
    reads every line the run wrote."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root, azure = logging.getLogger(), logging.getLogger("azure")
    saved = root.level, azure.level
    root.addHandler(handler)
    root.setLevel(level)
    if level != "DEBUG":
        azure.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(saved[0])
        azure.setLevel(saved[1])


def run_chaos(config: ChaosConfig, progress=print) -> ChaosResult:
    work = Path(config.directory or tempfile.mkdtemp(prefix="crmflow-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    with _parent_log(logs / "parent.log", config.log_level):
        return _run(config, work, logs, progress)


def _run(config: ChaosConfig, work: Path, logs: Path, progress) -> ChaosResult:
    started = time.monotonic()
    result = ChaosResult(expected=3 * config.customers)
    result.log_dir = str(logs)
    issuer = TokenIssuer()
    tls, ca = self_signed_tls(work / "tls")
    azurite = Azurite(in_memory=False, location=work / "azurite").start()
    graph_faults = RandomFaults(config.fault_rate, config.seed, {"create", "patch", "send", "query"}, late=True)
    bot_faults = RandomFaults(config.fault_rate, config.seed + 1, {"conversations", "activities"}, late=False)
    processes: dict[int, mp.Process] = {}
    try:
        with TokenStandIn(issuer, tls, {"graph-app": "graph-secret", "bot-app": "bot-secret"}) as token, \
                GraphStandIn(issuer, limit=10**6, window=1.0, outbox_delay=0.3) as graph, \
                BotStandIn(issuer, per_conversation=10**6) as bot:
            graph.chaos, bot.chaos = graph_faults, bot_faults
            for standin in (token, graph, bot):  # a client that gave up (read timeout) is expected: no tracebacks
                standin.server.handle_error = lambda request, address: None
            env = run_env(work, config, tables=azurite.connection_string, authority=token.url,
                          graph=graph.url, bot=bot.url)
            settings = Settings.from_env(env)
            setup = Container(settings)
            # The workers load the same catalog: a rule, template or journey problem fails here, not in every shard.
            setup.ruleset, setup.journey  # noqa: B018
            setup.storage.ensure_tables()
            customers = chaos_customers(config.customers)
            setup.customers.upsert_many(customers)
            broker = LocalBroker(settings.local_dir / "broker.sqlite3")
            shards = plan_sweep(settings, broker, datetime.now(UTC))
            progress(f"chaos: {config.customers:,} customers ({result.expected:,} actions) in {shards} shards, "
                     f"{config.workers} workers, faults {config.fault_rate:.0%}")
            import devhost  # noqa: F401 (imported once here, so forked workers start in milliseconds)
            import function_app  # noqa: F401

            context = mp.get_context("fork")
            spawned = 0

            def spawn(slot: int) -> None:
                nonlocal spawned
                spawned += 1
                process = context.Process(target=_worker, args=(
                    slot, env, str(ca), config, str(logs / f"worker-{spawned:03d}.log")), daemon=True)
                process.start()
                processes[slot] = process

            for slot in range(config.workers):
                spawn(slot)
            rng = random.Random(config.seed)
            next_kill = time.monotonic() + config.kill_every
            restarted = False
            quiet = 0
            deadline = time.monotonic() + config.timeout
            last_report = 0.0
            while time.monotonic() < deadline:
                time.sleep(0.5)
                for slot, process in list(processes.items()):
                    if not process.is_alive():  # killed itself at a kill point: the host starts another
                        result.kills += 1
                        spawn(slot)
                if time.monotonic() >= next_kill:
                    victim = rng.choice(list(processes))
                    os.kill(processes[victim].pid, signal.SIGKILL)
                    processes[victim].join(5)
                    result.worker_kills += 1
                    spawn(victim)
                    next_kill = time.monotonic() + config.kill_every * rng.uniform(0.5, 1.5)
                done = len(graph.transmitted()) + len(bot.activities)
                if not restarted and done >= config.restart_azurite_at * 2 * config.customers:
                    progress(f"chaos: restarting Azurite at {done:,} sends")
                    azurite.stop()
                    azurite.start()
                    result.azurite_restarts += 1
                    restarted = True
                try:
                    pending = sum(broker.count(q) for q in QUEUES)
                except sqlite3.OperationalError:  # the SQLite file is busy for a moment: look again
                    continue
                if time.monotonic() - last_report > 15:
                    last_report = time.monotonic()
                    progress(f"chaos: {time.monotonic() - started:5.0f} s  mails {len(graph.transmitted()):,}  "
                             f"cards {len(bot.activities):,}  pending messages {pending:,}")
                quiet = quiet + 1 if pending == 0 and restarted else 0
                if quiet >= 6:  # 3 s without a message anywhere, scheduled ones included
                    break
            else:
                result.timed_out = True
                progress("chaos: timed out with messages still pending")
            for process in processes.values():
                os.kill(process.pid, signal.SIGKILL)
                process.join(5)
            processes.clear()
            time.sleep(max(0.0, graph.outbox_delay))
            _reconcile(result, setup, broker, graph, bot)
            result.faults = dict(graph_faults.counts + bot_faults.counts)
            broker.close()
    finally:
        for process in processes.values():
            if process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
        azurite.stop()
    result.seconds = time.monotonic() - started
    return result


def _reconcile(result: ChaosResult, container: Container, broker: LocalBroker, graph: GraphStandIn,
               bot: BotStandIn) -> None:
    planned: dict[str, tuple[str, str]] = {}  # action key -> (channel, customer id)
    teams_key_of: dict[str, str] = {}  # customer id -> its teams action key
    for opportunity in container.ledger.iter_all():
        for action in opportunity.actions:
            if action.get("status") == "planned":
                planned[action["key"]] = (action["channel"], opportunity.customer_id)
                if action["channel"] == "teams":
                    teams_key_of[opportunity.customer_id] = action["key"]
    result.planned = len(planned)
    copies: Counter = Counter()
    for mail in graph.transmitted():
        copies[mail.properties.get(DEDUPE_PROPERTY, "?mail without stamp")] += 1
    for _, activity in bot.activities:
        found = MARKER.search(json.dumps(activity))
        copies[teams_key_of.get(found[1], f"?card of {found[1]}") if found else "?card without marker"] += 1
    for row in container.storage.table(TASKS).query(select=["dedupe_key"]):
        copies[row["dedupe_key"]] += 1
    queued: set[str] = set()
    for queue in ACTION_QUEUES:
        rows = broker._connection().execute("SELECT body FROM messages WHERE queue = ? AND dead = 0", (queue,))
        queued |= {ActionMessage.from_json(body).dedupe_key for (body,) in rows}
    reasons: dict[str, str] = {}
    for queue in ACTION_QUEUES:
        for message in broker.peek_dead_letters(queue, max_messages=100000):
            key = ActionMessage.from_json(message.body).dedupe_key
            reasons[key] = f"{message.dead_letter_reason or 'dead-lettered'}: {message.dead_letter_description or ''}"
    for queue in set(QUEUES) - set(ACTION_QUEUES):  # a sweep shard that failed for good plans nothing: say why
        for message in broker.peek_dead_letters(queue, max_messages=100000):
            why = f"{message.dead_letter_reason or 'dead-lettered'}: {message.dead_letter_description or ''}"
            reason = f"{queue}: {why}"[:120]
            result.dead_letter_reasons[reason] = result.dead_letter_reasons.get(reason, 0) + 1
    dedupe = container.dedupe
    for key in planned:
        if copies[key] == 0 and key not in reasons:
            record = dedupe.get(key)
            if record is not None and record.status == FAILED:
                reasons[key] = record.reason or "failed"
    uncertain = {key for key in planned if (record := dedupe.get(key)) is not None and record.uncertain} \
        if any(copies[k] > 1 for k, (ch, _) in planned.items() if ch == "teams") else set()
    by_channel: dict[str, Counter] = {}
    for key, (channel, _) in planned.items():
        counts = by_channel.setdefault(channel, Counter())
        counts["planned"] += 1
        if copies[key]:
            result.delivered += 1
            counts["delivered"] += 1
            extra = copies[key] - 1
            if extra and channel == "teams" and key in uncertain:
                result.teams_repeats_after_uncertain += extra
                counts["repeated_after_uncertain"] += extra
            elif extra:
                result.duplicated += extra
                counts["duplicated"] += extra
        elif key in queued:
            result.still_queued += 1
            counts["still_queued"] += 1
        elif key in reasons:
            result.dead_lettered += 1
            counts["dead_lettered"] += 1
            reason = reasons[key][:80]
            result.dead_letter_reasons[reason] = result.dead_letter_reasons.get(reason, 0) + 1
        else:
            result.lost += 1
            counts["lost"] += 1
    if not result.timed_out:
        result.lost += max(0, result.expected - result.planned)  # never planned at all
    result.unplanned_deliveries = sum(n for key, n in copies.items() if key not in planned)
    result.unplanned_samples = sorted(key for key in copies if key not in planned)[:10]
    result.by_channel = {channel: dict(counts) for channel, counts in by_channel.items()}


def report(result: ChaosResult) -> str:
    lines = [
        f"planned {result.planned:,} of {result.expected:,} expected   delivered {result.delivered:,}   "
        f"dead-lettered {result.dead_lettered:,}   lost {result.lost:,}   duplicated {result.duplicated:,}"
        + (f"   (TIMED OUT: {result.still_queued:,} planned actions still queued)" if result.timed_out else ""),
        f"  teams cards repeated after an uncertain send (at-least-once by design): "
        f"{result.teams_repeats_after_uncertain:,}   deliveries of nothing planned: {result.unplanned_deliveries:,}"
        + (f" {result.unplanned_samples}" if result.unplanned_samples else ""),
        f"  by channel: {json.dumps(result.by_channel)}",
        f"  dead-letter reasons: {json.dumps(result.dead_letter_reasons, ensure_ascii=False)}",
        f"  faults injected: {sum(result.faults.values()):,} {json.dumps(result.faults)}",
        f"  workers killed: {result.kills:,} at kill points + {result.worker_kills:,} by the parent; "
        f"Azurite restarts: {result.azurite_restarts}; {result.seconds:.0f} s; logs in {result.log_dir}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = ChaosConfig()
    parser.add_argument("--customers", type=int, default=defaults.customers, help="3 actions each")
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="concurrent invocations per queue and worker")
    parser.add_argument("--shards", type=int, default=defaults.shards, help="CUSTOMER_SHARDS")
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate)
    parser.add_argument("--kill-rate", type=float, default=defaults.kill_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--timeout", type=float, default=defaults.timeout)
    parser.add_argument("--dir", type=Path, default=None, help="keep the run's files (logs) here")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    args = parser.parse_args()
    config = ChaosConfig(customers=args.customers, workers=args.workers, threads=args.threads, shards=args.shards,
                         fault_rate=args.fault_rate,
                         kill_rate=args.kill_rate, seed=args.seed, timeout=args.timeout, directory=args.dir,
                         log_level=args.log_level)
    result = run_chaos(config)
    print(report(result))
    print(json.dumps(asdict(result), default=str))
    sys.exit(0 if result.ok() else 1)


if __name__ == "__main__":
    main()
