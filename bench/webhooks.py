"""Webhook intake throughput and latency: the HTTP functions called in-process, publishing into the local broker.

    .venv/bin/python bench/webhooks.py [--requests 3000] [--runs 3]

For each source the function gets real `azure.functions.HttpRequest`s built from the vendor sample payloads, each
with a unique event id (and, for HubSpot and the generic endpoint, its own valid signature: verification is on).
Measured per request: wall time from the call to the 202. Printed: events/s, p50 and p99 per source (median of
--runs), and, as the baseline measured in the same run, the bare `LocalBroker.publish` of the same event bodies —
the ratio shows what verification + parsing + mapping add on top of the durable enqueue.
Targets: ≥ 1,000 events/s per process and p99 ≤ 10 ms with the signature check on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the repo

import azure.functions as func

from functions.crm_webhooks import crm_dataverse, crm_generic, crm_hubspot
from shared.broker.local import LocalBroker
from shared.broker.port import OutgoingMessage
from shared.container import Container, set_container
from shared.domain.names import CRM_EVENTS
from shared.settings import Settings
from tests.crm_helpers import (
    SECRETS_ENV,
    dataverse_request,
    generic_request,
    hubspot_request,
    sample,
    wall_clock_now,
)


def requests_for(source: str, count: int) -> list[func.HttpRequest]:
    built = []
    now = wall_clock_now()
    for index in range(count):
        if source == "hubspot":
            event = json.loads(sample("hubspot_events.json"))[0]
            event["eventId"] = 10_000_000 + index
            request = hubspot_request(json.dumps([event]).encode(), now=now)
        elif source == "dataverse":
            context = json.loads(sample("dataverse_contact_update.json"))
            context["OperationId"] = f"00000000-0000-4000-8000-{index:012d}"
            request = dataverse_request(json.dumps(context).encode())
        else:
            customer = json.loads(sample("generic_customer.json"))
            customer["id"] = f"C-{index:06d}"
            request = generic_request(json.dumps(customer, ensure_ascii=False).encode(), now=now)
        built.append(func.HttpRequest(request.method, request.url, headers=dict(request.headers),
                                      params=dict(request.params), body=request.body))
    return built


FUNCTIONS = {"hubspot": crm_hubspot, "generic": crm_generic, "dataverse": crm_dataverse}


def run_source(container: Container, source: str, count: int) -> tuple[float, list[float]]:
    batch = requests_for(source, count)
    latencies = []
    function = FUNCTIONS[source]
    start = time.perf_counter()
    for request in batch:
        began = time.perf_counter()
        response = function(request)
        latencies.append(time.perf_counter() - began)
        if response.status_code != 202:
            raise SystemExit(f"{source}: HTTP {response.status_code}: {response.get_body()[:200]!r}")
    return count / (time.perf_counter() - start), latencies


def run_baseline(broker: LocalBroker, bodies: list[str]) -> tuple[float, list[float]]:
    latencies = []
    start = time.perf_counter()
    for index, body in enumerate(bodies):
        began = time.perf_counter()
        broker.publish(CRM_EVENTS, [OutgoingMessage(body=body, message_id=f"baseline:{time.time_ns()}:{index}")])
        latencies.append(time.perf_counter() - began)
    return len(bodies) / (time.perf_counter() - start), latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="requests per source per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env({"TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true",
                                      "LOCAL_DIR": str(Path(tmp) / "local"), **SECRETS_ENV})
        results: dict[str, list[tuple[float, float, float]]] = {}
        for run in range(args.runs):
            container = Container(settings.replace(local_dir=Path(tmp) / f"run{run}"))
            set_container(container)
            for source in FUNCTIONS:
                rate, latencies = run_source(container, source, args.requests)
                results.setdefault(source, []).append(
                    (rate, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000))
            bodies = [m.body for m in container.broker.receive(CRM_EVENTS, max_messages=args.requests)]
            baseline = LocalBroker(Path(tmp) / f"baseline{run}.sqlite3")
            rate, latencies = run_baseline(baseline, bodies)
            results.setdefault("baseline: bare publish", []).append(
                (rate, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000))
            baseline.close()
            container.broker.close()
            set_container(None)

    base_rate = statistics.median(r[0] for r in results["baseline: bare publish"])
    print(f"{'source':<24}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs bare publish':>17}")
    for source, rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        p50 = statistics.median(r[1] for r in rows)
        p99 = statistics.median(r[2] for r in rows)
        print(f"{source:<24}{rate:>10,.0f}{p50:>9.2f}{p99:>9.2f}{rate / base_rate:>16.2f}x")
    print(f"(median of {args.runs} runs × {args.requests} requests per source; targets ≥ 1,000 events/s, "
          f"p99 ≤ 10 ms)")


if __name__ == "__main__":
    main()
