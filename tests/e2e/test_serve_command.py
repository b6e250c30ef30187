"""`crmflow serve` as a user runs it: its own Azurite, function_app's routes on 127.0.0.1, Ctrl-C stops cleanly."""

from __future__ import annotations

import os
import re
import socket

from shared.devtools.localstack import free_port
from tests.e2e.serving import first_answer, interrupt, serve_process

# `main` registers only the command it runs, so this test does not depend on the other commands' modules.
SERVE = ("import sys, shared.devtools.cli as cli; "
         "sys.exit(cli.main(['serve', '--port', sys.argv[1]]))")


def test_serve_starts_azurite_answers_health_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("TABLES_CONNECTION_STRING", "TABLES_ACCOUNT_URL")}
    env.update(LOCAL_DIR=str(tmp_path / "local"), BROKER="local", PYTHONUNBUFFERED="1")
    with serve_process(SERVE, [str(port)], env) as proc:
        response = first_answer(proc, f"http://127.0.0.1:{port}/api/health")
        assert response.status_code == 200 and response.json()["status"] == "ok"
        err = interrupt(proc)
    assert proc.returncode == 0, err
    assert f"health: [GET] http://127.0.0.1:{port}/api/health" in err
    assert "stopped" in err
    azurite_port = int(re.search(r"Azurite Table Storage on 127\.0\.0\.1:(\d+)", err)[1])
    with socket.socket() as probe:  # Azurite was stopped with the host
        assert probe.connect_ex(("127.0.0.1", azurite_port)) != 0
    assert (tmp_path / "local" / "broker.sqlite3").exists()
