"""`make install` leaves the app byte-compiled, as an installed package is: every command then loads bytecode
instead of compiling each module from source (PYTHONDONTWRITEBYTECODE keeps Python itself from writing it)."""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import struct
import subprocess
import sys

import pytest

from shared.settings import APP_ROOT


def _compile_commands() -> list[str]:
    # `make -n` prints the recipe without running it; only its byte-compiling line is run here.
    printed = subprocess.run(["make", "-n", "install"], cwd=APP_ROOT, capture_output=True, text=True, check=True)
    return [line for line in printed.stdout.splitlines() if "compileall" in line]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_install_byte_compiles_every_module_of_the_app():
    commands = _compile_commands()
    assert commands, "make install no longer byte-compiles the app"
    for command in commands:
        argv = shlex.split(command)
        argv[0] = sys.executable  # the recipe's .venv/bin/python is this interpreter in a test run
        subprocess.run(argv, cwd=APP_ROOT, check=True)
    stale = []
    for source in sorted((APP_ROOT / "shared").rglob("*.py")):
        cached = importlib.util.cache_from_source(str(source))
        try:
            header = open(cached, "rb").read(16)  # noqa: SIM115 (magic, flags, source mtime, source size)
        except FileNotFoundError:
            stale.append(source.name)
            continue
        stat = source.stat()
        _, mtime, size = struct.unpack("<III", header[4:16])
        if header[:4] != importlib.util.MAGIC_NUMBER or mtime != int(stat.st_mtime) & 0xFFFFFFFF \
                or size != stat.st_size & 0xFFFFFFFF:
            stale.append(source.name)
    assert not stale, f"modules without current bytecode after make install: {stale[:10]}"
