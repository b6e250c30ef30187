"""How CLI commands reach a stack: the configured one, or a local Azurite started for the command's duration."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from shared.container import Container
from shared.localstack import Azurite
from shared.settings import APP_ROOT, Settings

LOCAL_SETTINGS = APP_ROOT / "local.settings.json"


def load_local_settings(path: Path = LOCAL_SETTINGS) -> None:
    """Like Core Tools: values of local.settings.json become environment variables unless already set."""
    if not path.exists():
        return
    values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    for key, value in values.items():
        os.environ.setdefault(key, str(value))


@contextlib.contextmanager
def local_stack(*, persistent: bool = True, quiet: bool = False) -> Iterator[Container]:
    """A container on the configured Table Storage, or on an Azurite started now (data under LOCAL_DIR/azurite)."""
    load_local_settings()
    env = dict(os.environ)
    if env.get("TABLES_CONNECTION_STRING") or env.get("TABLES_ACCOUNT_URL"):
        container = Container(Settings.from_env(env))
        container.tables.ensure_tables()
        yield container
        return
    local_dir = Settings.from_env({**env, "TABLES_CONNECTION_STRING": "-"}).local_dir
    azurite = Azurite(in_memory=not persistent, location=local_dir / "azurite" if persistent else None)
    with azurite:
        if not quiet:
            print(f"local stack: Azurite Table Storage on 127.0.0.1:{azurite.port}"
                  f"{' (data in ' + str(local_dir / 'azurite') + ')' if persistent else ''}", file=sys.stderr)
        container = Container(Settings.from_env({**env, "TABLES_CONNECTION_STRING": azurite.connection_string}))
        container.tables.ensure_tables()
        yield container


def offline_settings() -> Settings:
    """Settings for commands that never touch storage (validate, dry-run): a missing storage setting is fine."""
    load_local_settings()
    env = dict(os.environ)
    if not (env.get("TABLES_CONNECTION_STRING") or env.get("TABLES_ACCOUNT_URL")):
        env["TABLES_CONNECTION_STRING"] = "UseDevelopmentStorage=true"  # required by Settings; never contacted
    return Settings.from_env(env)
