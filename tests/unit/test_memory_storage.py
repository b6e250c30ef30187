"""What the in-memory backend refuses, as Table Storage (or the SDK) would. The cases both backends share are in
tests/integration/test_storage_contract.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.errors import InvalidInput, NotFound, PayloadTooLarge
from shared.storage.backend import BatchFailed, Op, Operation
from shared.storage.codec import MAX_PROPERTIES
from shared.storage.memory import MemoryStorage
from shared.storage.odata import compile_filter


@pytest.fixture
def table():
    storage = MemoryStorage(tables=("T",))
    return storage.table("T")


@pytest.mark.parametrize("bad", ["status eq", "status === 'x'", "status eq 'x' and", "(status eq 'x'",
                                 "status eq @missing", "contains(status, 'x')", "status eq 'x' 'y'"])
def test_filters_the_service_would_refuse_are_refused(bad):
    with pytest.raises(InvalidInput):
        compile_filter(bad, {"other": 1})


def test_filter_values_compare_by_type_like_the_service():
    entity = {"n": 5, "flag": True, "at": datetime(2026, 1, 1, tzinfo=UTC), "text": "5"}
    assert compile_filter("n gt 4 and n le 5.0")(entity)
    assert not compile_filter("text eq 5")(entity) and not compile_filter("n eq '5'")(entity)
    assert compile_filter("at lt @t", {"t": datetime(2026, 1, 2, tzinfo=UTC)})(entity)
    assert compile_filter("flag eq true and not (flag eq false)")(entity)
    assert not compile_filter("missing ne 'x'")(entity)


def test_values_are_stored_as_the_sdk_sends_them(table):
    with pytest.raises(TypeError):
        table.insert({"PartitionKey": "p", "RowKey": "big", "n": 2**31})
    with pytest.raises(TypeError):
        table.insert({"PartitionKey": "p", "RowKey": "obj", "v": object()})
    with pytest.raises(InvalidInput):
        table.insert({"PartitionKey": "p", "RowKey": "many", **{f"c{i}": i for i in range(MAX_PROPERTIES + 1)}})
    with pytest.raises(InvalidInput):
        table.insert({"PartitionKey": "p\x07", "RowKey": "r"})
    with pytest.raises(PayloadTooLarge):
        table.insert({"PartitionKey": "p", "RowKey": "bin", "b": b"x" * (64 * 1024 + 1)})


def test_a_failed_operation_in_a_transaction_writes_nothing(table):
    with pytest.raises(BatchFailed) as failed:
        table.submit([Operation(Op.INSERT, {"PartitionKey": "p", "RowKey": "a"}),
                      Operation(Op.MERGE, {"PartitionKey": "p", "RowKey": "absent", "v": 1})])
    assert failed.value.index == 1 and isinstance(failed.value.cause, NotFound)
    assert list(table.query()) == []


def test_a_table_that_was_never_created_is_not_found():
    with pytest.raises(NotFound):
        MemoryStorage(tables=()).table("Missing").insert({"PartitionKey": "p", "RowKey": "r"})
