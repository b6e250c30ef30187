"""`crmflow validate` and `crmflow dry-run` as a user runs them (the real console entry point, no storage)."""

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from shared.devtools.cli import main
from shared.settings import APP_ROOT

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rules"
DEMO_NOW = "2026-11-24T00:00:00Z"


@pytest.fixture(autouse=True)
def no_local_settings(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("shared.devtools.commands._local.LOCAL_SETTINGS", tmp_path / "absent.json")
    monkeypatch.delenv("UNSUBSCRIBE_SIGNING_KEY", raising=False)


def test_validate_ok(capsys):
    assert main(["validate", "--rules", str(APP_ROOT / "rules"), "--templates", str(APP_ROOT / "templates")]) == 0
    out = capsys.readouterr().out
    assert "renewal-reminder" in out and "windows [7, 30, 90]" in out
    assert out.strip().splitlines()[-1].startswith("OK: 10 rules in 4 files")
    assert "journey customer-success: contract → implementation → onboarding → utilization → renewal" in out
    assert "deal_stage delivered, won (type subscription_renewal)" in out


def test_validate_reports_journey_problems_with_file_and_line(tmp_path, capsys):
    journeys = tmp_path / "journeys"
    shutil.copytree(APP_ROOT / "journeys", journeys)
    path = journeys / "customer_success.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("on: {date: deal.onboarding_due}", "on: {date: deal.kickoff}")
                    .replace("template: journey_task\n        importance: high", "template: journey_tsk\n"
                             "        importance: high"), encoding="utf-8")
    assert main(["validate", "--journeys", str(journeys)]) == 1
    err = capsys.readouterr().err
    line = next(n for n, row in enumerate(path.read_text().splitlines(), 1) if "deal.kickoff" in row)
    assert f"customer_success.yaml:{line}, rule 'utilization', field 'date': deal dates are" in err
    assert "rule 'renewal', field 'template': unknown card template 'journey_tsk'" in err


def test_dry_run_lists_the_journey_transitions_a_sweep_would_make(tmp_path, capsys):
    customers = tmp_path / "customers.json"
    customers.write_text(json.dumps([
        {"id": "J-1", "name": "J", "owner": {"name": "Rep", "email": "rep@contoso.com"}, "stage": "onboarding",
         "deals": [{"id": "D-1", "type": "subscription_new", "stage": "delivered", "onboarding_due": "2026-11-20"}]},
        {"id": "J-2", "name": "K", "owner": {"name": "Rep", "email": "rep@contoso.com"},
         "deals": [{"id": "D-2", "type": "subscription_new", "stage": "open"}]},
        {"id": "J-3", "name": "L", "stage": "onboarding",
         "deals": [{"id": "D-3", "type": "subscription_new", "stage": "delivered", "onboarding_due": "2026-12-20"}]},
    ]), encoding="utf-8")
    assert main(["dry-run", "--input", str(customers), "--today", "2026-11-24", "--format", "json"]) == 0
    captured = capsys.readouterr()
    moves = [(f["customer"], f["actions"][0]["to"], f["rule"]) for f in json.loads(captured.out)
             if f["actions"][0]["channel"] == "journey"]
    assert moves == [("J-1", "utilization", "customer-success-utilization"),
                     ("J-2", "contract", "customer-success-contract")]
    [firing] = [f for f in json.loads(captured.out) if f["customer"] == "J-1"]
    assert [a["channel"] for a in firing["actions"]] == ["journey", "teams", "crm_task"]
    assert "onboarding → utilization: onboarding_due (due 2026-11-20)" in firing["actions"][0]["reason"]
    assert "(2 journey transitions)" in captured.err


def test_validate_reports_every_problem(tmp_path, capsys):
    rules = tmp_path / "rules"
    shutil.copytree(APP_ROOT / "rules", rules)
    (rules / "bad.yaml").write_text("- id: cross-sell-a-to-b\n  kind: nope\n  on: [sweep]\n  when: \"x ==\"\n"
                                    "  once: ever\n  actions: [{teams: owner, template: cross_sell}]\n",
                                    encoding="utf-8")
    assert main(["validate", "--rules", str(rules), "--templates", str(APP_ROOT / "templates")]) == 1
    err = capsys.readouterr().err
    assert "3 problems in the rules" in err
    assert "cross_sell.yaml:3, rule 'cross-sell-a-to-b', field 'id': duplicate rule id (also in rules/bad.yaml:1" \
        in err
    assert "bad.yaml:2, rule 'cross-sell-a-to-b', field 'kind'" in err
    assert "bad.yaml:4, rule 'cross-sell-a-to-b', field 'when': syntax error" in err


