"""Deals are facts: stages normalised per source, and only won deals make purchases, products, spend and RFM."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from shared.customers.reader import CsvMapping, read_customers_file
from shared.domain.errors import InvalidInput

CSV = Path(__file__).parent.parent / "fixtures" / "csv"
TODAY = date(2026, 11, 22)


def customers(deals: str) -> dict:
    batch = read_customers_file(CSV / "deal_customers.csv", purchases_path=CSV / deals, today=TODAY)
    assert batch.errors == []
    return {c.id: c for c in batch.customers}


def test_zoho_deals_export_only_won_deals_are_purchases():
    found = customers("zoho_deals_export.csv")
    ken, mia = found["Z-10"], found["Z-11"]
    assert ken.products == ("B",) and [p.deal_id for p in ken.purchases] == ["5725767000000700002"]
    assert ken.annual_spend == 1_200_000 and ken.last_purchase_date == date(2026, 2, 1)
    stages = {d.id: d.stage for d in ken.deals}
    assert stages == {"5725767000000700001": "lost", "5725767000000700002": "won",
                      "5725767000000700003": "Negotiation/Review"}  # open stages kept as the CRM names them
    won = next(d for d in ken.deals if d.stage == "won")
    assert won.campaign_id == "CMP-1" and won.amount == 1_200_000
    # A customer whose only PC deal was lost does not own a PC (and gets no PC campaign mail).
    assert mia.products == () and mia.purchases == () and mia.annual_spend == 0
    assert mia.deals[0].stage == "lost" and mia.deals[0].campaign_id == "CMP-1"


def test_japanese_list_with_won_lost_and_open_deals():
    found = customers("sharepoint_deals.csv")
    assert found["Z-10"].products == ("C",) and found["Z-10"].deals[0].stage == "won"
    mia = found["Z-11"]
    assert mia.products == ("X",)  # the plain purchase without a deal; not the lost PC nor the open A
    assert {d.id: d.stage for d in mia.deals} == {"SP-2": "lost", "SP-3": "提案中"}
    assert mia.annual_spend == 7000


def test_unknown_mapping_key_names_file_and_line(tmp_path):
    text = (CSV.parent.parent.parent / "mappings" / "csv_default.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "mapping.yaml"
    broken.write_text(text.replace("    deal_type:", "    campain_id: [Campaign]\n    deal_type:"), encoding="utf-8")
    with pytest.raises(InvalidInput) as caught:
        CsvMapping.load(broken)
    line = next(n for n, row in enumerate(broken.read_text(encoding="utf-8").splitlines(), 1) if "campain_id" in row)
    assert caught.value.location.file == str(broken) and caught.value.location.line == line
    assert "campain_id" in caught.value.reason and "campaign_id" in caught.value.reason
    both = tmp_path / "both.yaml"
    both.write_text(text.replace("  lost: [lost,", "  lost: [Closed Won, lost,"), encoding="utf-8")
    with pytest.raises(InvalidInput, match="both won and lost"):
        CsvMapping.load(both)


def test_unknown_key_in_a_crm_mapping_names_file_and_line(tmp_path):
    from shared.crm.mapping import load_mapping

    text = (CSV.parent.parent.parent / "mappings" / "zoho.yaml").read_text(encoding="utf-8")
    (tmp_path / "zoho.yaml").write_text(text.replace("  Deals:\n    kind: deal\n",
                                                     "  Deals:\n    kind: deal\n    campaign_id: Campaign\n"),
                                        encoding="utf-8")
    with pytest.raises(InvalidInput) as caught:
        load_mapping(tmp_path, "zoho")
    line = next(n for n, row in enumerate((tmp_path / "zoho.yaml").read_text().splitlines(), 1)
                if "campaign_id: Campaign" in row)
    where = caught.value.location
    assert (where.file, where.line, where.field) == (str(tmp_path / "zoho.yaml"), line,
                                                     "entities.Deals.campaign_id")
    # A field spec with a misspelt key, and the stage table, are checked too.
    (tmp_path / "zoho.yaml").write_text(text.replace("{to: deal.amount, type: number}",
                                                     "{to: deal.amount, typ: number}"), encoding="utf-8")
    with pytest.raises(InvalidInput, match="unknown key 'typ'"):
        load_mapping(tmp_path, "zoho")
    (tmp_path / "zoho.yaml").write_text(text.replace("  won: [\"Closed Won\"]", "  wonn: [\"Closed Won\"]"),
                                        encoding="utf-8")
    with pytest.raises(InvalidInput, match="stages must be"):
        load_mapping(tmp_path, "zoho")
