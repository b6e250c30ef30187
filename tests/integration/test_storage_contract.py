"""One contract, two backends: every case runs against Table Storage (Azurite) and the in-memory backend, so the
memory backend the unit tests use behaves like the real service where the stores depend on it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import pytest

from shared.domain.errors import Conflict, InvalidInput, PayloadTooLarge
from shared.storage.backend import (
    AlreadyExists,
    BatchFailed,
    EntityNotFound,
    ETagMismatch,
    Op,
    Operation,
    ReadAhead,
    Table,
    etag_of,
)
from shared.storage.codec import MAX_STRING_CHARS, get_json, put_json
from shared.storage.memory import MemoryStorage, MemoryTable
from shared.storage.tables import TableStorage
from tests.conftest import make_settings

T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


class Color(StrEnum):
    RED = "red"


@pytest.fixture(params=["memory", "azurite"])
def table(request, tmp_path) -> Table:
    if request.param == "memory":
        storage = MemoryStorage(tables=())
    else:
        azurite = request.getfixturevalue("azurite")
        settings = make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string)
        storage = TableStorage.from_settings(settings)
    storage.ensure_tables(["Contract"])
    return storage.table("Contract")


def row(pk: str = "p", rk: str = "r", **properties) -> dict:
    return {"PartitionKey": pk, "RowKey": rk, **properties}


def test_insert_is_atomic_and_get_returns_typed_properties_with_an_etag(table):
    etag = table.insert(row(text="テキスト", count=3, ratio=0.5, flag=False, at=T0, color=Color.RED, empty=None))
    found = table.get("p", "r")
    assert etag_of(found) == etag
    assert (found["text"], found["count"], found["ratio"], found["flag"]) == ("テキスト", 3, 0.5, False)
    assert found["at"] == T0 and found["at"].utcoffset() == timedelta(0)
    assert found["color"] == "red" and type(found["color"]) is str
    assert "empty" not in found  # None is not stored
    with pytest.raises(AlreadyExists):
        table.insert(row(text="second"))
    assert table.get("p", "r")["text"] == "テキスト"
    assert table.get("p", "missing") is None
    assert set(table.get("p", "r", select=["count"])) <= {"count", "PartitionKey", "RowKey"}


def test_conditional_replace_and_merge_check_the_etag(table):
    first = table.insert(row(a=1, b=2))
    second = table.replace(row(a=10), first)
    assert second != first and dict(table.get("p", "r")) == row(a=10)  # replace drops b
    with pytest.raises(ETagMismatch):
        table.replace(row(a=99), first)
    with pytest.raises(Conflict):
        table.merge(row(c=3), first)
    third = table.merge(row(c=3), second)
    assert dict(table.get("p", "r")) == row(a=10, c=3) and third != second
    table.merge(row(d=4))  # unconditional
    with pytest.raises(EntityNotFound):
        table.replace(row(rk="absent", a=1))
    with pytest.raises(EntityNotFound):
        table.merge(row(rk="absent", a=1), third)


def test_upsert_and_delete(table):
    table.upsert(row(a=1, b=2))
    table.upsert(row(a=3))
    assert dict(table.get("p", "r")) == row(a=3)
    table.upsert(row(b=4), merge=True)
    assert dict(table.get("p", "r")) == row(a=3, b=4)
    stale = etag_of(table.get("p", "r"))
    table.merge(row(c=5))
    with pytest.raises(ETagMismatch):
        table.delete("p", "r", stale)
    table.delete("p", "r", etag_of(table.get("p", "r")))
    assert table.get("p", "r") is None
    table.delete("p", "r")  # deleting what is gone is not an error


def test_queries_filter_sort_and_select_like_the_service(table):
    for pk, rk, status, published, at in (("s0002", "b", "queued", True, T0), ("s0001", "z", "detected", False, T0),
                                          ("s0001", "a", "queued", False, T0 + timedelta(days=2)),
                                          ("audit-20261120", "x", "sent", True, T0 - timedelta(days=4))):
        table.insert(row(pk, rk, status=status, published=published, at=at, n=len(rk)))
    table.insert(row("s0001", "m", published=True))  # no status, no at

    def keys(filter, **parameters):
        return [(e["PartitionKey"], e["RowKey"]) for e in table.query(filter, parameters)]

    assert keys(None) == [("audit-20261120", "x"), ("s0001", "a"), ("s0001", "m"), ("s0001", "z"), ("s0002", "b")]
    assert keys("PartitionKey eq @pk", pk="s0001") == [("s0001", "a"), ("s0001", "m"), ("s0001", "z")]
    assert keys("PartitionKey eq @pk and published eq false", pk="s0001") == [("s0001", "a"), ("s0001", "z")]
    assert keys("status eq @s and at lt @t", s="queued", t=T0 + timedelta(days=1)) == [("s0002", "b")]
    assert keys("status ne @s", s="queued") == [("audit-20261120", "x"), ("s0001", "z")]  # no status: no match
    assert keys("PartitionKey ge 'audit-' and PartitionKey lt @cut", cut="audit-20261121") == [("audit-20261120", "x")]
    assert keys("PartitionKey eq 's0002' or (status eq 'sent' and n gt 0)") == [("audit-20261120", "x"),
                                                                                ("s0002", "b")]
    assert keys("not (published eq true)") == [("s0001", "a"), ("s0001", "z")]
    assert keys("'s0001' lt PartitionKey") == [("s0002", "b")]  # the memory backend reads only the partitions
    assert keys("(PartitionKey gt 'audit-' and RowKey ge 'm') and PartitionKey le @pk", pk="s0001") == [
        ("audit-20261120", "x"), ("s0001", "m"), ("s0001", "z")]  # a range's bounds, and filters within it
    assert keys("PartitionKey eq 's0003'") == keys("PartitionKey gt 's0002' and PartitionKey lt 's0001'") == []
    assert keys("RowKey eq @quote", quote="it's") == []
    selected = list(table.query("PartitionKey eq @pk", {"pk": "s0002"}, select=["status"]))
    assert [e.get("status") for e in selected] == ["queued"] and "at" not in selected[0]
    assert len(list(table.query(page_size=2))) == 5  # paged transparently


def test_pages_and_reading_ahead_return_what_the_query_returns(table):
    table.write_batches([Operation(Op.INSERT, row("s0001", f"r{i:02d}", n=i)) for i in range(7)]).raise_first()
    table.insert(row("s0002", "x", n=99))
    pages = list(table.pages("PartitionKey eq @pk", {"pk": "s0001"}, page_size=3))
    assert [[e["RowKey"] for e in page] for page in pages] == [["r00", "r01", "r02"], ["r03", "r04", "r05"],
                                                               ["r06"]]
    ahead = table.read_ahead("s0001", select=["n"], page_size=3)
    table.insert(row("s0001", "r07", n=7))  # written after the read started: a read sees it or not, never twice
    read = [e["n"] for e in ahead.entities()]
    assert read[:7] == list(range(7)) and read[7:] in ([], [7])
    assert etag_of(pages[0][0]) and list(ahead) == []  # done: nothing more, nothing raised
    assert list(table.read_ahead("nobody").entities()) == []

    early = table.read_ahead("s0001", page_size=2)
    assert [e["RowKey"] for e in next(early)] == ["r00", "r01"]
    early.close()  # dropped half-way: the rest is never handed over
    assert list(early) == []


def test_a_read_ahead_raises_the_read_error_where_the_page_would_come(table):
    ahead = ReadAhead(table.pages("PartitionKey eq"))  # refused by the service (and by the memory backend)
    with pytest.raises(InvalidInput):
        next(ahead)
    assert list(ahead) == []


def test_a_transaction_is_all_or_nothing(table):
    table.insert(row(rk="r3", v="old"))
    operations = [Operation(Op.INSERT, row(rk=f"r{i}", v="new")) for i in range(5)]
    with pytest.raises(BatchFailed) as failed:
        table.submit(operations)
    assert isinstance(failed.value.cause, AlreadyExists) and failed.value.index == 3
    assert [e["RowKey"] for e in table.query()] == ["r3"] and table.get("p", "r3")["v"] == "old"
    current = etag_of(table.get("p", "r3"))
    table.submit([Operation(Op.INSERT, row(rk="r1")), Operation(Op.MERGE, row(rk="r3", v="merged"), current),
                  Operation(Op.UPSERT, row(rk="r4", v="up"))])
    assert [(e["RowKey"], e.get("v")) for e in table.query()] == [("r1", None), ("r3", "merged"), ("r4", "up")]
    with pytest.raises(BatchFailed) as stale:
        table.submit([Operation(Op.DELETE, row(rk="r1")), Operation(Op.REPLACE, row(rk="r3"), current)])
    assert isinstance(stale.value.cause, ETagMismatch) and table.get("p", "r1") is not None


def test_transaction_limits(table):
    with pytest.raises(BatchFailed):
        table.submit([Operation(Op.UPSERT, row(rk=f"r{i:03d}")) for i in range(101)])
    with pytest.raises(BatchFailed):
        table.submit([Operation(Op.UPSERT, row("a", "r")), Operation(Op.UPSERT, row("b", "r"))])
    with pytest.raises(BatchFailed):
        table.submit([Operation(Op.UPSERT, row(v=1)), Operation(Op.UPSERT, row(v=2))])
    assert list(table.query()) == []


def test_write_batches_split_by_partition_and_size(table):
    operations = [Operation(Op.UPSERT, row(f"p{i % 3}", f"r{i:04d}", i=i)) for i in range(350)]
    assert table.write_batches(operations, parallel=3).failed == []
    assert sum(1 for _ in table.query()) == 350
    table.delete_many((f"p{i % 3}", f"r{i:04d}") for i in range(0, 350, 2))
    assert sum(1 for _ in table.query()) == 175


def test_insert_many_claims_what_is_free_and_reports_what_was_taken(table):
    table.insert(row("p0", "k2"))
    created = table.insert_many([row(f"p{i % 2}", f"k{i}") for i in range(6)])
    assert created == [True, True, False, True, True, True]
    assert table.insert_many([row("p0", "k0")]) == [False]


def test_large_values_are_chunked_and_limits_are_enforced(table):
    value = {"text": "あ" * (MAX_STRING_CHARS * 2 + 10)}
    table.insert(row(**put_json("big_json", value)))
    assert get_json(table.get("p", "r"), "big_json") == value
    # Azure answers PropertyValueTooLarge (PayloadTooLarge); Azurite a bare 400 (InvalidInput).
    with pytest.raises(PayloadTooLarge if isinstance(table, MemoryTable) else (PayloadTooLarge, InvalidInput)):
        table.insert(row("p", "over-property", big="x" * (MAX_STRING_CHARS + 1)))
    over_entity = row("p", "over-entity", **{f"c{i}": "y" * MAX_STRING_CHARS for i in range(17)})
    if isinstance(table, MemoryTable):  # Azure answers EntityTooLarge; Azurite stores it: the memory backend is
        with pytest.raises(PayloadTooLarge):  # the stricter stand-in here
            table.insert(over_entity)
    with pytest.raises(InvalidInput):
        table.insert(row("p", "has/slash"))


def test_compare_and_swap_under_contention_loses_no_update(table):
    barrier = threading.Barrier(6)

    def increment(_):
        barrier.wait()
        for _ in range(5):
            table.compare_and_swap("p", "counter", lambda e: {"n": (e["n"] if e else 0) + 1}, attempts=200)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(increment, range(6)))
    assert table.get("p", "counter")["n"] == 30
    assert table.compare_and_swap("p", "counter", lambda e: None) is None  # no change, no write
    assert table.compare_and_swap("p", "fresh", lambda e: {"n": 1}, insert_first={"n": 0}) is not None
    assert table.get("p", "fresh")["n"] == 0  # inserted first, mutate not needed
