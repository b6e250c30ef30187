"""`cp local.settings.example.json local.settings.json`, as README says, and everything works locally: validate, a
dry-run, `crmflow serve` (local Azurite, a generated signing key). The local host answers only loopback Host names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import requests

from devhost import loopback_host
from shared.devtools.localstack import free_port
from shared.domain.errors import ConfigError
from shared.settings import APP_ROOT, Settings
from tests.e2e.serving import first_answer, interrupt, serve_process

# Runs the CLI with local.settings.json read from the given path (the user's copy), not from the checkout.
CLI = ("import sys, pathlib, shared.devtools.commands._local as local, shared.devtools.cli as cli; "
       "local.LOCAL_SETTINGS = pathlib.Path(sys.argv[1]); sys.exit(cli.main(sys.argv[2:]))")


@pytest.fixture
def copied(tmp_path):
    path = tmp_path / "local.settings.json"
    shutil.copy(APP_ROOT / "local.settings.example.json", path)
    # A fresh shell: no app setting in the environment, only the copied file (LOCAL_DIR kept out of the checkout).
    env = {k: v for k, v in os.environ.items() if k not in Settings.names()}
    env.update(LOCAL_DIR=str(tmp_path / "local"), PYTHONUNBUFFERED="1")
    return path, env


def run_cli(copied, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    path, env = copied
    return subprocess.run([sys.executable, "-c", CLI, str(path), *args], cwd=APP_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_example_sets_no_wildcard_cors_and_no_placeholder():
    example = json.loads((APP_ROOT / "local.settings.example.json").read_text(encoding="utf-8"))
    assert example["Host"].get("CORS") in (None, "")
    Settings.from_env(example["Values"] | {"TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true"})


def test_a_placeholder_value_is_a_clear_configuration_error():
    with pytest.raises(ConfigError, match=r"TABLES_ACCOUNT_URL.*placeholder"):
        Settings.from_env({"TABLES_ACCOUNT_URL": "https://<storage-account>.table.core.windows.net"})


def test_validate_and_dry_run_work_with_the_copied_example(copied):
    validated = run_cli(copied, "validate")
    assert validated.returncode == 0, validated.stderr
    dry = run_cli(copied, "dry-run", "--input", "samples/customers.csv", "--today", "2026-11-24", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    assert isinstance(json.loads(dry.stdout), list) and "Traceback" not in dry.stderr


def test_serve_works_with_the_copied_example_and_answers_only_loopback_hosts(copied, tmp_path):
    path, env = copied
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/health"
    with serve_process(CLI, [str(path), "serve", "--port", str(port)], env) as proc:
        response = first_answer(proc, url)
        assert response.status_code == 200 and response.json()["status"] == "ok"
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
            assert requests.get(url, headers={"Host": host}, timeout=5).status_code == 200
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.attacker.example", ""):
            refused = requests.get(url, headers={"Host": host}, timeout=5)
            assert refused.status_code == 421, host
            assert "access-control-allow-origin" not in {k.lower() for k in refused.headers}
        err = interrupt(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert (tmp_path / "local" / "unsubscribe-signing-key").read_text(encoding="utf-8").strip()  # generated


@pytest.mark.parametrize("value,ok", [
    ("127.0.0.1", True), ("127.0.0.1:7071", True), ("localhost", True), ("LOCALHOST:80", True), ("[::1]", True),
    ("[::1]:7071", True), ("", False), (None, False), ("evil.example", False), ("localhost.evil.example", False),
    ("127.0.0.2", False), ("[::2]:7071", False), ("localhost:7071:1", False), ("localhost:port", False),
])
def test_loopback_host_values(value, ok):
    assert loopback_host(value) is ok
