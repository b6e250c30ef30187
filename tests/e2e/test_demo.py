"""`crmflow demo` end to end in a subprocess, on its own LOCAL_DIR: the README's first command must keep working."""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
from email.policy import default
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent


def test_demo_runs_the_whole_flow_into_the_outbox(tmp_path):
    env = {**os.environ, "LOCAL_DIR": str(tmp_path / "local"),
           # A configured account must not be touched: the demo always runs on the embedded stack.
           "TABLES_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=nowhere;AccountKey=bm8=;"
                                       "TableEndpoint=https://nowhere.invalid/",
           "BROKER": "servicebus", "ServiceBusConnection__fullyQualifiedNamespace": "nowhere.invalid"}
    result = subprocess.run([sys.executable, "-m", "shared.cli", "demo"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "imported 260 customers, 0 rows rejected" in out
    assert "0 already planned" in out and "failed" not in out.split("== 3.")[1].split("== 4.")[0]
    outbox = tmp_path / "local" / "outbox"
    mails = sorted((outbox / "email").glob("*.eml"))
    cards = sorted((outbox / "teams").glob("*.json"))
    assert len(mails) > 50 and len(cards) > 100
    assert f"delivered: email {len(mails)}, teams {len(cards)}" in out
    message = email.message_from_bytes(mails[0].read_bytes(), policy=default)
    assert message["List-Unsubscribe"] and message.get_body(("plain",)) and message.get_body(("html",))
    payload = json.loads(cards[0].read_text(encoding="utf-8"))
    assert "AdaptiveCard" in json.dumps(payload)
    # Held renewal mails wait for their owner: one approval each, a request card each, one review link printed.
    assert "approvals pending: 18" in out and "/api/approvals/ap" in out and "?token=" in out
    texts = [c.read_text(encoding="utf-8") for c in cards]
    assert sum("【承認依頼】" in t or "Approval needed" in t for t in texts) == 18
    # Personal data stays out of the log: no customer address is printed.
    assert "@example.co" not in result.stderr and "@example.co" not in out
