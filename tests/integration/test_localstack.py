"""The local stack keeps its data: a persistent Azurite stopped by us still has every row when it starts again."""

from __future__ import annotations

from shared.devtools.localstack import Azurite
from tests.conftest import make_settings


def test_persistent_azurite_keeps_what_was_written_just_before_stop(tmp_path):
    from shared.storage.tables import TableAccess

    location = tmp_path / "azurite"
    with Azurite(in_memory=False, location=location) as first:
        tables = TableAccess(make_settings(tmp_path, TABLES_CONNECTION_STRING=first.connection_string,
                                           TABLE_PREFIX="keep"))
        tables.ensure_tables(("Probe",))
        for i in range(150):  # written immediately before stopping: no autosave has run yet
            tables.table("Probe").upsert_entity({"PartitionKey": "p", "RowKey": f"{i:03d}"})
    with Azurite(in_memory=False, location=location) as second:
        tables = TableAccess(make_settings(tmp_path, TABLES_CONNECTION_STRING=second.connection_string,
                                           TABLE_PREFIX="keep"))
        assert sum(1 for _ in tables.table("Probe").list_entities()) == 150
