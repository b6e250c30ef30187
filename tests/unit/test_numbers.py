"""The one number parser (CSV cells, CRM fields, canonical JSON) and the three readers that use it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from shared.crm.mapping import load_mapping
from shared.customers.reader import read_customers_file
from shared.domain.errors import InvalidInput
from shared.domain.model import Customer
from shared.domain.numbers import parse_number

MAPPINGS = Path(__file__).parent.parent.parent / "mappings"


@pytest.mark.parametrize(("raw", "expected"), [
    ("1,200", 1200), ("¥1,200円", 1200), ("￥980", 980), ("１２３", 123), ("12.5", 12.5), ("3.0", 3), ("-4", -4),
    ("1e3", 1000), (" 7 ", 7), ("", None), ("  ", None), (None, None), (5, 5), (2.5, 2.5),
])
def test_parses_what_exports_contain(raw, expected):
    value = parse_number(raw)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("raw", ["NaN", "nan", "inf", "-Infinity", math.nan, math.inf, -math.inf])
def test_rejects_nan_and_infinity(raw):
    with pytest.raises(ValueError, match="not a finite number"):
        parse_number(raw)


@pytest.mark.parametrize(("raw", "reason"), [("abc", "not a number: 'abc'"), (True, "got a boolean"),
                                             ([1], "got list")])
def test_other_input_is_a_clear_error(raw, reason):
    with pytest.raises(ValueError, match=reason):
        parse_number(raw)


def test_csv_nan_is_a_row_error_naming_line_and_column(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("顧客ID,顧客名,年間購入額\nC-1,Good,1200\nC-2,Bad,NaN\n", encoding="utf-8")
    batch = read_customers_file(path)
    assert [c.id for c in batch.customers] == ["C-1"] and batch.customers[0].annual_spend == 1200
    [error] = batch.errors
    assert error.line == 3 and "finite" in error.reason


def test_json_nan_is_rejected_by_the_model():
    with pytest.raises(InvalidInput, match="annual_spend"):
        Customer.from_dict({"id": "C-1", "annual_spend": math.nan})


def test_crm_mapping_rejects_nan_like_the_csv_reader():
    mapping = load_mapping(MAPPINGS, "hubspot")
    entity, column = next((entity, column) for entity in mapping.entities.values()
                          for column, rule in entity.fields.items() if rule.type in ("number", "money"))
    assert mapping.map(entity, {column: "1,200"}).changed
    with pytest.raises(InvalidInput, match="finite") as caught:
        mapping.map(entity, {column: "NaN"})
    assert caught.value.location.field == column
