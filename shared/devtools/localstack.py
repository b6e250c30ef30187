"""The local stack: Azurite (Table Storage) from the project's node_modules, on a free port, no telemetry."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from shared.domain.errors import ConfigError
from shared.settings import APP_ROOT
from shared.storage.tables import azurite_connection_string


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def azurite_binary() -> str:
    local = APP_ROOT / "node_modules" / ".bin" / "azurite-table"
    if local.exists():
        return str(local)
    found = shutil.which("azurite-table")
    if found:
        return found
    raise ConfigError("Azurite is not installed: run `make install` (npm installs it into node_modules/)")


class Azurite:
    """Starts azurite-table on a free loopback port; `with Azurite() as az:` stops it afterwards."""

    def __init__(self, *, in_memory: bool = True, location: Path | None = None, port: int | None = None):
        self.in_memory = in_memory
        self.location = location
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(self.port)

    def start(self, timeout: float = 30.0) -> Azurite:
        args = [azurite_binary(), "--tableHost", "127.0.0.1", "--tablePort", str(self.port),
                "--disableTelemetry", "--silent", "--skipApiVersionCheck"]
        if self.in_memory:
            args.append("--inMemoryPersistence")
        if self.location:
            self.location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.location)]
        self.process = subprocess.Popen(  # noqa: S603 - fixed arguments, local binary
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.location or None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise ConfigError(f"Azurite exited at start (port {self.port}): {err.strip()[:500]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return self
            time.sleep(0.1)
        self.stop()
        raise ConfigError(f"Azurite did not listen on port {self.port} within {timeout:.0f}s")

    def stop(self) -> None:
        """Stop Azurite. SIGINT first: that is what makes a persistent Azurite save its database (on SIGTERM it
        exits without flushing, and whatever was written since its last autosave is lost)."""
        if self.process and self.process.poll() is None:
            for stop, wait in ((lambda p: p.send_signal(signal.SIGINT), 15), (subprocess.Popen.terminate, 5),
                               (subprocess.Popen.kill, None)):
                stop(self.process)
                try:
                    self.process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.process = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
