"""Shared fixtures: one Azurite per test session (free port, in memory, no telemetry), fresh tables per test."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shared.container import Container
from shared.devtools.localstack import Azurite
from shared.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def azurite():
    with Azurite(in_memory=True) as instance:
        yield instance


def make_settings(tmp_path: Path, **env: str) -> Settings:
    base = {
        "TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true",
        "LOCAL_DIR": str(tmp_path / "local"),
        "TABLE_PREFIX": "t" + uuid.uuid4().hex[:10],
    }
    base.update(env)
    return Settings.from_env(base)


@pytest.fixture
def settings(azurite, tmp_path) -> Settings:
    """Settings pointing at the session's Azurite, with a table prefix of this test's own."""
    return make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string)


@pytest.fixture
def container(settings) -> Container:
    built = Container(settings)
    built.tables.ensure_tables()
    return built
