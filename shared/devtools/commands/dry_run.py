"""crmflow dry-run --input FILE.csv|FILE.json [--rules DIR] [--today D | --now T] [--format table|json]

Shows whom the rules would hit, which journey transitions a sweep would make (action channel `journey`, `to` = the
new stage) and what would be sent, with no side effects: nothing is stored, queued or sent.
--today D: every customer's local date is D. --now T: each customer's local date is T in their own time zone.
The contact policy (--policy, default CONTACT_POLICY_FILE) caps the firings against an empty contact log kept in
memory for this run: what the caps do to this input alone (status `capped`, the reason naming the cap).
Only what is printed is rendered: each action's subject (a card's summary, a mail's subject line). --full renders
every card and mail in full, as a sweep does, so a template error or an oversized card in a body shows up too (as
a rule warning); the output is otherwise the same.
"""

from __future__ import annotations

import argparse
import codecs
import gc
import os
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import TextIO

import msgspec

from shared.contact import ContactGuard, ContactLog, PolicyProblems, load_contact_policy
from shared.contact.caps import ContactRequest
from shared.customers.reader import RowError, iter_customers
from shared.devtools.commands._local import offline_settings
from shared.devtools.commands._time import add_time_options, resolve_time
from shared.domain.model import Customer
from shared.domain.vocabulary import ActionStatus
from shared.journeys.engine import JourneyEngine, Step, step_key
from shared.journeys.loader import load_journey
from shared.journeys.model import Journey
from shared.rules import Evaluator, Firing, PlannedAction, RuleProblems, load_ruleset
from shared.rules.evaluator import NO_SIGNING_KEY
from shared.storage.memory import MemoryStorage

MAX_ERRORS_SHOWN = 50


