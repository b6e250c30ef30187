"""A reduced chaos run (bench/chaos.py): a few hundred actions through Azurite, the local broker, worker processes
running the registered functions and the Graph/Bot stand-ins over HTTP, while workers are SIGKILLed, stand-ins fail
~20% of requests, Azurite restarts once and messages are redelivered. Nothing may be lost or sent twice, and no log
line may carry a customer's address, name or mail body."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import TEMPLATES, ChaosConfig, chaos_customers, report, run_chaos
from tests.e2e.log_scan import find_leaks, read_log_lines

CUSTOMERS = 70  # 210 actions


@pytest.fixture(scope="module")
def chaos(tmp_path_factory):
    directory = tmp_path_factory.mktemp("chaos")
    config = ChaosConfig(customers=CUSTOMERS, workers=2, kill_every=10.0, kill_rate=0.005, timeout=900.0,
                         directory=directory, log_level="DEBUG")
    result = run_chaos(config, progress=lambda line: None)
    print(report(result))
    return result


def test_nothing_is_lost_or_sent_twice_under_chaos(chaos):
    summary = report(chaos)
    assert not chaos.timed_out, summary
    assert chaos.planned == chaos.expected == 3 * CUSTOMERS, summary
    assert chaos.lost == 0 and chaos.duplicated == 0 and chaos.unplanned_deliveries == 0, summary
    assert chaos.delivered + chaos.dead_lettered == chaos.planned, summary
    email = chaos.by_channel["email"]
    assert email.get("delivered", 0) + email.get("dead_lettered", 0) == CUSTOMERS, summary
    # The faults really happened.
    assert chaos.azurite_restarts == 1 and chaos.kills + chaos.worker_kills >= 3, summary
    assert sum(chaos.faults.values()) > 0.1 * chaos.planned, summary
    assert any(name.endswith(":late") for name in chaos.faults), summary  # accepted, then timed out


def forbidden_strings(customers) -> set[str]:
    """What must never be logged: each customer's address, company and contact name, and their mail bodies."""
    found = set()
    for customer in customers:
        found |= {customer.email, customer.name, customer.contact_name,
                  f"Dear {customer.contact_name}", f"chaos body for {customer.id}"}
    assert "chaos body for" in TEMPLATES["chaos.txt"]  # the body text the templates render
    return found


def test_no_personal_data_in_any_log_line_of_the_chaos_run(chaos):
    logs = sorted(Path(chaos.log_dir).glob("*.log"))
    assert {path.name for path in logs} >= {"parent.log", "worker-001.log"}  # the run's own process and workers
    lines = read_log_lines(logs)
    assert len(lines) > 1000  # DEBUG: everything the run logged, the Azure SDK included
    leaks = find_leaks(lines, forbidden_strings(chaos_customers(CUSTOMERS)))
    assert not leaks, leaks[:5]


def test_the_scan_would_see_a_leak():
    customers = chaos_customers(2)
    line = f"INFO crmflow.delivery delivered to {customers[1].email.upper()}"
    assert find_leaks([line, "INFO nothing here"], forbidden_strings(customers)) == [line]
