"""`crmflow demo` with every logger at DEBUG: no customer address, name or message body in any log line.

The forbidden strings come from the sample data (samples/customers.csv: addresses, company and contact names) and
from the mails the demo itself rendered into the outbox (subjects and body lines)."""

from __future__ import annotations

import csv
import email
import os
import subprocess
import sys
from email.policy import default
from pathlib import Path

from tests.e2e.log_scan import find_leaks

ROOT = Path(__file__).parent.parent.parent


def sample_personal_data() -> set[str]:
    with (ROOT / "samples" / "customers.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 260
    return {value.strip() for row in rows for value in (row["顧客メールアドレス"], row["顧客名"], row["氏名"])
            if value and value.strip()}


def rendered_mail_text(outbox: Path) -> set[str]:
    found = set()
    for path in (outbox / "email").glob("*.eml"):
        mail = email.message_from_bytes(path.read_bytes(), policy=default)
        found.add(str(mail["Subject"]))
        body = mail.get_body(("plain",)).get_content()
        found |= {line.strip() for line in body.splitlines() if len(line.strip()) >= 20 and "http" not in line}
    return found


def test_demo_logs_no_personal_data(tmp_path):
    env = {**os.environ, "LOCAL_DIR": str(tmp_path / "local"), "PYTHONUNBUFFERED": "1"}
    env.pop("TABLES_CONNECTION_STRING", None)
    result = subprocess.run([sys.executable, "-m", "shared.cli", "--verbose", "demo"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    log_lines = result.stderr.splitlines()
    assert len(log_lines) > 100 and any(" DEBUG " in f" {line} " or line.startswith("DEBUG") for line in log_lines)
    bodies = rendered_mail_text(tmp_path / "local" / "outbox")
    assert len(bodies) > 50
    leaks = find_leaks(log_lines, sample_personal_data() | bodies)
    assert not leaks, leaks[:5]
