"""Local broker throughput: batched vs single publish, and 1 vs 2 competing consumer processes.

    .venv/bin/python bench/broker.py [--messages 20000] [--repeats 3]

Prints medians (messages/s) and ratios against a baseline measured in the same run, on the same machine:
batched publish vs one message per call; two consumer processes vs one. Short by design (well under 2 minutes).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

from shared.broker.local import LocalBroker
from shared.broker.port import OutgoingMessage

QUEUE = "bench"
BODY = '{"dedupe_key": "k", "channel": "teams", "content": {"summary": "' + "x" * 600 + '"}}'  # ~700 B, like a card


def messages(n: int, tag: str) -> list[OutgoingMessage]:
    return [OutgoingMessage(BODY, f"{tag}-{i}") for i in range(n)]


def publish_rate(path: Path, n: int, batch: int, tag: str) -> float:
    broker = LocalBroker(path)
    batch_list = messages(n, tag)
    started = time.perf_counter()
    for i in range(0, n, batch):
        broker.publish(QUEUE, batch_list[i:i + batch])
    elapsed = time.perf_counter() - started
    broker.close()
    return n / elapsed


def _consume(path: str, ready, done) -> None:
    broker = LocalBroker(Path(path))
    ready.wait()
    count = 0
    while batch := broker.receive(QUEUE, max_messages=10):  # all published up front: empty = drained
        for m in batch:
            broker.complete(m)
            count += 1
    done.put(count)
    broker.close()


def consume_rate(path: Path, n: int, workers: int) -> float:
    broker = LocalBroker(path)
    broker.publish(QUEUE, messages(n, f"c{workers}-{time.monotonic_ns()}"))
    broker.close()
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_consume, args=(str(path), ready, done)) for _ in range(workers)]
    for p in procs:
        p.start()
    ready.wait()  # every worker imported and connected: time the work only
    started = time.perf_counter()
    total = sum(done.get(timeout=300) for _ in procs)
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    assert total == n, (total, n)
    return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = args.messages
    single, batched, one, two = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            path = Path(tmp) / f"bench-{r}.sqlite3"
            single.append(publish_rate(path, n // 4, 1, f"s{r}"))  # a quarter: one call per message is slow
            batched.append(publish_rate(path, n, 100, f"b{r}"))
            one.append(consume_rate(Path(tmp) / f"one-{r}.sqlite3", n, 1))
            two.append(consume_rate(Path(tmp) / f"two-{r}.sqlite3", n, 2))
    med = statistics.median
    print(f"local broker, {n} messages of ~{len(BODY)} B, median of {args.repeats} runs")
    print(f"  publish, 1 per call    {med(single):10.0f} msg/s   (baseline)")
    print(f"  publish, 100 per call  {med(batched):10.0f} msg/s   ×{med(batched) / med(single):.1f}")
    print(f"  receive+complete, 1 process   {med(one):8.0f} msg/s   (baseline)")
    print(f"  receive+complete, 2 processes {med(two):8.0f} msg/s   ×{med(two) / med(one):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
