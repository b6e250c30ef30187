"""Running a `crmflow serve` process from a test: start it, wait for its first answer, stop it with Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import requests

from shared.settings import APP_ROOT


@contextlib.contextmanager
def serve_process(code: str, args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`python -c code *args` in the checkout; killed on the way out if the test did not stop it."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=APP_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def first_answer(proc: subprocess.Popen, url: str, timeout: float = 90.0) -> requests.Response:
    """GET `url` until the process answers; AssertionError with its stderr if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return requests.get(url, timeout=5)
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError(proc.stderr.read() if proc.poll() is not None else f"no answer from {url}")


def interrupt(proc: subprocess.Popen) -> str:
    """Ctrl-C, wait for the process to end; its stderr."""
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=30)[1]
