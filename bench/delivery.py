"""Delivery against the Graph stand-in enforcing the mailbox limit, scaled in time so it runs in seconds.

    .venv/bin/python bench/delivery.py [--messages 75] [--scale 5] [--threads 4]

The stand-in allows 30 sends per 60/scale seconds (default 30 per 12 s) and answers 429 + Retry-After past that,
counting any send that arrives before a Retry-After it gave has passed. Messages go onto the local (SQLite) broker;
worker processes receive them and call the real sender (idempotency and the shared rate limiter on Azurite, Graph over
HTTP with MSAL tokens from the token stand-in), completing each message — a rescheduled one comes back as a
scheduled copy. Runs:
  paced ×1      one worker, pacing from the shared RateLimits rows
  paced ×2      two worker processes sharing the same limit
  unpaced ×2    baseline in the same run: no pacing, only 429/Retry-After driven (what a naive sender gets)
Prints per run: achieved rate as a share of the limit, median gap between sends vs the ideal gap, lost, duplicates,
429s and 429s not honoured. Targets: ≥ 95% of the limit, 0 lost, 0 duplicates, every 429 honoured.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the repo

import itertools

from shared.broker.local import LocalBroker
from shared.broker.port import OutgoingMessage
from shared.container import Container
from shared.delivery.ratelimit import RATE
from shared.delivery.transports import DEDUPE_PROPERTY, Transport
from shared.devtools.localstack import Azurite
from shared.domain.messages import ActionMessage
from shared.domain.names import EMAIL
from shared.domain.signing import unsubscribe_url
from shared.settings import Settings
from tests.standins import GraphStandIn, TokenIssuer, TokenStandIn, self_signed_tls

MAILBOX = "crm-notify@contoso.example"


class Scaled(Transport):
    """The live Graph transport with its time-based budgets compressed by `scale` (or none: the baseline)."""

    name = "graph"

    def __init__(self, inner: Transport, scale: float, pace: bool):
        self.inner, self.scale, self.pace = inner, scale, pace

    def budgets(self, message):
        if not self.pace:
            return []
        return [replace(b, seconds=b.seconds / self.scale) if b.kind == RATE else b
                for b in self.inner.budgets(message)]

    def send(self, message, *, uncertain=False):
        return self.inner.send(message, uncertain=uncertain)


def worker(env: dict[str, str], ca: str, scale: float, pace: bool, threads: int, stop) -> None:
    """One Function App instance: `threads` concurrent invocations (the host's maxConcurrentCalls)."""
    container = Container(Settings.from_env(env))
    container.http_session.verify = ca
    container.http_session.trust_env = False
    container.__dict__["delivery_transports"] = {
        "email": Scaled(container.delivery_transports["email"], scale, pace)}
    broker: LocalBroker = container.broker
    container.delivery  # noqa: B018 - build once, before the threads share it

    def invocations() -> None:
        while not stop.is_set():
            for received in broker.receive(EMAIL, max_messages=1, max_wait_seconds=0.05):
                try:
                    container.delivery.deliver(ActionMessage.from_json(received.body))
                except Exception:
                    broker.abandon(received)  # like the host: an exception means redelivery
                    continue
                broker.complete(received)

    pool = [threading.Thread(target=invocations) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    broker.close()


def message(i: int, run: str, settings: Settings) -> ActionMessage:
    customer_id = f"C-{i:05d}"
    return ActionMessage(
        dedupe_key=f"bench:{run}:{i}", channel="email", rule="bench", kind="campaign", customer_id=customer_id,
        to=f"customer{i}@example.com", subject="bench", planned_at=datetime.now(UTC),
        content={"html": "<p>hello</p>", "text": "hello", "locale": "en-US",
                 "unsubscribe_url": unsubscribe_url(settings, customer_id)})  # customer mail without one is refused


def run_once(label: str, workers: int, pace: bool, args, azurite: Azurite, token: TokenStandIn, ca: Path,
             issuer: TokenIssuer, tmp: Path) -> dict:
    limit, window = 30, 60.0 / args.scale
    with GraphStandIn(issuer, limit=limit, window=window) as graph:
        run = uuid.uuid4().hex[:8]
        env = {"TABLES_CONNECTION_STRING": azurite.connection_string, "TABLE_PREFIX": "b" + run,
               "LOCAL_DIR": str(tmp / run), "DELIVERY_TRANSPORT": "live", "AUTHORITY_HOST": token.url,
               "GRAPH_BASE_URL": graph.url, "GRAPH_TENANT_ID": "tenant-1", "GRAPH_CLIENT_ID": "graph-app",
               "GRAPH_CLIENT_SECRET": "graph-secret", "MAIL_SENDER": MAILBOX, "MAIL_MESSAGES_PER_MINUTE": str(limit),
               "UNSUBSCRIBE_SIGNING_KEY": secrets.token_hex(32)}
        settings = Settings.from_env(env)
        Container(settings).tables.ensure_tables()
        broker = LocalBroker(Path(env["LOCAL_DIR"]) / "broker.sqlite3")
        broker.publish(EMAIL, [OutgoingMessage(m.to_json(), m.dedupe_key)
                               for m in (message(i, run, settings) for i in range(args.messages))])
        stop = mp.get_context("spawn").Event()
        procs = [mp.get_context("spawn").Process(target=worker, args=(env, str(ca), args.scale, pace, args.threads,
                                                                           stop))
                 for _ in range(workers)]
        for proc in procs:
            proc.start()
        deadline = time.monotonic() + args.timeout
        while len(graph.sent()) < args.messages and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # let late duplicates, if any, arrive
        stop.set()
        for proc in procs:
            proc.join(timeout=20)
            if proc.is_alive():
                proc.terminate()
        broker.close()
        sent = graph.sent()
        keys = [m.properties.get(DEDUPE_PROPERTY) for m in sent]
        times = [m.sent_at for m in sent]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        elapsed = times[-1] - times[0] if len(times) > 1 else float("nan")
        achieved = (len(times) - 1) / elapsed if len(times) > 1 else 0.0
        return {"run": label, "sent": len(sent), "lost": args.messages - len(set(keys)),
                "duplicates": len(keys) - len(set(keys)), "share": achieved / (limit / window),
                "median_gap": statistics.median(gaps) if gaps else float("nan"), "ideal_gap": window / limit,
                "throttled": graph.throttled, "ignored": graph.ignored_retry_after}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=75)
    parser.add_argument("--scale", type=float, default=5.0, help="time compression (5: 30 per 12 s)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent invocations per worker process")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per run before giving up")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    runs = [("paced x1", 1, True), ("paced x2", 2, True)] + ([] if args.skip_baseline else [("unpaced x2", 2, False)])
    with tempfile.TemporaryDirectory() as tmpdir, Azurite(in_memory=True) as azurite:
        tmp = Path(tmpdir)
        issuer = TokenIssuer()
        tls, ca = self_signed_tls(tmp / "tls")
        with TokenStandIn(issuer, tls, {"graph-app": "graph-secret"}) as token:
            results = [run_once(label, n, pace, args, azurite, token, ca, issuer, tmp) for label, n, pace in runs]
    print(f"mailbox limit 30 per {60 / args.scale:g} s (scale {args.scale:g}x), {args.messages} messages per run")
    print(f"{'run':<12} {'sent':>5} {'rate/limit':>10} {'median gap':>11} {'ideal':>7} {'lost':>5} {'dups':>5} "
          f"{'429s':>5} {'429 ignored':>11}")
    for r in results:
        print(f"{r['run']:<12} {r['sent']:>5} {r['share']:>9.1%} {r['median_gap'] * 1000:>9.1f}ms "
              f"{r['ideal_gap'] * 1000:>5.0f}ms {r['lost']:>5} {r['duplicates']:>5} {r['throttled']:>5} "
              f"{r['ignored']:>11}")
    paced = [r for r in results if r["run"].startswith("paced")]
    ok = all(r["share"] >= 0.95 and r["lost"] == 0 and r["duplicates"] == 0 and r["ignored"] == 0 for r in paced)
    print("targets (paced runs: ≥ 95% of the limit, 0 lost, 0 duplicates, every 429 honoured):",
          "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