def register(subparsers) -> None:
    parser = subparsers.add_parser("dry-run", help="show what the rules would do, without doing it",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="customers .csv, .json (array) or .jsonl")
    parser.add_argument("--purchases", type=Path, help="purchases/deals CSV for a CSV input")
    parser.add_argument("--mapping", type=Path, help="CSV column mapping (default mappings/csv_default.yaml)")
    parser.add_argument("--rules", type=Path, help="rules directory (default: RULES_DIR, rules/)")
    parser.add_argument("--templates", type=Path, help="templates directory (default: TEMPLATES_DIR, templates/)")
    parser.add_argument("--journeys", type=Path, help="journeys directory (default: JOURNEYS_DIR, journeys/)")
    parser.add_argument("--policy", type=Path,
                        help="contact policy file (default: CONTACT_POLICY_FILE, contact_policy.yaml)")
    parser.add_argument("--trigger", choices=("sweep", "change"), default="sweep",
                        help="which rules to evaluate (default sweep; change rules see no previous version)")
    add_time_options(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    parser.add_argument("--full", action="store_true",
                        help="render every card and mail in full, as a sweep does (default: only the subjects shown)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = offline_settings()
    try:
        ruleset = load_ruleset(args.rules or settings.rules_dir, args.templates or settings.templates_dir,
                               default_locale=settings.default_locale, segments=settings.segments_file)
    except RuleProblems as exc:
        print(exc.message, file=sys.stderr)
        return 1
    try:
        journey = load_journey(args.journeys or settings.journeys_dir, ruleset.renderer, ruleset.segments)
    except RuleProblems as exc:
        print(exc.message, file=sys.stderr)
        return 1
    try:
        policy = load_contact_policy(args.policy or settings.contact_policy_file)
    except PolicyProblems as exc:
        print(exc.message, file=sys.stderr)
        return 1
    rules = {rule.id: rule for rule in ruleset.rules}
    guard = _EmptyLogGuard(ContactGuard(policy, ContactLog(MemoryStorage(), policy), rules.get))
    evaluator = Evaluator(ruleset, settings, subjects_only=not args.full)
    engine = JourneyEngine(journey) if journey is not None else None
    now, today = resolve_time(args)
    errors: list[RowError] = []
    customers = (customer for _, customer in iter_customers(
        args.input, mapping_path=args.mapping, purchases_path=args.purchases, errors=errors,
        today=today or now.date()))
    stats: Counter[str] = Counter()

    def firings() -> Iterable[Firing]:
        # Counted in plain locals and folded into `stats` at the end: a Counter update per firing costs more than
        # writing the firing out.
        statuses: dict[str, int] = {}
        customers_seen = firing_count = transitions = 0
        collecting = gc.isenabled()
        gc.disable()  # until the first customer: a JSON array is decoded whole, and its containers are the input
        try:
            for customer in customers:
                if not customers_seen:
                    # The input is parsed by now: keep the collector from walking it (once in full, right after the
                    # decoding, and again and again while planning allocates). Frozen objects are the input, alive
                    # until exit.
                    gc.freeze()
                    if collecting:
                        gc.enable()
                customers_seen += 1
                if engine is not None:
                    customer, steps = engine.advance(customer, now=now, prev=None,
                                                     local=today or evaluator.local_date(customer.timezone, now))
                    for firing in journey_firings(journey, evaluator, customer, steps, now, today) if steps else ():
                        firing_count += 1
                        transitions += 1
                        for action in firing.actions:
                            if action.channel != JOURNEY_CHANNEL:
                                statuses[action.status] = statuses.get(action.status, 0) + 1
                        yield firing
                fired = evaluator.evaluate(customer, now=now, trigger=args.trigger, today=today)
                for firing in guard.apply(customer.id, fired) if fired else ():
                    firing_count += 1
                    for action in firing.actions:
                        statuses[action.status] = statuses.get(action.status, 0) + 1
                    yield firing
        finally:
            if collecting:
                gc.enable()
            stats.update(statuses)
            stats.update(customers=customers_seen, firings=firing_count, transitions=transitions)

    out = sys.stdout
    try:
        (write_json if args.format == "json" else write_table)(firings(), out)
        out.flush()
    except BrokenPipeError:  # `crmflow dry-run ... | head`: the reader has seen enough
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (keeps the interpreter's final flush quiet)
        return 0
    _summary(stats, errors, evaluator, has_key=bool(settings.unsubscribe_signing_key))
    # Non-zero when input rows were rejected (like `crmflow import`); the good rows were evaluated all the same.
    return 1 if errors else 0


JOURNEY_CHANNEL = "journey"


class _EmptyLogGuard:
    """The contact guard over this run's contact log, which starts empty: a customer seen for the first time whose
    contacts all fit the caps keeps its firings as they are, with no row written. Its reservations are only noted,
    and made before the same customer's next firings (a customer listed twice) are capped, so every decision is
    the one `ContactGuard.apply` makes customer by customer."""

    def __init__(self, guard: ContactGuard):
        self.guard = guard
        self.unwritten: dict[str, list[ContactRequest]] = {}  # customers whose reservations only fit so far
        self.logged: set[str] = set()  # customers with a row in the log

    def apply(self, customer_id: str, firings: list[Firing]) -> list[Firing]:
        requests = self.guard.requests(firings)
        if not requests:
            return firings  # nothing a cap could stop: `apply` reserves nothing and returns them as they are
        if customer_id not in self.logged:
            if customer_id not in self.unwritten and self.guard.fit_empty_log(requests):
                self.unwritten[customer_id] = requests
                return firings
            self.logged.add(customer_id)
            earlier = self.unwritten.pop(customer_id, None)
            if earlier:
                self.guard.log.reserve(customer_id, earlier)
        return self.guard.apply(customer_id, firings)


def journey_firings(journey: Journey, evaluator: Evaluator, customer: Customer, steps: list[Step], now: datetime,
                    today: date | None) -> list[Firing]:
    """A sweep's journey steps as dry-run firings: a `journey` action (`to` = the new stage) before the entry
    actions, each rendered as of its stage."""
    firings = []
    for step in steps:
        transition = journey.transition(step.transition)
        key = step_key(journey, step, customer.id)
        firing = evaluator.plan(transition.rule, replace(customer, stage=step.target), now=now, today=today, key=key)
        move = PlannedAction(dedupe_key=f"{key}.j", channel=JOURNEY_CHANNEL, to=step.target, status="planned",
                             reason=f"{step.source or '(start)'} → {step.target}: {step.cause}"
                                    + (f" (due {step.due.isoformat()})" if step.due else ""), subject=None)
        firings.append(replace(firing, actions=(move, *firing.actions)))
    return firings


CHUNK_BYTES = 1 << 16


class _Chunked:
    """Writes in pieces of about 64 KB. With PYTHONUNBUFFERED (or any write-through stream) each small write would
    be a system call of its own, one per firing; on a pipe that costs more than rendering the firing."""

    def __init__(self, out: TextIO, size: int = CHUNK_BYTES):
        self.out, self.size = out, size
        self.parts: list[str] = []
        self.pending = 0

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.pending += len(text)
        if self.pending >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.out.write("".join(self.parts))
            self.parts.clear()
            self.pending = 0


def write_json(firings: Iterable[Firing], out: TextIO) -> None:
    """A JSON array of firings in the DESIGN shape, streamed (memory stays flat for a million customers)."""
    # The same text as json.dumps(..., ensure_ascii=False, separators=(",", ":")), a few times faster: encoded into
    # one buffer, decoded and written once per ~64 KB of whole firings (so never inside a character).
    encode_into = msgspec.json.Encoder().encode_into
    emit = _bytes_writer(out)
    buffer = bytearray(b"[")
    separator = b"\n"
    for firing in firings:
        buffer += separator
        encode_into(firing.to_dry_run_dict(), buffer, -1)
        separator = b",\n"
        if len(buffer) >= CHUNK_BYTES:
            emit(buffer)
            buffer.clear()
    buffer += b"\n]\n" if separator != b"\n" else b"]\n"
    emit(buffer)


def _bytes_writer(out: TextIO) -> Callable[[bytearray], None]:
    """Writes UTF-8 bytes to `out`: straight to its byte stream when the text layer would only decode and encode
    them again (a UTF-8 stream that translates no newlines; tens of megabytes for a large input), else as text."""
    raw = getattr(out, "buffer", None)
    encoding = getattr(out, "encoding", None)
    if raw is None or not encoding or codecs.lookup(encoding).name != "utf-8" or os.linesep != "\n":
        return lambda data: out.write(data.decode())
    out.flush()  # whatever was written as text goes first

    def write(data: bytearray) -> None:
        view = memoryview(data)
        while view:  # an unbuffered stream (PYTHONUNBUFFERED) may take only part of it
            written = raw.write(view)
            if written is None:
                raise BlockingIOError("standard output would block")
            view = view[written:]
        view.release()

    return write


COLUMNS = (("RULE", 30), ("CUSTOMER", 12), ("CHANNEL", 8), ("TO", 28), ("STATUS", 14), ("SUBJECT / REASON", 60))


def write_table(firings: Iterable[Firing], out: TextIO) -> None:
    chunks = _Chunked(out)
    chunks.write(_row(name for name, _ in COLUMNS) + "\n")
    for firing in firings:
        for index, action in enumerate(firing.actions):
            detail = action.reason if action.status == ActionStatus.SUPPRESSED else \
                " | ".join(part for part in (action.subject, action.reason) if part)
            chunks.write(_row((firing.rule_id if index == 0 else "", firing.customer_id if index == 0 else "",
                               action.channel, action.to, action.status, detail or "")) + "\n")
    chunks.flush()


def _row(cells: Iterable[str]) -> str:
    return "  ".join(_fit(str(cell), width) for cell, (_, width) in zip(cells, COLUMNS, strict=True)).rstrip()


def _fit(text: str, width: int) -> str:
    """Pad or cut to a display width (Japanese characters take two columns)."""
    def size(char: str) -> int:
        return 2 if unicodedata.east_asian_width(char) in "WF" else 1

    text = text.replace("\n", " ")
    total = sum(size(char) for char in text)
    if total > width:
        kept, used = [], 0
        for char in text:
            if used + size(char) > width - 1:
                break
            kept.append(char)
            used += size(char)
        text, total = "".join(kept) + "…", used + 1
    return text + " " * (width - total)


def _summary(stats: Counter, errors: list[RowError], evaluator: Evaluator, *, has_key: bool) -> None:
    err = sys.stderr
    print(f"dry-run: {stats['customers']:,} customers, {stats['firings']:,} firings "
          f"({stats['transitions']:,} journey transitions); actions: "
          f"{stats['planned']:,} planned, {stats['needs_approval']:,} need approval, "
          f"{stats['suppressed']:,} suppressed, {stats['capped']:,} capped, {stats['held_out']:,} held out. "
          "Nothing was stored, queued or sent.",
          file=err)
    if not has_key:
        print(f"warning: {NO_SIGNING_KEY}", file=err)
    for rule_id, count in sorted(evaluator.errors.items()):
        print(f"warning: rule {rule_id} failed on {count:,} customers (see -v for details)", file=err)
    for error in errors[:MAX_ERRORS_SHOWN]:
        print(f"  rejected {error}", file=err)
    if len(errors) > MAX_ERRORS_SHOWN:
        print(f"  ... and {len(errors) - MAX_ERRORS_SHOWN:,} more rejected rows", file=err)
