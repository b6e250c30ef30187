"""The CLI registers only the command it runs; the command → module table stays in step with the modules."""

from __future__ import annotations

import subprocess
import sys

from shared.devtools.cli import COMMANDS, _command, build_parser
from shared.settings import APP_ROOT


def commands_of(parser) -> list[str]:
    return list(next(a for a in parser._actions if a.dest == "command").choices)


def test_every_module_registers_the_command_it_is_listed_under():
    assert commands_of(build_parser()) == list(COMMANDS)
    for name in COMMANDS:
        assert commands_of(build_parser(name)) == [name]


def test_the_command_is_the_first_argument_that_is_not_an_option():
    assert _command(["-v", "dry-run", "--input", "x.json"]) == "dry-run"
    assert _command(["--help"]) is None and _command(["nonsense"]) is None and _command([]) is None


def test_an_offline_dry_run_imports_no_storage_sdk():
    code = ("import sys, shared.devtools.cli as cli\n"
            "try:\n    cli.main(['dry-run', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('azure', 'requests'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=APP_ROOT, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