def test_validate_checks_the_mapping_files(tmp_path, capsys):
    mappings = tmp_path / "mappings"
    shutil.copytree(APP_ROOT / "mappings", mappings)
    (mappings / "hubspot.yaml").write_text("entities: [not, a, map]\n", encoding="utf-8")
    (mappings / "csv_default.yaml").unlink()
    assert main(["validate", "--mappings", str(mappings)]) == 1
    err = capsys.readouterr().err
    assert "hubspot.yaml" in err and "csv_default.yaml" in err
    assert main(["validate"]) == 0
    assert "CSV and CRM mappings load" in capsys.readouterr().out


def test_dry_run_json_from_canonical_json(capsys):
    code = main(["dry-run", "--input", str(FIXTURES / "customers.json"), "--now", "2025-11-22T00:30:00Z",
                 "--format", "json", "--rules", str(APP_ROOT / "rules"), "--templates", str(APP_ROOT / "templates")])
    captured = capsys.readouterr()
    assert code == 0
    firings = json.loads(captured.out)
    assert {f["rule"] for f in firings if f["customer"] == "C-001"} >= {"cross-sell-a-to-b", "birthday-mail"}
    assert all(set(f) == {"rule", "customer", "dedupe_key", "actions"} for f in firings)
    assert all(set(a) == {"channel", "to", "status", "reason", "subject"} for f in firings for a in f["actions"])
    assert not [f for f in firings if f["customer"] == "C-003"]
    assert "Nothing was stored, queued or sent" in captured.err and "UNSUBSCRIBE_SIGNING_KEY" in captured.err


def test_dry_run_today_versus_now(capsys):
    args = ["dry-run", "--input", str(FIXTURES / "customers.json"), "--format", "json",
            "--rules", str(APP_ROOT / "rules"), "--templates", str(APP_ROOT / "templates")]
    main([*args, "--now", "2025-11-22T00:30:00Z"])
    by_now = {(f["rule"], f["customer"]) for f in json.loads(capsys.readouterr().out)}
    main([*args, "--today", "2025-11-22"])
    by_today = {(f["rule"], f["customer"]) for f in json.loads(capsys.readouterr().out)}
    assert ("birthday-mail", "C-002") in by_now  # still 21 Nov in New York at that instant
    assert ("birthday-mail", "C-002") not in by_today  # every customer's date is 22 Nov


def test_dry_run_csv_samples_table(capsys):
    code = main(["dry-run", "--input", str(APP_ROOT / "samples" / "customers.csv"),
                 "--purchases", str(APP_ROOT / "samples" / "purchases.csv"), "--now", DEMO_NOW,
                 "--rules", str(APP_ROOT / "rules"), "--templates", str(APP_ROOT / "templates")])
    captured = capsys.readouterr()
    assert code == 0
    lines = captured.out.splitlines()
    assert lines[0].split()[:5] == ["RULE", "CUSTOMER", "CHANNEL", "TO", "STATUS"]
    for rule in ("cross-sell-a-to-b", "upsell-basic-to-premium", "birthday-mail", "purchase-anniversary-a",
                 "renewal-reminder", "campaign-subdisplay-40s-pc"):
        assert any(line.startswith(rule) for line in lines), rule
    assert "customer opted out of email" in captured.out and "needs_approval" in captured.out


def test_a_typo_in_a_rules_text_fails_validate_and_dry_run_without_a_traceback(tmp_path, capsys):
    rules = tmp_path / "rules"
    shutil.copytree(APP_ROOT / "rules", rules)
    path = rules / "cross_sell.yaml"
    reason = 'reason: "製品Aを購入済みで、製品Bは未購入"'
    typo = reason.replace('"', '"{{ customer.nmae }}: ', 1)
    path.write_text(path.read_text(encoding="utf-8").replace(reason, typo), encoding="utf-8")
    assert main(["validate", "--rules", str(rules)]) == 1
    err = capsys.readouterr().err
    assert "cross_sell.yaml:9, rule 'cross-sell-a-to-b', field 'reason': template error" in err
    assert "customer has no field 'nmae' (did you mean 'name'?)" in err
    assert main(["dry-run", "--input", str(APP_ROOT / "samples" / "customers.csv"), "--rules", str(rules),
                 "--now", DEMO_NOW]) == 1
    err = capsys.readouterr().err
    assert "field 'reason'" in err and "Traceback" not in err


