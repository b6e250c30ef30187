"""`crmflow demo` end to end in a subprocess, on its own LOCAL_DIR: the README's first command must keep working,
and the links it prints must work on the day it runs, through `crmflow serve` on the same LOCAL_DIR."""

from __future__ import annotations

import email
import json
import os
import re
import signal
import subprocess
import sys
import time
from email.policy import default
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from shared.devtools.localstack import free_port

ROOT = Path(__file__).parent.parent.parent
SERVE = ("import sys, shared.devtools.cli as cli; "
         "sys.exit(cli.main(['serve', '--port', sys.argv[1]]))")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    local = tmp_path_factory.mktemp("demo") / "local"
    env = {**os.environ, "LOCAL_DIR": str(local),
           # A configured account must not be touched: the demo always runs on the embedded stack.
           "TABLES_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=nowhere;AccountKey=bm8=;"
                                       "TableEndpoint=https://nowhere.invalid/",
           "BROKER": "servicebus", "ServiceBusConnection__fullyQualifiedNamespace": "nowhere.invalid"}
    result = subprocess.run([sys.executable, "-m", "shared.cli", "demo"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    return result, local


def test_demo_runs_the_whole_flow_into_the_outbox(demo):
    result, local = demo
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "imported 260 customers, 0 rows rejected" in out
    # The journey: two change events take the new customer to onboarding, the sweep on to utilization.
    journey = out.split("== 2.")[1].split("== 3.")[0]
    assert "C-JOURNEY is in onboarding" in journey and "C-JOURNEY is in utilization" in journey
    assert "implementation → onboarding" in journey
    assert re.search(r"onboarding → utilization\s+onboarding_due, due \d{4}-\d{2}-\d{2}", journey)
    assert "0 already planned" in out and "failed" not in out.split("== 3.")[1].split("== 4.")[0]
    outbox = local / "outbox"
    mails = sorted((outbox / "email").glob("*.eml"))
    cards = sorted((outbox / "teams").glob("*.json"))
    assert len(mails) > 50 and len(cards) > 18
    assert f"delivered: email {len(mails)}, teams {len(cards)}" in out
    message = email.message_from_bytes(mails[0].read_bytes(), policy=default)
    assert message["List-Unsubscribe"] and message.get_body(("plain",)) and message.get_body(("html",))
    payload = json.loads(cards[0].read_text(encoding="utf-8"))
    assert "AdaptiveCard" in json.dumps(payload)
    # Held renewal mails wait for their owner: one approval each, a request card each, one review link printed.
    assert "approvals pending: 18" in out and "/api/approvals/ap" in out and "?token=" in out
    texts = [c.read_text(encoding="utf-8") for c in cards]
    assert sum("【承認依頼】" in t or "Approval needed" in t for t in texts) == 18
    # Reps in digest mode: one digest per rep and working day, instead of a card per opportunity.
    cards_line = re.search(r"Teams cards to reps \(digest mode\): (\d+) sent, against (\d+) with one card per "
                           r"opportunity; busiest rep (\d+) instead of (\d+)", out)
    assert cards_line, out[-2000:]
    assert int(cards_line[1]) < int(cards_line[2]) / 2 and int(cards_line[3]) < int(cards_line[4])
    assert sum("new opportunities" in t for t in texts) >= 5  # a digest for each of the five reps
    # English mails read as English: product names and plurals from the templates, no Japanese sample text.
    english = []
    for path in mails:
        parsed = email.message_from_bytes(path.read_bytes(), policy=default)
        text = parsed.get_body(("plain",)).get_content()
        if text.startswith("Dear "):
            english.append(parsed["Subject"] + text)
    assert english and not [t for t in english if re.search(r"[\u3040-\u30ff\u3400-\u9fff]|\(s\)", t)]
    # The loop closes: a rep's click, CRM deals attributed, a redelivered won campaign deal counted once.
    outcomes = out.split("== 5.")[1]
    assert "rep clicked 'in progress'" in outcomes and "/outcome?token=" in outcomes
    assert "won, amount 480,000, source crm" in outcomes and "lost, amount -, source crm" in outcomes
    assert "campaign CMP-SUBDISPLAY-2026:" in outcomes and "1 won, 0 lost, revenue won 300,000" in outcomes
    # Personal data stays out of the log: no customer address is printed.
    assert "@example.co" not in result.stderr and "@example.co" not in out


def test_the_printed_review_link_and_a_mails_unsubscribe_link_work_today(demo):
    result, local = demo
    assert result.returncode == 0, result.stderr[-2000:]
    review = re.search(r"review one: (\S+)", result.stdout)[1]
    mail = email.message_from_bytes(next((local / "outbox" / "email").glob("*.eml")).read_bytes(), policy=default)
    unsubscribe = re.search(r"<(https?://[^>]+)>", mail["List-Unsubscribe"])[1]

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("TABLES_CONNECTION_STRING", "TABLES_ACCOUNT_URL")}
    env.update(LOCAL_DIR=str(local), BROKER="local", PYTHONUNBUFFERED="1")
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def local_host(link: str) -> str:  # the links name PUBLIC_BASE_URL (127.0.0.1:7071); this host has its own port
        parts = urlsplit(link)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))

    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "crmflow serve did not answer"
            try:
                requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.3)
        page = requests.get(local_host(review), timeout=30)
        assert page.status_code == 200, page.text[:500]
        assert "<form" in page.text and "approve" in page.text.lower()
        confirm = requests.get(local_host(unsubscribe), timeout=30)
        assert confirm.status_code == 200, confirm.text[:500]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
