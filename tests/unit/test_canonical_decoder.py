"""The fast canonical decoder (msgspec structs) against the general parser (`Customer.from_dict`): the same
customers from the same records, and the same errors — field, record index and message — for bad ones."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import msgspec
import pytest

from shared.customers import canonical
from shared.customers.canonical import customer_from_mapping, decode_customer, decode_customer_array
from shared.customers.reader import read_customers_file
from shared.domain.errors import InvalidInput, Location
from shared.domain.model import MAX_TEXT_CHARS, Customer

ROOT = Path(__file__).parent.parent.parent
CASES = json.loads((ROOT / "tests" / "fixtures" / "customers" / "canonical_cases.json").read_text(encoding="utf-8"))
LONG = "x" * (MAX_TEXT_CHARS + 1)
EXTRA_BAD = [{"id": "x", "name": LONG}, {"id": "x" * 201}, {"id": "x", "products": [LONG]},
             {"id": "x", "owner": {"name": LONG}}, {"id": "tab\there"}]
ALL = CASES["strict"] + CASES["coerced"] + CASES["bad"] + EXTRA_BAD
WHERE = Location(file="customers.json")


def general(record) -> Customer | tuple:
    """What the general parser makes of a record: the customer, or (field, message) of its error."""
    try:
        if not isinstance(record, dict):
            raise InvalidInput("a customer must be a JSON object", WHERE)
        return Customer.from_dict(record, WHERE)
    except InvalidInput as exc:
        return exc.location.field, exc.reason


def outcome(item: Customer | InvalidInput) -> Customer | tuple:
    return (item.location.field, item.reason) if isinstance(item, InvalidInput) else item


@pytest.mark.parametrize("record", ALL, ids=[json.dumps(r, ensure_ascii=False)[:60] for r in ALL])
def test_one_record_decodes_as_the_general_parser_parses(record):
    expected = general(record)
    raw = json.dumps(record, ensure_ascii=False).encode()
    assert [outcome(item) for _, item in decode_customer_array(b"[" + raw + b"]", WHERE)] == [expected]
    if isinstance(record, dict):
        for decode in (lambda: decode_customer(raw, WHERE), lambda: customer_from_mapping(record, WHERE)):
            try:
                got = decode()
            except InvalidInput as exc:
                got = (exc.location.field, exc.reason)
            assert got == expected


def test_canonical_records_take_the_strict_path():
    """The speed comes from the strict structs: canonical records must not fall back to the general parser."""
    for record in CASES["strict"]:
        Customer.from_dict(record)  # time zones are checked once by the general parser, then known
        struct = msgspec.json.decode(json.dumps(record).encode(), type=canonical._Customer)
        assert canonical._to_customer(struct, WHERE) == Customer.from_dict(record)
    for record in CASES["coerced"] + CASES["bad"][:-2]:
        # (bad deals and instants are refused by the general parser's own deal and instant checks)
        with pytest.raises((msgspec.ValidationError, canonical._NotCanonical, InvalidInput)):
            canonical._to_customer(msgspec.json.decode(json.dumps(record).encode(), type=canonical._Customer), WHERE)


def test_a_whole_file_keeps_record_numbers_and_every_good_record():
    records = ALL * 3
    data = json.dumps(records, ensure_ascii=False).encode()
    got = [(number, outcome(item)) for number, item in decode_customer_array(data, WHERE)]
    assert got == [(number, general(record)) for number, record in enumerate(records, start=1)]
    clean = json.dumps(CASES["strict"] * 50).encode()  # all strict: the one-pass path
    assert [outcome(item) for _, item in decode_customer_array(clean, WHERE)] == \
        [general(record) for record in CASES["strict"] * 50]


def test_the_sample_customers_round_trip_through_the_fast_path():
    batch = read_customers_file(ROOT / "samples" / "customers.csv", purchases_path=ROOT / "samples" / "purchases.csv",
                                today=date(2026, 11, 24))
    data = json.dumps([c.to_dict() for c in batch.customers], ensure_ascii=False).encode()
    assert [item for _, item in decode_customer_array(data, WHERE)] == batch.customers
    assert [customer_from_mapping(c.to_dict()) for c in batch.customers] == batch.customers


def test_what_msgspec_cannot_read_goes_to_the_standard_decoder():
    # NaN is not JSON, but Python's decoder reads it and the general parser refuses it by field.
    items = list(decode_customer_array(b'[{"id": "a"}, {"id": "b", "annual_spend": NaN}]', WHERE))
    assert items[0] == (1, Customer(id="a")) and outcome(items[1][1]) == ("annual_spend", "not a finite number: nan")
    # Also when an item before it is off the strict shape (this once escaped as msgspec's DecodeError).
    items = list(decode_customer_array(b'[{"id": "a", "plan": 3}, {"id": "b", "annual_spend": NaN}]', WHERE))
    assert items[0] == (1, Customer(id="a", plan="3")) and outcome(items[1][1]) == ("annual_spend",
                                                                                  "not a finite number: nan")
    with pytest.raises(InvalidInput, match="not valid JSON") as raised:
        list(decode_customer_array(b'[{"id": "a"},\n {"id": ', WHERE))
    assert raised.value.location.line == 2
    with pytest.raises(InvalidInput, match="expected a JSON array"):
        list(decode_customer_array(b'{"id": "a"}', WHERE))
    with pytest.raises(InvalidInput, match="finite"):
        customer_from_mapping({"id": "x", "purchases": [{"product": "A", "amount": float("inf")}]})


def test_reader_reports_file_record_and_field_as_before(tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"id": "ok"}, {"id": "x", "birthday": "soon"}, 3]).encode())
    batch = read_customers_file(path)
    assert [c.id for c in batch.customers] == ["ok"]
    assert [(e.file, e.line, e.column, e.reason.split(":")[0]) for e in batch.errors] == \
        [(str(path), 2, "birthday", "item 2"), (str(path), 3, None, "item 3")]