def test_the_readmes_first_dry_run_example_sees_what_the_demo_sees(capsys):
    """The first example a newcomer copies must read the purchases too, or it shows fewer firings than the demo."""
    text = (APP_ROOT / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    command = re.search(r"\.venv/bin/crmflow (dry-run [^#\n]*)", text)[1]
    args = [str(APP_ROOT / arg) if arg.startswith("samples/") else arg for arg in shlex.split(command)]
    assert main([*args, "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert main(["dry-run", "--input", str(APP_ROOT / "samples" / "customers.csv"),
                 "--purchases", str(APP_ROOT / "samples" / "purchases.csv"), "--now", DEMO_NOW,
                 "--format", "json"]) == 0
    complete = json.loads(capsys.readouterr().out)
    assert len(shown) == len(complete) and {f["rule"] for f in shown} >= {"purchase-anniversary-a",
                                                                          "upsell-high-annual-spend"}


def test_the_readme_shows_every_cli_command():
    from shared.devtools.cli import build_parser

    readme = (APP_ROOT / "README.md").read_text(encoding="utf-8")
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert {"customer", "tasks"} <= set(commands)
    assert [name for name in commands if f"crmflow {name}" not in readme] == []


CONTACT = Path(__file__).parent.parent / "fixtures" / "contact"


def test_validate_checks_the_contact_policy(capsys):
    assert main(["validate", "--policy", str(CONTACT / "bad_policy.yaml")]) == 1
    err = capsys.readouterr().err
    assert "6 problems in the contact policy" in err
    assert "bad_policy.yaml:7, field 'when_capped': when_capped must be defer or drop" in err


def test_dry_run_shows_capped_contacts_naming_the_cap(tmp_path, capsys):
    customers = tmp_path / "one.json"
    customers.write_text(json.dumps([{"id": "C-1", "name": "KK", "email": "a@example.com", "locale": "en-US",
                                      "owner": {"name": "Rep", "email": "rep@contoso.com"}}]), encoding="utf-8")
    assert main(["dry-run", "--input", str(customers), "--rules", str(CONTACT / "rules"), "--policy",
                 str(CONTACT / "policy.yaml"), "--today", "2026-12-01", "--format", "json"]) == 0
    captured = capsys.readouterr()
    firings = {f["rule"]: f["actions"][0] for f in json.loads(captured.out)}
    assert [rule for rule, action in firings.items() if action["status"] == "capped"] == \
        ["promo-spring", "promo-autumn", "promo-newyear"]  # the three lowest priorities, in file order
    assert "cap promotional email ≤ 2 per 7 days: deferred to 2026-12-08" in firings["promo-newyear"]["reason"]
    assert firings["renewal-notice"]["status"] == "planned"  # transactional: never capped
    assert "3 capped" in captured.err


def test_dry_run_caps_a_customer_listed_twice_against_its_first_listing(tmp_path, capsys):
    # A first listing within the caps writes no contact log row in the dry-run; its contacts must count all the same
    # when the same customer comes again.
    promo = (CONTACT / "rules" / "promotions.yaml").read_text(encoding="utf-8")
    first = promo.split("\n\n")[0].replace("promo-spring", "promo-first").replace('when: "true"',
                                                                                     "when: \"name == 'first'\"")
    second = first.replace("promo-first", "promo-second").replace("'first'", "'second'")
    assert first.count("when:") == 1 and "name == 'first'" in first
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "promos.yaml").write_text(first + "\n\n" + second + "\n", encoding="utf-8")
    (tmp_path / "policy.yaml").write_text("caps:\n  - {channel: email, category: promotional, limit: 1, days: 7}\n"
                                          "when_capped: defer\ndefer_within_days: 30\n", encoding="utf-8")
    person = {"email": "a@example.com", "locale": "en-US", "owner": {"name": "Rep", "email": "rep@contoso.com"}}
    customers = tmp_path / "twice.json"
    listed = [("C-1", "first"), ("C-2", "second"), ("C-1", "second")]
    customers.write_text(json.dumps([{"id": i, "name": name, **person} for i, name in listed]), encoding="utf-8")
    assert main(["dry-run", "--input", str(customers), "--rules", str(tmp_path / "rules"), "--policy",
                 str(tmp_path / "policy.yaml"), "--today", "2026-12-01", "--format", "json"]) == 0
    captured = capsys.readouterr()
    mails = [(f["customer"], f["rule"], f["actions"][0]["status"]) for f in json.loads(captured.out)]
    assert mails == [("C-1", "promo-first", "planned"), ("C-2", "promo-second", "planned"),
                     ("C-1", "promo-second", "capped")]
    assert json.loads(captured.out)[2]["actions"][0]["reason"].endswith(
        "cap promotional email ≤ 1 per 7 days: deferred to 2026-12-08")
    assert "1 capped" in captured.err
