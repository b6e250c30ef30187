"""How CLI commands reach a stack: the configured one, or a local Azurite started for the command's duration."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from shared.settings import APP_ROOT, Settings

if TYPE_CHECKING:
    from shared.container import Container

LOCAL_SETTINGS = APP_ROOT / "local.settings.json"


def load_local_settings(path: Path | None = None) -> None:
    """Like Core Tools: values of local.settings.json become environment variables unless already set."""
    path = path or LOCAL_SETTINGS
    if not path.exists():
        return
    values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    for key, value in values.items():
        os.environ.setdefault(key, str(value))


# What `embedded=True` pins: the demo never writes to a configured storage account, queue or CRM.
EMBEDDED = {"BROKER": "local", "DELIVERY_TRANSPORT": "outbox", "CRM_TASK_TARGET": "local"}


@contextlib.contextmanager
def local_stack(*, persistent: bool = True, quiet: bool = False, embedded: bool = False) -> Iterator[Container]:
    """A container on the configured Table Storage, or on an Azurite started now (data under LOCAL_DIR/azurite).

    `embedded=True` ignores configured storage, broker and delivery targets and always runs everything locally.
    """
    # Imported here: the offline commands (validate, dry-run) need neither the storage SDKs nor Azurite.
    from shared.container import Container
    from shared.devtools.localstack import Azurite

    load_local_settings()
    env = dict(os.environ)
    if embedded:
        env.update(EMBEDDED)
        env.pop("TABLES_CONNECTION_STRING", None)
        env.pop("TABLES_ACCOUNT_URL", None)
    if env.get("TABLES_CONNECTION_STRING") or env.get("TABLES_ACCOUNT_URL"):
        container = Container(Settings.from_env(env))
        container.storage.ensure_tables()
        yield container
        return
    local_dir = Settings.from_env({**env, "TABLES_CONNECTION_STRING": "-"}).local_dir
    if not (env.get("UNSUBSCRIBE_SIGNING_KEY") or "").strip():  # unset, or "" as local.settings.example.json has it
        env["UNSUBSCRIBE_SIGNING_KEY"] = local_signing_key(local_dir)
    # The local host listens on 127.0.0.1 only: without a FUNCTIONS_KEY the dashboard opens like every other route.
    env.setdefault("DASHBOARD_AUTH", "key" if env.get("FUNCTIONS_KEY") else "open")
    azurite = Azurite(in_memory=not persistent, location=local_dir / "azurite" if persistent else None)
    with azurite:
        if not quiet:
            print(f"local stack: Azurite Table Storage on 127.0.0.1:{azurite.port}"
                  f"{' (data in ' + str(local_dir / 'azurite') + ')' if persistent else ''}", file=sys.stderr)
        container = Container(Settings.from_env({**env, "TABLES_CONNECTION_STRING": azurite.connection_string}))
        container.storage.ensure_tables()
        yield container


def local_dir_setting() -> Path:
    """LOCAL_DIR as configured (environment or local.settings.json), without needing any other setting."""
    load_local_settings()
    return Settings.from_env({**os.environ, "TABLES_CONNECTION_STRING": "-"}).local_dir


def local_signing_key(local_dir: Path) -> str:
    """A link-signing key for the local stack only, generated once and kept in LOCAL_DIR (never in the repo), so
    links in the local outbox still verify when `crmflow serve` runs later."""
    path = local_dir / "unsubscribe-signing-key"
    if not path.exists():
        local_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def offline_settings() -> Settings:
    """Settings for commands that never touch storage (validate, dry-run): a missing storage setting is fine."""
    load_local_settings()
    env = dict(os.environ)
    if not (env.get("TABLES_CONNECTION_STRING") or env.get("TABLES_ACCOUNT_URL")):
        env["TABLES_CONNECTION_STRING"] = "UseDevelopmentStorage=true"  # required by Settings; never contacted
    return Settings.from_env(env)
