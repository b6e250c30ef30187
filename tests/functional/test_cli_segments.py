"""`crmflow segments`, `crmflow validate --segments` and a holdout rule's dry-run, as a user runs them."""

from __future__ import annotations

import json
import shutil

import pytest

from shared.devtools.cli import main
from shared.settings import APP_ROOT
from tests.functional.test_cli_rules import no_local_settings  # noqa: F401 (autouse fixture)

SAMPLES = APP_ROOT / "samples"
SAMPLE_ARGS = ["--input", str(SAMPLES / "customers.csv"), "--purchases", str(SAMPLES / "purchases.csv")]


def test_segments_counts_customers_per_label_and_score(capsys):
    assert main(["segments", *SAMPLE_ARGS, "--today", "2026-11-24", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["today"] == "2026-11-24" and data["customers"] == 260
    assert list(data["by_label"]) == ["champions", "loyal", "at_risk", "new", "potential", "hibernating"]
    assert sum(data["by_label"].values()) == sum(data["by_score"].values()) == 260
    assert data["by_label"]["hibernating"] > 0 and data["by_label"]["potential"] > 0
    assert main(["segments", *SAMPLE_ARGS, "--today", "2026-11-24"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("260 customers on 2026-11-24 (") and "hibernating" in text and "SCORE (r f m)" in text


def test_segments_with_another_file_and_a_broken_one(tmp_path, capsys):
    mine = tmp_path / "mine.yaml"
    mine.write_text("labels:\n  - {label: recent, r: 3-5}\n  - {label: other}\n", encoding="utf-8")
    assert main(["segments", *SAMPLE_ARGS, "--today", "2026-11-24", "--segments", str(mine),
                 "--format", "json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["by_label"]) == {"recent", "other"}
    mine.write_text("labels:\n  - {label: recent, r: 3-5}\n", encoding="utf-8")
    assert main(["segments", *SAMPLE_ARGS, "--segments", str(mine)]) == 1
    assert "mine.yaml:1, field 'labels': 50 scores get no label" in capsys.readouterr().err
    assert main(["validate", "--segments", str(mine)]) == 1
    assert "mine.yaml:1, field 'labels'" in capsys.readouterr().err


def test_validate_refuses_a_rule_with_an_unknown_label(tmp_path, capsys):
    rules = tmp_path / "rules"
    shutil.copytree(APP_ROOT / "rules", rules)
    (rules / "typo.yaml").write_text(
        "- id: win-back\n  kind: alert\n  on: [sweep]\n  when: \"rfm.label == 'at_rsk'\"\n  once: ever\n"
        "  actions: [{crm_task: {subject: call}}]\n", encoding="utf-8")
    assert main(["validate", "--rules", str(rules)]) == 1
    err = capsys.readouterr().err
    assert "typo.yaml:4, rule 'win-back', field 'when': unknown RFM label 'at_rsk' (did you mean 'at_risk'?" in err


@pytest.mark.parametrize("share", ["50%"])
def test_dry_run_json_shows_held_out_actions(tmp_path, capsys, share):
    rules = tmp_path / "rules"
    shutil.copytree(APP_ROOT / "tests" / "fixtures" / "rules_holdout", rules)
    assert main(["dry-run", *SAMPLE_ARGS, "--rules", str(rules), "--now", "2026-11-24T00:00:00Z",
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    firings = json.loads(captured.out)
    statuses = {a["status"] for f in firings for a in f["actions"]}
    assert {"planned", "held_out"} <= statuses
    held = [f for f in firings if f["actions"][0]["status"] == "held_out"]
    assert 0.4 < len(held) / len(firings) < 0.6
    assert held[0]["actions"][0]["subject"] is None and "holdout" in held[0]["actions"][0]["reason"]
    assert f"{len(held):,} held out" in captured.err


def test_a_big_file_gets_a_progress_bar_on_stderr(tmp_path, capsys):
    from shared.devtools.sample_data import write_samples

    customers, purchases = write_samples(4000, tmp_path)
    assert customers.stat().st_size > 1 << 20  # over the size that gets a bar
    assert main(["segments", "--input", str(customers), "--purchases", str(purchases), "--today", "2026-11-24",
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["customers"] == 4000
    assert "scoring" in captured.err and "4000/4000" in captured.err
