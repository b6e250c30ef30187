"""`crmflow serve` as a user runs it: its own Azurite, function_app's routes on 127.0.0.1, Ctrl-C stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import requests

from shared.devtools.localstack import free_port
from shared.settings import APP_ROOT

# Only the serve command is registered, so this test does not depend on the other commands' modules.
SERVE = ("import sys, shared.devtools.cli as cli; cli.COMMAND_MODULES = ('serve',); "
         "sys.exit(cli.main(['serve', '--port', sys.argv[1]]))")


def test_serve_starts_azurite_answers_health_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("TABLES_CONNECTION_STRING", "TABLES_ACCOUNT_URL")}
    env.update(LOCAL_DIR=str(tmp_path / "local"), BROKER="local", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], cwd=APP_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        response = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert response is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert response.status_code == 200 and response.json()["status"] == "ok"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"health: [GET] http://127.0.0.1:{port}/api/health" in err
    assert "stopped" in err
    azurite_port = int(re.search(r"Azurite Table Storage on 127\.0\.0\.1:(\d+)", err)[1])
    with socket.socket() as probe:  # Azurite was stopped with the host
        assert probe.connect_ex(("127.0.0.1", azurite_port)) != 0
    assert (tmp_path / "local" / "broker.sqlite3").exists()
