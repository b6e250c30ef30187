"""What the in-memory backend refuses, as Table Storage (or the SDK) would. The cases both backends share are in
tests/integration/test_storage_contract.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.errors import InvalidInput, NotFound, PayloadTooLarge
from shared.storage.backend import BatchFailed, Op, Operation
from shared.storage.codec import MAX_PROPERTIES
from shared.storage.memory import MemoryStorage
from shared.storage.odata import EVERY_KEY, KeyRange, compile_filter, partition_range


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


@pytest.mark.parametrize("text, expected", [
    ("PartitionKey eq 'b'", KeyRange("b", True, "b", True)),
    ("(PartitionKey ge @low and RowKey gt 'x') and 'd' gt PartitionKey", KeyRange("a", True, "d", False)),
    ("PartitionKey gt 'a' and PartitionKey ge 'a' and PartitionKey le 'c' and PartitionKey lt 'c'",
     KeyRange("a", False, "c", False)),
    ("PartitionKey eq 'a' or PartitionKey eq 'b'", EVERY_KEY),  # a top-level or: no one range
    ("not (PartitionKey eq 'a') and PartitionKey ne 'b'", EVERY_KEY),
    ("(PartitionKey eq 'a') and (RowKey eq 'b' or PartitionKey eq 'c')", KeyRange("a", True, "a", True)),
    ("PartitionKey eq 5", EVERY_KEY),  # not text: matches nothing, which the filter itself decides
])
def test_the_partition_range_a_filter_implies(text, expected):
    assert partition_range(text, {"low": "a"}) == expected


QUERIES = ["PartitionKey eq 'p1'", "PartitionKey eq 'p1' and RowKey ge 'r3'", "PartitionKey eq 'nope'",
           "PartitionKey ge 'p1' and PartitionKey lt 'p3'", "PartitionKey gt 'p1'", "'p2' ge PartitionKey",
           "PartitionKey eq 'p1' or PartitionKey eq 'p3'", "not (PartitionKey eq 'p1')", "n lt 4",
           "PartitionKey eq 'p2' and PartitionKey eq 'p3'", "PartitionKey gt 'p2' and PartitionKey lt 'p2'"]


@pytest.mark.parametrize("text", QUERIES)
def test_a_query_reading_only_some_partitions_returns_what_a_full_scan_would(table, text):
    for partition in ("p3", "p1", "p0", "p2"):
        for row in ("r5", "r1", "r3"):
            table.insert({"PartitionKey": partition, "RowKey": row, "n": int(partition[1]) + int(row[1])})
    table.delete("p0", "r1")
    table.delete("p0", "r3")
    table.delete("p0", "r5")  # an emptied partition is gone from the index too
    table.insert({"PartitionKey": "p0", "RowKey": "r0", "n": 0})
    predicate = compile_filter(text)
    everything = list(table.query())
    assert [(e["PartitionKey"], e["RowKey"]) for e in everything] == sorted(
        (e["PartitionKey"], e["RowKey"]) for e in everything)
    assert list(table.query(text)) == [e for e in everything if predicate(e)]
