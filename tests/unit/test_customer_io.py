"""CSV and JSON reading: mappings, encodings, edge cases, row errors with line and column."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from shared.customers.reader import CsvMapping, detect_encoding, read_customers_file
from shared.domain.errors import InvalidInput
from shared.domain.model import Customer

CSV = Path(__file__).parent.parent / "fixtures" / "csv"


@pytest.mark.parametrize("name", ["sharepoint_cp932.csv", "sharepoint_utf8_bom.csv"])
def test_sharepoint_export_in_cp932_and_utf8_bom(name):
    batch = read_customers_file(CSV / name)
    by_id = {c.id: c for c in batch.customers}
    assert set(by_id) == {"S-1", "S-3"}
    first = by_id["S-1"]
    assert first.name == "株式会社サンプル" and first.contact_name == "山田 太郎"
    assert first.email == "taro@example.co.jp"
    assert first.owner.name == "佐藤 花子" and first.owner.email == "hanako@contoso.com"
    assert first.birthday == date(1980, 11, 22) and first.last_purchase_date == date(2025, 11, 22)
    assert first.contract_end == date(2026, 2, 15) and first.plan == "Basic"
    assert first.products == ("A",) and first.requires_approval and not first.email_opt_out
    assert first.custom == {"備考": "複数行の\n備考"}
    assert by_id["S-3"].name == "合同会社ＡＢＣ" and by_id["S-3"].products == ("A", "B")
    # S-1 spans lines 2-3 (quoted newline), so S-2's impossible 29 Feb is on line 4.
    [error] = batch.errors
    assert (error.line, error.column) == (4, "誕生日") and "1975/02/29" in error.reason


def test_encoding_detection(tmp_path):
    assert detect_encoding(CSV / "sharepoint_cp932.csv") == "cp932"
    assert detect_encoding(CSV / "sharepoint_utf8_bom.csv") == "utf-8-sig"
    plain = tmp_path / "plain.csv"
    plain.write_text("id,name\n1,テスト\n", encoding="utf-8")
    assert detect_encoding(plain) == "utf-8"


def test_wrong_forced_encoding_names_the_line(tmp_path):
    with pytest.raises(InvalidInput, match="--encoding") as info:
        read_customers_file(CSV / "sharepoint_cp932.csv", encoding="utf-8")
    assert info.value.location.line is not None


def test_zoho_contacts_with_deals_linked_by_id():
    batch = read_customers_file(CSV / "zoho_contacts.csv", purchases_path=CSV / "zoho_deals.csv",
                                today=date(2026, 11, 22))
    [olivia] = batch.customers
    assert olivia.contact_name == "Olivia Smith" and olivia.birthday == date(1985, 4, 2)
    assert olivia.owner.name == "John Miller" and olivia.timezone == "America/New_York"
    assert olivia.products == ("A", "C", "B")
    assert olivia.purchases[0].amount == 1_200_000 and olivia.purchases[0].deal_id == "ZD-1"
    assert olivia.annual_spend == 1_200_000 and olivia.last_purchase_date == date(2026, 1, 15)
    assert olivia.deals[0].stage == "won"  # normalised through the stage table
    assert olivia.custom == {"Lead Source": "Web"}
    errors = {(e.file.rsplit("/", 1)[-1], e.line, e.column): e.reason for e in batch.errors}
    assert ("zoho_contacts.csv", 3, "Birthday") in errors
    assert ("zoho_contacts.csv", 4, "Email Opt Out") in errors
    assert ("zoho_contacts.csv", 5, "Contact ID") in errors
    assert "duplicate id 'Z-1'" in errors[("zoho_contacts.csv", 6, "Contact ID")]
    assert ("zoho_deals.csv", 4, "Closing Date") in errors
    assert errors[("zoho_deals.csv", 3, None)] == "no customer with this id or email"


def test_purchases_link_by_email_case_insensitively(tmp_path):
    customers = tmp_path / "c.csv"
    customers.write_text("id,email\nK-1,Taro@Example.co.jp\n", encoding="utf-8")
    purchases = tmp_path / "p.csv"
    purchases.write_text("customer_email,product,date,amount\ntaro@example.co.jp,PC,2026-05-01,300000\n")
    [customer] = read_customers_file(customers, purchases_path=purchases, today=date(2026, 11, 22)).customers
    assert customer.products == ("PC",) and customer.annual_spend == 300000


def test_missing_id_column_and_missing_file_are_clear(tmp_path):
    bad = tmp_path / "noid.csv"
    bad.write_text("name,email\nx,y\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="no customer id column"):
        read_customers_file(bad)
    with pytest.raises(InvalidInput, match="file not found"):
        read_customers_file(tmp_path / "nope.csv")


def test_json_array_and_json_lines(tmp_path):
    good = {"id": "J-1", "products": ["A"], "birthday": "1980-02-29", "unknown": 1}
    array = tmp_path / "c.json"
    array.write_text(json.dumps([good, {"id": "J-2", "birthday": "yesterday"}]), encoding="utf-8")
    batch = read_customers_file(array)
    assert [c.id for c in batch.customers] == ["J-1"] and batch.customers[0].custom == {"unknown": 1}
    assert batch.errors[0].line == 2 and batch.errors[0].column == "birthday"
    lines = tmp_path / "c.jsonl"
    lines.write_text(json.dumps(good) + "\n\n{broken\n", encoding="utf-8")
    batch = read_customers_file(lines)
    assert len(batch.customers) == 1 and batch.errors[0].line == 3


def test_default_mapping_loads_and_rejects_unknown_fields(tmp_path):
    assert "id" in CsvMapping.load().customer_columns
    broken = tmp_path / "m.yaml"
    broken.write_text("customers:\n  columns:\n    shoe_size: [Shoe]\nvalues: {true: [y], false: [n], "
                      "date_formats: ['%Y']}\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="shoe_size"):
        CsvMapping.load(broken)


def test_samples_cover_every_scenario_without_errors():
    root = Path(__file__).parent.parent.parent / "samples"
    batch = read_customers_file(root / "customers.csv", purchases_path=root / "purchases.csv",
                                today=date(2026, 11, 24))
    assert batch.errors == [] and len(batch.customers) >= 200
    scenarios = {c.custom["シナリオ"] for c in batch.customers}
    assert len(scenarios) == 13
    assert {"ja-JP", "en-US"} <= {c.locale for c in batch.customers}
    assert len({c.timezone for c in batch.customers}) >= 4 and len({c.owner.name for c in batch.customers}) >= 5
    assert any(c.email_opt_out for c in batch.customers) and any(c.requires_approval for c in batch.customers)
    assert any(c.birthday is None for c in batch.customers) and any(c.email is None for c in batch.customers)


def test_model_rejects_bad_fields_by_name():
    with pytest.raises(InvalidInput, match=r"purchases\[0\]\.date"):
        Customer.from_dict({"id": "x", "purchases": [{"product": "A", "date": "soon"}]})
    with pytest.raises(InvalidInput, match="'timezone'"):
        Customer.from_dict({"id": "x", "timezone": "Tokyo"})
    with pytest.raises(InvalidInput, match="'id'"):
        Customer.from_dict({"id": "a/b"})
    customer = Customer.from_dict({"id": "x", "owner": "rep@contoso.com", "annual_spend": "1,200,000"})
    assert customer.owner.email == "rep@contoso.com" and customer.annual_spend == 1_200_000
    assert Customer.from_dict(customer.to_dict()) == customer


def test_parsed_customer_is_the_constructed_one():
    """The parser fills the frozen dataclass directly: every field, the same values as the constructor."""
    assert Customer.from_dict({"id": "x"}).__dict__ == Customer(id="x").__dict__
    data = {"id": "C-1", "name": "N", "birthday": "1980-02-29", "products": ["A", "B", "A"], "usage": {"r": 1},
            "purchases": [{"product": "A", "date": "2025-01-02", "amount": 5}], "extra": 1}
    parsed = Customer.from_dict(data)
    assert parsed.__dict__ == Customer(**{**parsed.__dict__}).__dict__ and parsed.products == ("A", "B")
    assert hash(parsed.products) and parsed == Customer.from_dict(parsed.to_dict())


DEALS = [
    {"id": "D-1", "stage": "won", "type": "one_time", "amount": 1200, "onboarding_due": None,
     "renewal_notice_date": None, "campaign_id": None, "closed_on": "2026-09-04", "product": "C"},
    {"id": "D-2", "stage": "", "type": None, "amount": 12.5, "renewal_notice_date": "2027-01-31"},
    {"id": "D-3", "amount": "1,200", "closed_on": "2026-09-04T10:00:00"},  # coerced by the general path only
    {"id": 7, "stage": "open"},  # a numeric id becomes text
    {"id": "D-4", "stage": "x" * 4000, "closed_on": ""},
]


@pytest.mark.parametrize("deal", DEALS)
def test_plain_deals_read_as_the_general_path_reads_them(deal):
    """The exact-type fast path for deals gives the constructed, generally parsed deal: equal fields, same type."""
    from shared.domain.errors import Location
    from shared.domain.model import _CustomerParser

    parser = _CustomerParser(Location())
    (fast,) = parser.deals([deal])
    assert fast.__dict__ == parser.deal(deal, "deals[0]").__dict__
    assert type(fast.closed_on) is type(parser.deal(deal, "deals[0]").closed_on)


@pytest.mark.parametrize(("deal", "field"), [
    ({"id": ""}, r"deals\[0\]\.id"), ({"id": "D", "closed_on": "2026-02-30"}, r"deals\[0\]\.closed_on"),
    ({"id": "D", "amount": float("nan")}, r"deals\[0\]\.amount"),
    ({"id": "D", "stage": "x" * 4001}, r"deals\[0\]\.stage"),
    ({"id": "D", "amount": True}, r"deals\[0\]\.amount"),
])
def test_deals_the_fast_path_refuses_fail_with_the_field_named(deal, field):
    with pytest.raises(InvalidInput) as raised:
        Customer.from_dict({"id": "x", "deals": [deal]})
    assert re.fullmatch(field, raised.value.location.field)


def test_addresses_no_mail_can_go_to_are_warnings_naming_line_and_column():
    batch = read_customers_file(CSV / "bad_addresses.csv")
    # Kept: the reps' notices, tasks and journeys of these customers need no customer address.
    assert [c.id for c in batch.customers] == ["B-1", "B-2", "B-3", "B-4"]
    shown = [str(w) for w in batch.warnings]
    file = str(CSV / "bad_addresses.csv")
    assert shown[0].startswith(f"{file}:3, column 'Email': not a valid e-mail address: no domain after the @")
    assert shown[1].startswith(f"{file}:4, column 'Email': not a valid e-mail address: it has more than one @")
    assert shown[2].startswith(f"{file}:5, column 'Owner Email': not a valid e-mail address: it has no @")
    assert len(shown) == 3 and all("row kept" in s for s in shown)
    assert not any("dan@@example" in s or "not-an-email@" in s for s in shown)  # the value itself is not repeated


def test_json_customers_get_the_same_address_warnings(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "J-1", "email": "x@y"}) + "\n", encoding="utf-8")
    batch = read_customers_file(path)
    assert [c.id for c in batch.customers] == ["J-1"]
    assert [(w.line, w.column) for w in batch.warnings] == [(1, "email")]


def test_a_date_error_lists_every_accepted_form():
    batch = read_customers_file(CSV / "bad_addresses.csv")
    [error] = batch.errors
    assert (error.line, error.column) == (6, "Birthday")
    for form in ("YYYY-MM-DD", "YYYY/MM/DD", "YYYY年MM月DD日", "MM/DD/YYYY", "DD.MM.YYYY", "Mon DD, YYYY"):
        assert form in error.reason, form
    assert "(use YYYY-MM-DD)" not in error.reason
